"""Small helpers shared by test packages: load a registry, poll for a condition, read one value."""

import time
from collections.abc import Callable
from typing import Any

import psycopg

from services import registry, registry_file


def load_registry(url: str, text: str) -> None:
    with psycopg.connect(url) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(text), None)


def wait_for(fn: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until fn() is truthy; returns its value or fails with the last one."""
    deadline = time.monotonic() + timeout
    value = fn()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)
        value = fn()
    return value


def scalar(url: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None
