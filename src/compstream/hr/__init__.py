"""The HR side: allowance policies, the roster, period allocation and HR intake.

Pure modules (no I/O beyond reading the files they are given, no clock):
`periods`, `money`, `policy`, `roster`, `allocate`, `labels`, `intake`.
`history` reads prior events (a JSONL log or the Kafka source topics).
"""
