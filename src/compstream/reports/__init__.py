"""Compensation statements and org transparency reports over the history store.

Numbers come from ClickHouse SQL over `events` and `postings` (always `FINAL`),
shaped into one JSON document per report (the source of truth); CSV and a
self-contained HTML page are rendered from that document.
"""

from compstream.reports.period import Period, ReportError, parse_period

__all__ = ["Period", "ReportError", "parse_period"]
