"""Health checks and Prometheus metrics (open routes)."""

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gateway.deps import Conn
from services import liveness, mqtt_ping, topics
from services.intake import REASONS
from services.push import status as push_status

router = APIRouter(tags=["health"])
PROCESSES = ("ingest", "gateway", "alerts")


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The gateway process is up."""
    return {"status": "ok"}


def _broker(rows: list[liveness.IngestRow], url: str | None) -> tuple[str, str | None]:
    """(state, cause): the broker as the IOC hears it.

    An ingest that hears its broker proves the whole path (its own probe went through the broker
    and came back): that is the answer wherever this gateway runs. With no ingest reporting, this
    gateway asks the broker itself (CONNECT/CONNACK, 1 s).
    """
    hearing = [r for r in rows if r.hears]
    if hearing:
        return "ok", None
    if not url:
        return "unknown", "broker: IOC_MQTT_URL is not set and no ingest reports that it hears the broker"
    problem = mqtt_ping.answers(url)
    return ("unreachable", f"broker: {problem}") if problem else ("ok", None)


def _ingest(rows: list[liveness.IngestRow]) -> tuple[str, list[str]]:
    """(state, causes) of the ingest processes; those stopped on purpose do not count."""
    running = [r for r in rows if not r.stopped]
    if not running:
        return "stopped", []
    causes = [
        f"ingest {r.name}: {r.waiting if r.waiting is not None else 'some'} messages waiting and "
        f"nothing committed for {r.stalled_s:.0f} s"
        for r in running
        if r.stalled
    ]
    if causes:
        return "stalled", causes
    if not any(r.hears for r in running):
        newest = min(r.age_s for r in running)
        return "silent", [f"ingest: no ingest has heard the broker for {newest:.0f} s"]
    return "ok", []


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers, the IOC hears its MQTT broker, ingest keeps up with what it
    receives, and this gateway's own workers run; otherwise 503 with `causes`, one line each.

    `broker` is `ok` while an ingest hears it (its own probe goes through the broker and back) or,
    with no ingest reporting, while the broker answers an MQTT CONNECT within 1 s. `ingest` is
    `stalled` while an ingest has messages waiting and has committed nothing for 30 s, `silent`
    when no ingest has reported for 15 s, `stopped` when every ingest was stopped on purpose.
    """
    causes: list[str] = []
    rows: list[liveness.IngestRow] | None = None
    try:
        with request.app.state.pool.connection(timeout=2) as conn:
            rows = liveness.ingest_rows(conn)
    except Exception as err:  # noqa: BLE001 - any failure means not ready
        causes.append(f"database: {type(err).__name__}")
    body: dict[str, Any] = {"database": "ok" if rows is not None else "unreachable"}
    broker, cause = _broker(rows or [], request.app.state.settings.mqtt_url)
    body["broker"] = broker
    if cause:
        causes.append(cause)
    if rows is not None:
        body["ingest"], more = _ingest(rows)
        causes += more
    workers = getattr(request.app.state, "workers", None)
    failure = workers.failure if workers is not None else None
    body["workers"] = "ok" if failure is None else "failed"
    if failure is not None:
        causes.append(f"gateway: {failure.describe()}")
    body["status"] = "ok" if not causes else "unavailable"
    if causes:
        body["causes"] = causes
    return JSONResponse(body, status_code=200 if not causes else 503)


_HELP = {
    "ioc_ingest_messages_total": ("counter", "MQTT messages committed by ingest, by channel"),
    "ioc_ingest_dead_letters_total": ("counter", "Messages kept in the dead-letter store, by reason"),
    "ioc_process_starts_total": ("counter", "Starts of each IOC process (restarts show as increases)"),
}
_LABEL = {
    "ioc_ingest_messages_total": "channel",
    "ioc_ingest_dead_letters_total": "reason",
    "ioc_process_starts_total": "process",
}
# Every series exists from the start, at 0: a rate() or an alert on it works before the first event.
_ZERO = {
    "ioc_ingest_messages_total": topics.CHANNELS,
    "ioc_ingest_dead_letters_total": REASONS,
    "ioc_process_starts_total": PROCESSES,
}
_GAUGES = {
    "ioc_ingest_last_commit_timestamp_seconds": "When each ingest last committed a batch (Unix time)",
    "ioc_ingest_waiting_messages": "Messages received by each ingest and not yet committed",
    "ioc_ingest_stalled_seconds": "How long each ingest has committed nothing while messages waited",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@router.get("/metrics", response_class=Response)
def metrics(conn: Conn) -> Response:
    """Prometheus text format; counters are kept in the database, exact across processes."""
    rows = conn.execute("SELECT name, label, value FROM metric_counters ORDER BY name, label").fetchall()
    by_name: dict[str, dict[str, int]] = {name: dict.fromkeys(_ZERO[name], 0) for name in _HELP}
    for name, label, value in rows:
        by_name.setdefault(name, {})[label] = value
    lines = []
    for name, samples in by_name.items():
        kind, text = _HELP.get(name, ("counter", name))
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        key = _LABEL.get(name, "label")
        for label, value in sorted(samples.items()):
            lines.append(f'{name}{{{key}="{_label(label)}"}} {value}' if label else f"{name} {value}")
    ingest = [r for r in liveness.ingest_rows(conn) if not r.stopped]
    values: dict[str, list[tuple[str, float]]] = {name: [] for name in _GAUGES}
    for r in ingest:
        if r.last_commit_at is not None:
            values["ioc_ingest_last_commit_timestamp_seconds"].append((r.name, r.last_commit_at.timestamp()))
        if r.waiting is not None:
            values["ioc_ingest_waiting_messages"].append((r.name, float(r.waiting)))
        values["ioc_ingest_stalled_seconds"].append((r.name, round(r.stalled_s, 1)))
    for name, text in _GAUGES.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        lines += [f'{name}{{ingest="{_label(n)}"}} {v}' for n, v in values[name]]
    lines += push_status.metrics_lines(conn)
    return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8")
