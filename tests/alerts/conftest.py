"""Helpers for alert tests: a registry, device states written as ingest writes them, local
receivers (HTTP, SMTP) and an alert engine running in a thread."""

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.types.json import Jsonb

from services import feed
from services.alerts.engine import AlertsSettings, Engine
from services.settings import load
from tests.support import load_registry as _load_registry

REGISTRY = """\
commune: {id: thoai-giang, name: "Xã Thoại Giang"}
villages:
  - {id: trung-binh, name: "Ấp Trung Bình"}
  - {id: tay-binh, name: "Ấp Tây Bình"}
devices:
  - {id: gw-trung-binh, kind: gateway, village: trung-binh, name: "Router ấp Trung Bình"}
  - {id: wifi-trung-binh, kind: wifi, village: trung-binh, parent: gw-trung-binh}
  - {id: cam-ubnd-1, kind: camera, village: trung-binh, name: "Camera cổng UBND", parent: wifi-trung-binh}
  - {id: spk-trung-binh-1, kind: speaker, village: trung-binh, name: "Loa ấp Trung Bình 1", parent: gw-trung-binh}
  - {id: spk-tay-binh-1, kind: speaker, village: tay-binh, name: "Loa ấp Tây Bình 1"}
  - {id: eb-tay-binh, kind: eboard, village: tay-binh, name: "Bảng tin ấp Tây Bình"}
"""


def load_registry(url: str, text: str = REGISTRY) -> None:
    _load_registry(url, text)


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def set_state(
    url: str, device_id: str, state: str, *, metrics: dict[str, Any] | None = None, at: datetime | None = None
) -> None:
    """What ingest does on a transition (services.storage / services.liveness): device_state, state_changes, feed."""
    at = at or datetime.now(UTC)
    with psycopg.connect(url) as conn, conn.transaction():
        dev = conn.execute(
            "SELECT commune_id, village_id, kind FROM devices WHERE id = %s", (device_id,)
        ).fetchone()
        assert dev is not None, device_id
        old = conn.execute(
            "SELECT state, metrics FROM device_state WHERE device_id = %s FOR UPDATE", (device_id,)
        ).fetchone()
        assert old is not None
        new_metrics = old[1] if metrics is None else metrics
        changed = old[0] != state
        conn.execute(
            "UPDATE device_state SET state = %s, since = CASE WHEN %s THEN %s ELSE since END,"
            " last_seen = %s, metrics = %s, updated_at = now() WHERE device_id = %s",
            (state, changed, at, at, Jsonb(new_metrics), device_id),
        )
        if changed:
            feed.record_changes(conn, [(device_id, dev[0], dev[1], dev[2], state, old[0], at, "test")])
        feed.publish(
            conn,
            [
                {
                    "type": "status",
                    "device_id": device_id,
                    "commune": dev[0],
                    "village": dev[1],
                    "kind": dev[2],
                    "state": state,
                    "since": at.isoformat(),
                    "metrics": new_metrics,
                }
            ],
        )


def add_event(
    url: str, device_id: str, etype: str, fields: dict[str, Any] | None = None, severity: str = "warning"
) -> None:
    """An event row with its commit-ordered feed seq, as ingest stores one."""
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn, conn.transaction():
        item = {"type": "event", "device_id": device_id, "event_type": etype, "ts": now.isoformat()}
        seq = feed.publish(conn, [item])
        conn.execute(
            "INSERT INTO device_events (device_id, ts, received_at, type, severity, message, fields, seq)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (device_id, now, now, etype, severity, etype, Jsonb(fields or {}), seq),
        )


def all_online(url: str, metrics: dict[str, dict[str, Any]] | None = None) -> None:
    for (device_id,) in query(url, "SELECT id FROM devices ORDER BY id"):
        set_state(url, device_id, "online", metrics=(metrics or {}).get(device_id, {}))


def alerts(url: str, where: str = "true") -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute(f"SELECT * FROM alerts WHERE {where} ORDER BY id").fetchall()  # noqa: S608


class Receiver:
    """A local HTTP server that records every request and answers with `answer` (status, JSON)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer: tuple[int, dict[str, Any]] = (200, {"ok": True, "error": 0, "result": {}})
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with outer.lock:
                    outer.requests.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "at": time.monotonic(),
                        }
                    )
                    status, answer = outer.answer
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(answer).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def json(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def write_config(tmp_path: Path, doc: dict[str, Any]) -> Path:
    p = tmp_path / "alerts.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return p


def settings(db_url: str, alerts_file: Path | None, **kw: Any) -> AlertsSettings:
    # No .env file: a developer's settings must not leak into tests. No start grace unless a test
    # asks for one: tests start the engine at any moment, not with ingest as `ioc up` does.
    kw.setdefault("alerts_start_grace_s", 0)
    return load(
        AlertsSettings,
        _env_file=None,
        database_url=db_url,
        alerts_file=alerts_file,
        alerts_tick_s=0.1,
        alerts_lock_poll_s=0.2,
        public_url="http://ioc.example:8000",
        **kw,
    )


@contextmanager
def running(s: AlertsSettings) -> Iterator[Engine]:
    """An alert engine in a thread of its own, stopped on exit."""
    engine = Engine(s)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            loop.run_until_complete(engine.run(stop))
        except BaseException as err:  # noqa: BLE001 - reported to the test below
            failure.append(err)

    thread = threading.Thread(target=main, name=f"engine-{s.alerts_name}", daemon=True)
    thread.start()
    try:
        yield engine
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
    assert not thread.is_alive(), "engine did not stop"
    if failure:
        raise failure[0]


def base_config(receiver: Receiver, **rules: dict[str, Any]) -> dict[str, Any]:
    """Fast timings, one json:// channel for everything."""
    return {
        "rules": {"offline": {"for_s": 1}, **rules},
        "channels": {"ops": f"json://127.0.0.1:{receiver.port}/hook"},
        "routes": [{"channels": ["ops"]}],
    }
