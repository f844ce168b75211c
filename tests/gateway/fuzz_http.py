"""HTTP fuzzing of the gateway from its own /openapi.json (schemathesis on hypothesis), shared by the
bounded test (tests/gateway/test_schemathesis_operators.py) and the long run (bench/fuzz_http.py).

The app runs in-process on a real database seeded with two communes, devices with history, events
and alerts, and a maintenance window; operator routes are called with an admin's token, share and
NGSI-LD routes with an API key of every commune. Each operation gets generated requests that follow
its schema (positive) and requests that break it (negative). Every answer must be documented:
status, content type, body schema and headers, and no input may cause a server error.
"""

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis
import hypothesis.errors
import psycopg
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance
from schemathesis.generation.modes import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import negative_data_rejection

from gateway.app import create_app
from services import auth, keys
from tests.gateway.conftest import gateway_settings, seed
from tests.share import world as share_world

OPERATOR = r"^/api/v1/"
SHARE = r"^/(api/share/|ngsi-ld/)"
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# What a schema cannot say, so these two checks would report noise, not bugs: opaque cursors,
# the NGSI-LD q grammar and a time's range are schema-valid strings that get a documented 400
# (positive_data_acceptance); a negated value that still means something once sent as text
# (negative_data_rejection, e.g. a number where a free-text filter is expected).
EXCLUDED = [positive_data_acceptance, negative_data_rejection]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class World:
    app: FastAPI
    db_url: str
    admin: dict[str, str]
    key: dict[str, str]


def _session(conn: psycopg.Connection, username: str) -> dict[str, str]:
    token = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, expires_at)"
        " SELECT %s, id, now() + interval '1 day' FROM users WHERE username = %s",
        (auth.token_hash(token), username),
    )
    return {"Authorization": f"Bearer {token}"}


def populate(db_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """The registry of tests.gateway.conftest plus history, events, alerts and a maintenance window;
    returns the admin's and an all-communes key's Authorization headers."""
    seed(db_url)
    with psycopg.connect(db_url) as conn:
        for i, dev in enumerate(("spk-xom-1", "cam-ubnd-1", "spk-trung-binh-1")):
            at = NOW - timedelta(hours=3 + i)
            share_world.change(conn, dev, "online", at)
            share_world.sample(conn, dev, at, {"volume": 40 + i, "rssi_dbm": -60})
            conn.execute(
                "INSERT INTO device_events (seq, device_id, ts, received_at, type, severity, message, fields)"
                " VALUES (%s, %s, %s, %s, 'tamper', 'warning', 'seed', '{}')",
                (100 + i, dev, at, at),
            )
            # Alerts 1..3 (open): targets for ack, resolve, assign and GET /alerts/{id}.
            conn.execute(
                "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, message, since,"
                " opened_at) SELECT 'offline', id, commune_id, village_id, kind, 'critical', 'seed', %s, %s"
                " FROM devices WHERE id = %s",
                (at, at, dev),
            )
        admin = _session(conn, "admin")
        _, secret = keys.create(conn, "fuzz", None, None, 1_000_000_000)
    return admin, {"Authorization": f"Bearer {secret}"}


@contextmanager
def world(db_url: str) -> Iterator[World]:
    admin, key = populate(db_url)
    app = create_app(gateway_settings(db_url))
    try:
        with app.state.pool:
            yield World(app, db_url, admin, key)
    finally:
        # schemathesis keeps an app's lifespan (its live-feed tailer) running until the process
        # exits; end it with the database it reads.
        shutdown_lifespans()


def schema(app: FastAPI, path_regex: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex=path_regex)


def headers_for(w: World, case: schemathesis.Case) -> dict[str, str]:
    """The credentials a case is sent with: a fresh session for sign-out (it ends its session)."""
    path = case.operation.path
    if path.startswith(("/api/share/", "/ngsi-ld/")):
        return w.key
    if path == "/api/v1/auth/logout":
        with psycopg.connect(w.db_url) as conn:
            return _session(conn, "admin")
    return w.admin


@dataclass
class Findings:
    examples: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, case: schemathesis.Case, err: BaseException) -> None:
        parts = err.exceptions if isinstance(err, BaseExceptionGroup) else (err,)
        for failure in parts:
            title = getattr(failure, "title", type(failure).__name__)
            key = f"{case.operation.label}: {title}"
            if key not in self.failures:
                self.failures[key] = {
                    "operation": case.operation.label,
                    "failure": title,
                    "message": str(getattr(failure, "message", failure))[:500],
                    "reproduce": case.as_curl_command(),
                }


def run(
    w: World,
    path_regex: str,
    *,
    max_examples: int,
    seed: int | None = None,
    collect: Findings | None = None,
    modes: tuple[GenerationMode, ...] = MODES,
) -> int:
    """Fuzzes each operation matching `path_regex`, derandomized (the same examples every run) unless
    a `seed` is given; raises at the first failure unless `collect` is given (then every distinct
    failure is recorded there). Returns the number of operations."""
    operations = [r.ok() for r in schema(w.app, path_regex).get_all_operations()]
    for operation in operations:
        for mode in modes:
            _fuzz(w, operation, mode, max_examples, seed, collect)
    return len(operations)


# Values of the kinds that broke the gateway before (issue 13 item 7), which a schema does not
# suggest: control characters PostgreSQL or a log line cannot take, times at the ends of Python's
# range, numbers past bigint.
POISON = (
    "a\x00b",
    "\x00",
    "x\r\nforged: line",
    "\t",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "9999-12-31",
    "0001-01-01",
    "99999999999999999999",
    "-1",
)


def poison(case: schemathesis.Case, data: st.DataObject) -> None:
    """Now and then, one query or path parameter of the case replaced by a POISON value."""
    where = [("query", k) for k in sorted(case.query or {})] + [
        ("path", k) for k in sorted(case.path_parameters or {})
    ]
    if not where or not data.draw(st.booleans(), label="poisoned"):
        return
    kind, name = data.draw(st.sampled_from(where), label="parameter")
    value = data.draw(st.sampled_from(POISON), label="poison")
    if kind == "query":
        case.query = {**(case.query or {}), name: value}
    elif value.isprintable():  # the transport drops a control character from a path: a path of ""
        case.path_parameters = {**(case.path_parameters or {}), name: value}


def _fuzz(
    w: World,
    operation: Any,
    mode: GenerationMode,
    max_examples: int,
    seed: int | None,
    collect: Findings | None,
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case, data: st.DataObject) -> None:
        poison(case, data)
        call: Callable[..., Any] = case.call_and_validate
        if collect is None:
            call(headers=headers_for(w, case), excluded_checks=EXCLUDED)
            return
        collect.examples += 1
        try:
            response = call(headers=headers_for(w, case), excluded_checks=EXCLUDED)
            key = str(response.status_code)
            collect.statuses[key] = collect.statuses.get(key, 0) + 1
        except (Exception, BaseExceptionGroup) as err:  # noqa: BLE001 - recorded, the run goes on
            collect.record(case, err)

    try:
        (check if seed is None else hypothesis.seed(seed)(check))()
    except hypothesis.errors.Unsatisfiable:
        pass  # nothing to negate: an operation without parameters or body
