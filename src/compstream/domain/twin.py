"""Cheap construction of frozen slotted dataclasses on hot paths.

A frozen dataclass's `__init__` stores each field with `object.__setattr__`
(a global lookup and a call per field): for the rows and postings the worker
builds per event that is most of their cost. A *twin* is a plain mutable
class with the same slot layout: filling one with ordinary attribute stores
and then setting its `__class__` to the frozen class gives an ordinary,
frozen instance of that class (equal, hashed and serialized as if built by
its `__init__`). Used only where the caller passes values the `__init__`
would store unchanged (these classes have no `__post_init__`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def twin_class(cls: type) -> type:
    """A mutable class whose instances may be retyped (`obj.__class__ = cls`)
    to the frozen slotted dataclass `cls` (or to a slot-less subclass of one,
    as history's PostingRow of the ledger's Posting)."""
    if not dataclasses.is_dataclass(cls) or "__post_init__" in dir(cls):
        raise TypeError(f"{cls.__name__}: not a dataclass without __post_init__")
    layout = [c for c in cls.__mro__[:-1] if c.__dict__.get("__slots__", None) != ()]
    if len(layout) != 1 or "__slots__" not in layout[0].__dict__:
        raise TypeError(f"{cls.__name__}: needs exactly one class in its MRO with (non-empty) __slots__")
    slots = tuple(layout[0].__dict__["__slots__"])
    names = tuple(f.name for f in dataclasses.fields(cls))
    if sorted(slots) != sorted(names):
        raise TypeError(f"{cls.__name__}: slots {slots} are not its fields {names}")
    return type(f"_{cls.__name__}Twin", (), {"__slots__": slots})


def fast_constructor(cls: type[T], fields: tuple[str, ...] | None = None) -> Callable[..., T]:
    """`cls(*values)` for a frozen slotted dataclass, positional over
    `fields` (default: all its fields in order; the fields left out must
    have defaults, which are stored as such)."""
    twin = twin_class(cls)
    specs = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = fields if fields is not None else tuple(f.name for f in specs)
    known = {f.name for f in specs}
    if set(names) - known or len(set(names)) != len(names):
        raise TypeError(f"{cls.__name__}: bad field list {names}")
    # The twin's own __init__ retypes the object: calling the twin class is
    # ~4 % faster than object.__new__ and stores in a function.
    namespace: dict[str, Any] = {"_cls": cls}
    lines = [f"def __init__(self, {', '.join(names)}):"]
    lines += [f"    self.{n} = {n}" for n in names]
    for f in specs:
        if f.name in names:
            continue
        if f.default is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name} has no default and is not among {names}")
        namespace[f"_d_{f.name}"] = f.default
        lines.append(f"    self.{f.name} = _d_{f.name}")
    lines += ["    self.__class__ = _cls"]
    exec("\n".join(lines) + "\n", namespace)  # noqa: S102 - generated from the field names above
    twin.__init__ = namespace["__init__"]  # type: ignore[misc]
    new: Callable[..., T] = twin
    return new
