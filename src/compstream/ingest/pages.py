"""The page shape the OpenAI and Anthropic admin APIs share: JSON pages
(`{"data": [...], "has_more", "next_page"}`, one page, an array of pages or
JSON Lines of pages), each `data` entry a time bucket with `results`, or a
record of its own (Claude Code). One walk for every adapter of that shape:
every entry and result gets its location, and a malformed one becomes a
Rejection there, never a stop."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Iterator, TypeVar

from compstream.ingest import jsonio
from compstream.ingest.model import AdapterOutput, Location, Rejection, RowError, SourceRow

T = TypeVar("T")


def page_entries(text: str, name: str, page_kind: str) -> Iterator[Rejection | tuple[Any, Location]]:
    """Each page's `data` entries with their locations, or a Rejection for
    an unreadable document or a page without a `data` list (`page_kind`
    names what was expected in its message)."""
    for item in jsonio.json_documents(text, name):
        if item[0] is None:
            yield Rejection(item[1], item[2])  # type: ignore[misc]  # item[0] None: the 3-tuple
            continue
        page, location = item[0], item[1]
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            yield Rejection(location, f"not a {page_kind} page: expected an object with a 'data' list")
            continue
        for index, entry in enumerate(page["data"]):
            path = f"{location.path}.data[{index}]" if location.path else f"data[{index}]"
            yield entry, Location(location.file, location.line, path)


def entry_rows(text: str, name: str, page_kind: str, list_name: str,
               head: Callable[[Any], tuple[T, Any]],
               row: Callable[[T, Any, Location], SourceRow]) -> AdapterOutput:
    """A row per item of each entry's `list_name` list: `head` reads the
    entry's own fields and returns them with that list, `row` builds one
    item's row from them (either raises RowError to reject the entry or
    the item)."""
    for item in page_entries(text, name, page_kind):
        if isinstance(item, Rejection):
            yield item
            continue
        entry, e_loc = item
        try:
            context, items = head(entry)
            if not isinstance(items, list):
                raise RowError(f"field {list_name!r} must be a list")
        except RowError as exc:
            yield Rejection(e_loc, str(exc))
            continue
        for index, value in enumerate(items):
            loc = Location(e_loc.file, e_loc.line, f"{e_loc.path}.{list_name}[{index}]")
            try:
                yield row(context, value, loc)
            except RowError as exc:
                yield Rejection(loc, str(exc))


def bucket_rows(text: str, name: str, page_kind: str, bounds: tuple[str, str],
                parse_time: Callable[[Any, str], datetime],
                row: Callable[[Any, datetime, datetime, Location], SourceRow]) -> AdapterOutput:
    """A row per result of every time bucket: `bounds` names the bucket's
    start and end fields (read by `parse_time`), `row` builds one result's
    row from it and the bucket's times."""
    def head(bucket: Any) -> tuple[tuple[datetime, datetime], Any]:
        start = parse_time(jsonio.field(bucket, bounds[0], "bucket"), bounds[0])
        end = parse_time(jsonio.field(bucket, bounds[1], "bucket"), bounds[1])
        return (start, end), jsonio.field(bucket, "results", "bucket")

    return entry_rows(text, name, page_kind, "results", head,
                      lambda times, result, loc: row(result, times[0], times[1], loc))
