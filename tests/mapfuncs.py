"""Top-level functions for the Client.map tests: this file is what drivemr ships to workers."""

from __future__ import annotations

from typing import Any


def square(x: int) -> int:
    return x * x


def describe(item: dict[str, Any]) -> dict[str, Any]:
    return {"name": item["name"].upper(), "total": sum(item["values"]), "none": None}


def picky(x: int) -> int:
    if x % 10 == 7:
        raise ValueError(f"bad item {x}")
    return x + 1


def returns_a_set(x: int) -> Any:
    return {x}


def maps_again(store: str) -> Any:
    from drivemr import Client

    return Client(store).map(square, [1])


def sleeps(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds
