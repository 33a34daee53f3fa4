"""Leaderboard stages, free of any engine: the partition stage (per source
partition top-k candidates), the merge (global boards), and the boards view
read from the leaderboards topic. Both engines drive them through
worker/core/leaderboard_step.py."""
