"""Dollar amounts in HR files -> integer nano-dollars, exactly or not at all."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Literal, overload

from compstream.domain.events import AMOUNT_NANOS_MAX

NANOS_PER_USD = 10**9


class AmountError(ValueError):
    pass


def usd_to_nanos(value: object, *, allow_zero: bool = False) -> int:
    """'150', '150.25', 150 -> nanos. A fraction of a nano-dollar, a float,
    a negative or an absurd amount is an error, never rounded away."""
    if isinstance(value, bool) or isinstance(value, float):
        raise AmountError(f"write dollar amounts as a string or an integer, got {value!r}")
    try:
        amount = Decimal(str(value).strip().replace(",", "").removeprefix("$"))
    except InvalidOperation as exc:
        raise AmountError(f"not a dollar amount: {value!r}") from exc
    if not amount.is_finite():
        raise AmountError(f"not a dollar amount: {value!r}")
    nanos = amount * NANOS_PER_USD
    if nanos != nanos.to_integral_value():
        raise AmountError(f"more precise than a nano-dollar: {value!r}")
    result = int(nanos)
    if result < 0 or (result == 0 and not allow_zero):
        raise AmountError(f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    if result > AMOUNT_NANOS_MAX:
        raise AmountError(f"larger than {AMOUNT_NANOS_MAX // NANOS_PER_USD} dollars: {value!r}")
    return result


@overload
def nanos_field(raw: dict, usd_key: str, nanos_key: str, *, required: Literal[True], allow_zero: bool = False) -> int:
    ...


@overload
def nanos_field(raw: dict, usd_key: str, nanos_key: str, *, required: bool, allow_zero: bool = False) -> int | None:
    ...


def nanos_field(raw: dict, usd_key: str, nanos_key: str, *, required: bool, allow_zero: bool = False) -> int | None:
    """One amount given either in dollars (`usd_key`) or in nanos (`nanos_key`), not both."""
    usd, nanos = raw.get(usd_key), raw.get(nanos_key)
    if usd not in (None, "") and nanos not in (None, ""):
        raise AmountError(f"give {usd_key} or {nanos_key}, not both")
    if usd not in (None, ""):
        return usd_to_nanos(usd, allow_zero=allow_zero)
    if nanos not in (None, ""):
        if isinstance(nanos, str):
            if not nanos.strip().isdigit():
                raise AmountError(f"{nanos_key} must be a whole number, got {nanos!r}")
            nanos = int(nanos.strip())
        if isinstance(nanos, bool) or not isinstance(nanos, int):
            raise AmountError(f"{nanos_key} must be a whole number, got {nanos!r}")
        if nanos < 0 or (nanos == 0 and not allow_zero) or nanos > AMOUNT_NANOS_MAX:
            raise AmountError(f"{nanos_key} out of range: {nanos}")
        return nanos
    if required:
        raise AmountError(f"missing: give {usd_key} or {nanos_key}")
    return None
