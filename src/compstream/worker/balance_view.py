"""The body of GET /balances/{engineer}, shared by the engines."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from compstream.domain.book import EngineerBook


def balance_body(book: EngineerBook, until: datetime | None, final_through: datetime | None) -> dict[str, Any]:
    """GET /balances/{engineer}: the balance as of the partition's stream
    time, how many events it counts, and through when its postings are final
    (the book's watermark); the same fields on both engines."""
    as_of = book.as_of(until)
    return {"engineer_id": book.engineer_id, **book.balance(until).to_dict(),
            "as_of": as_of.isoformat() if as_of is not None else None,
            "events_applied": book.taken,
            "final_through": final_through.isoformat() if final_through is not None else None}
