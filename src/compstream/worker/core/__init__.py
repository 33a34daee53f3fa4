"""The engine-agnostic checkpoint core: which fetched messages may be applied
now (sync.py), one batch in, one atomic checkpoint out (checkpoint.py), and the
two small interfaces every engine implements (ports.py)."""
