"""Leaderboard stages, free of any engine: the partition stage (per source
partition top-k candidates), the merge (global boards), and the boards view
read from the leaderboards topic. Engines drive them: worker/core's
leaderboard_step.py and engines/faust/leaderboards.py."""
