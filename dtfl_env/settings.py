"""Frozen, strictly validated settings: the one way dtfl-gym checks a config block.

A settings class is a frozen dataclass deriving :class:`Settings` whose fields are declared
with :func:`choice`, :func:`number`, :func:`integer`, :func:`flag`, :func:`setting` (a check
of its own) or :func:`block` (a nested settings block). ``__post_init__`` runs every
field's check with the field's dotted path, so a bad value raises ``ValueError`` naming
where it sits and what is allowed (``reward.latency_form: must be one of ['linear', 'log',
'log_weighted'], got 'exp'``); :meth:`Settings.from_dict` rejects unknown keys by their
dotted path (``reward.latncy``, :func:`check_keys`) and :meth:`Settings.to_dict` gives the
plain, JSON-ready dict back (``from_dict(to_dict())`` is the identity).

Imports nothing of dtfl-gym: every layer can use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import Field, field, fields
from typing import Any, ClassVar, TypeVar

import numpy as np

__all__ = [
    "Check",
    "Settings",
    "block",
    "check_keys",
    "choice",
    "flag",
    "integer",
    "number",
    "setting",
]

#: a field's check: ``check(value, where)`` returns the value to store (the value itself,
#: or a normalised form) or raises ``ValueError`` starting with ``where``
Check = Callable[[Any, str], Any]
S = TypeVar("S", bound="Settings")


def check_keys(data: Mapping[str, Any], allowed: set[str], path: str) -> None:
    """Raise ``ValueError`` naming the dotted path of every unknown key in ``data``."""
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise ValueError(f"{path or 'config'}: expected an object/mapping, got {kind}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        where = ", ".join(f"{path}.{k}" if path else str(k) for k in unknown)
        raise ValueError(f"unknown key(s): {where} (allowed: {', '.join(sorted(allowed))})")


def setting(default: Any, check: Check | None = None) -> Any:
    """A field with ``default`` (immutable) whose values pass ``check``."""
    return field(default=default, metadata={"check": check} if check else {})


def choice(default: str, allowed: Sequence[str]) -> Any:
    """A field that takes one of ``allowed``."""
    allowed = tuple(allowed)

    def check(value: Any, where: str) -> Any:
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"{where}: must be one of {list(allowed)}, got {value!r}")
        return value

    return setting(default, check)


def flag(default: bool) -> Any:
    """A field that is ``True`` or ``False``."""

    def check(value: Any, where: str) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: must be true or false, got {value!r}")
        return value

    return setting(default, check)


def _interval(lo: float | None, lo_open: bool, hi: float | None, hi_open: bool) -> str:
    """The range as the error messages write it: ``> 0``, ``>= 1``, ``in (0, 1)``."""
    if lo is None and hi is None:
        return ""
    if hi is None:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if lo is None:
        return f" {'<' if hi_open else '<='} {hi:g}"
    return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def number(
    default: float | None,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    optional: bool = False,
) -> Any:
    """A field holding a finite real number (not a bool) within the given bounds;
    ``optional``: ``None`` too."""
    lo, lo_open = (gt, True) if gt is not None else (ge, False)
    hi, hi_open = (lt, True) if lt is not None else (le, False)
    wanted = f"a finite number{_interval(lo, lo_open, hi, hi_open)}" + (
        " or None" if optional else ""
    )

    def check(value: Any, where: str) -> Any:
        if value is None and optional:
            return value
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(value)
            or (lo is not None and (value <= lo if lo_open else value < lo))
            or (hi is not None and (value >= hi if hi_open else value > hi))
        ):
            raise ValueError(f"{where}: must be {wanted}, got {value!r}")
        return value

    return setting(default, check)


def integer(
    default: int | None, *, ge: int | None = None, le: int | None = None, optional: bool = False
) -> Any:
    """A field holding an integer (not a bool) in ``[ge, le]``; ``optional``: ``None`` too."""
    wanted = f"an integer{_interval(ge, False, le, False)}" + (" or None" if optional else "")

    def check(value: Any, where: str) -> Any:
        if value is None and optional:
            return value
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or (ge is not None and value < ge)
            or (le is not None and value > le)
        ):
            raise ValueError(f"{where}: must be {wanted}, got {value!r}")
        return value

    return setting(default, check)


def block(cls: type) -> Any:
    """A field holding a nested settings block of ``cls`` (any class with
    ``from_dict(mapping, path)`` and ``to_dict()``), read from its mapping by
    :meth:`Settings.from_dict`."""
    return field(default_factory=cls, metadata={"block": cls})


class Settings:
    """Base of the frozen settings dataclasses (see the module docstring).

    ``section`` is where the block sits in its config (``"reward"``; ``""`` at the top),
    the prefix of every error message.
    """

    section: ClassVar[str] = ""

    def _where(self, name: str) -> str:
        return f"{self.section}.{name}" if self.section else name

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            check = f.metadata.get("check")
            if check is not None:
                object.__setattr__(self, f.name, check(getattr(self, f.name), self._where(f.name)))
            elif "block" in f.metadata and not isinstance(
                getattr(self, f.name), f.metadata["block"]
            ):
                raise ValueError(
                    f"{self._where(f.name)}: expected "
                    f"{f.metadata['block'].__name__}, "
                    f"got {type(getattr(self, f.name)).__name__}"
                )

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any] | None, path: str | None = None) -> S:
        """Strict construction from a (partial) mapping: keys left out keep their defaults,
        an unknown key raises ``ValueError`` naming ``path.key`` (``path``: the class's
        ``section``), nested blocks are read by their own ``from_dict``."""
        path = cls.section if path is None else path
        data = {} if data is None else data
        own: tuple[Field[Any], ...] = fields(cls)  # type: ignore[arg-type]
        check_keys(data, {f.name for f in own}, path)
        values = dict(data)
        for f in own:
            if "block" in f.metadata and f.name in values:
                values[f.name] = f.metadata["block"].from_dict(
                    values[f.name], f"{path}.{f.name}" if path else f.name
                )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain, JSON-ready dict (nested blocks and values with a
        ``to_dict()`` as dicts, tuples as lists) that :meth:`from_dict` reads back."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if "block" in f.metadata or hasattr(v, "to_dict"):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out
