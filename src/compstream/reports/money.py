"""Render-time formatting. Money stays integer nano-dollars until here."""

from __future__ import annotations

from fractions import Fraction

NANOS_PER_USD = 1_000_000_000
PPM = 1_000_000


def usd(nanos: int | None, places: int = 2) -> str:
    """Nano-dollars -> '$1,234.57' (half-up at `places`), integer math only."""
    if nanos is None:
        return "–"
    sign = "-" if nanos < 0 else ""
    unit = 10 ** (9 - places)
    scaled = (abs(nanos) + unit // 2) // unit
    whole, frac = divmod(scaled, 10**places)
    return f"{sign}${whole:,}" + (f".{frac:0{places}d}" if places else "")


def tokens(count: int | None) -> str:
    return "–" if count is None else f"{count:,}"


def ratio_ppm(numerator: int, denominator: int) -> int | None:
    """numerator/denominator in parts per million, floored; None if undefined."""
    if denominator <= 0:
        return None
    return numerator * PPM // denominator


def percent(ppm: int | None, places: int = 2) -> str:
    """ppm -> '12.34%' (truncated, integer math)."""
    if ppm is None:
        return "–"
    sign = "-" if ppm < 0 else ""
    value = abs(ppm)
    whole, rest = divmod(value, 10_000)
    return f"{sign}{whole}.{rest // 10 ** (4 - places):0{places}d}%" if places else f"{sign}{whole}%"


def fraction_text(value: Fraction, places: int = 6) -> str:
    """Exact fraction -> fixed decimal text (half-up), no float involved."""
    scaled = (abs(value) * 10**places + Fraction(1, 2)).__floor__()
    whole, frac = divmod(scaled, 10**places)
    return f"{'-' if value < 0 else ''}{whole}.{frac:0{places}d}"
