"""The Faust engine (the original design): the Faust app and its agents
(app.py, leaderboards.py), its own position guard and tail probe, and every
use of Faust's and aiokafka's private API in one adapter (compat.py, checked
at start-up)."""
