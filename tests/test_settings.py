"""dtfl_env.settings: the one validation routine of every settings dataclass."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pytest

from dtfl_env.settings import Settings, block, check_keys, choice, flag, integer, number


@dataclass(frozen=True)
class Inner(Settings):
    section = "outer.inner"

    level: float = number(0.5, ge=0, lt=1)
    pick: str = choice("a", ("a", "b"))


@dataclass(frozen=True)
class Outer(Settings):
    section = "outer"

    on: bool = flag(True)
    count: int = integer(3, ge=1, le=8)
    limit_s: float | None = number(None, gt=0, optional=True)
    inner: Inner = block(Inner)


def test_defaults_round_trip_and_freeze() -> None:
    o = Outer()
    assert o.to_dict() == {
        "on": True,
        "count": 3,
        "limit_s": None,
        "inner": {"level": 0.5, "pick": "a"},
    }
    assert Outer.from_dict(o.to_dict()) == o and Outer.from_dict(None) == o
    changed = Outer.from_dict({"count": 8, "inner": {"pick": "b"}})
    assert changed.inner == Inner(pick="b") and changed.count == 8
    assert Outer.from_dict(changed.to_dict()) == changed
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.count = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"cnt": 1}, r"unknown key\(s\): outer\.cnt \(allowed: count, inner, limit_s, on\)"),
        ({"inner": {"levl": 1}}, r"outer\.inner\.levl"),
        ({"inner": 3}, r"outer\.inner: expected an object/mapping, got int"),
        ({"on": 1}, r"outer\.on: must be true or false, got 1"),
        ({"count": 0}, r"outer\.count: must be an integer in \[1, 8\], got 0"),
        ({"count": True}, r"outer\.count: must be an integer"),
        ({"count": 2.0}, r"outer\.count: must be an integer"),
        ({"limit_s": 0}, r"outer\.limit_s: must be a finite number > 0 or None, got 0"),
        ({"limit_s": math.inf}, r"outer\.limit_s: must be a finite number > 0"),
        (
            {"inner": {"level": 1}},
            r"outer\.inner\.level: must be a finite number in \[0, 1\), "
            r"got 1",
        ),
        ({"inner": {"level": "0.5"}}, r"outer\.inner\.level: must be a finite number"),
        ({"inner": {"pick": "c"}}, r"outer\.inner\.pick: must be one of \['a', 'b'\], got 'c'"),
    ],
)
def test_errors_name_the_dotted_path_and_what_is_allowed(data, message) -> None:
    with pytest.raises(ValueError, match=message):
        Outer.from_dict(data)


def test_construction_and_replace_are_validated_too() -> None:
    with pytest.raises(ValueError, match=r"outer\.count"):
        Outer(count=9)
    with pytest.raises(ValueError, match=r"outer\.inner\.pick"):
        dataclasses.replace(Inner(), pick="z")
    with pytest.raises(ValueError, match=r"outer\.inner: expected Inner, got dict"):
        Outer(inner={"level": 0.1})  # type: ignore[arg-type]
    assert Outer(count=np.int64(2), limit_s=np.float64(1.5)).count == 2  # numpy scalars pass


def test_check_keys() -> None:
    check_keys({"a": 1}, {"a", "b"}, "x")
    with pytest.raises(ValueError, match=r"unknown key\(s\): x\.c, x\.d"):
        check_keys({"c": 1, "d": 2, "a": 0}, {"a"}, "x")
    with pytest.raises(ValueError, match=r"unknown key\(s\): c "):
        check_keys({"c": 1}, {"a"}, "")
    with pytest.raises(ValueError, match="x: expected an object/mapping, got list"):
        check_keys([], {"a"}, "x")  # type: ignore[arg-type]
