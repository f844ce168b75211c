"""Health checks and Prometheus metrics (open routes)."""

import socket
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gateway.deps import Conn

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The gateway process is up."""
    return {"status": "ok"}


def _broker_reachable(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 1883), timeout=1):
            return True
    except OSError:
        return False


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready when the database and the MQTT broker are reachable."""
    db_ok = True
    try:
        with request.app.state.pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means not ready
        db_ok = False
    mqtt_ok = _broker_reachable(request.app.state.settings.mqtt_url)
    ok = db_ok and mqtt_ok
    body = {
        "status": "ok" if ok else "unavailable",
        "database": "ok" if db_ok else "unreachable",
        "broker": "ok" if mqtt_ok else "unreachable",
    }
    return JSONResponse(body, status_code=200 if ok else 503)


_HELP = {
    "ioc_ingest_messages_total": "MQTT messages committed by ingest, by channel",
    "ioc_ingest_dead_letters_total": "Messages kept in the dead-letter store, by reason",
}


@router.get("/metrics", response_class=Response)
def metrics(conn: Conn) -> Response:
    """Prometheus text format; counters are kept in the database, exact across processes."""
    rows = conn.execute("SELECT name, label, value FROM metric_counters ORDER BY name, label").fetchall()
    label_name = {"ioc_ingest_messages_total": "channel", "ioc_ingest_dead_letters_total": "reason"}
    by_name: dict[str, list[tuple[str, int]]] = {name: [] for name in _HELP}
    for name, label, value in rows:
        by_name.setdefault(name, []).append((label, value))
    lines = []
    for name, samples in by_name.items():
        lines.append(f"# HELP {name} {_HELP.get(name, name)}")
        lines.append(f"# TYPE {name} counter")
        if not samples:
            lines.append(f"{name} 0")
        for label, value in samples:
            key = label_name.get(name, "label")
            lines.append(f'{name}{{{key}="{label}"}} {value}' if label else f"{name} {value}")
    return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8")
