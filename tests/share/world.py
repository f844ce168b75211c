"""A small two-commune world for the sharing tests, written by SQL as ingest writes it."""

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from services import feed, registry, registry_file

COMMUNE_A = """\
commune: {id: thoai-giang, name: "Xã Thoại Giang", district: "Huyện Thoại Sơn", province: "An Giang"}
villages:
  - {id: trung-binh, name: "Ấp Trung Bình"}
  - {id: tay-binh, name: "Ấp Tây Bình"}
devices:
  - {id: gw-trung-binh, kind: gateway, village: trung-binh, name: "Router ấp Trung Bình"}
  - {id: cam-ubnd-1, kind: camera, village: trung-binh, name: "Camera cổng UBND", lat: 10.39, lon: 105.33,
     parent: gw-trung-binh}
  - {id: spk-trung-binh-1, kind: speaker, village: trung-binh, heartbeat_s: 30}
  - {id: spk-tay-binh-1, kind: speaker, village: tay-binh, heartbeat_s: 30}
  - {id: spk-old, kind: speaker, village: tay-binh}
"""

COMMUNE_B = """\
commune: {id: vong-the, name: "Xã Vọng Thê"}
villages:
  - {id: xom-1, name: "Xóm 1"}
devices:
  - {id: spk-vt-1, kind: speaker, village: xom-1}
  - {id: cam-vt-1, kind: camera, village: xom-1}
"""

A_DEVICES = ["cam-ubnd-1", "gw-trung-binh", "spk-tay-binh-1", "spk-trung-binh-1"]
B_DEVICES = ["cam-vt-1", "spk-vt-1"]


def seed(conn: psycopg.Connection) -> None:
    """Both communes; spk-old is retired (it must never be shared)."""
    registry.import_registry(conn, registry_file.parse_yaml(COMMUNE_A), None)
    registry.import_registry(conn, registry_file.parse_yaml(COMMUNE_B), None)
    registry.retire(conn, "spk-old")
    conn.commit()


def change(
    conn: psycopg.Connection,
    device_id: str,
    state: str,
    at: datetime,
    reason: str = "test",
    *,
    commit: bool = True,
) -> None:
    """A state transition as ingest records it: change log plus current state (committed unless the
    caller groups several in one transaction)."""
    commune, village, kind = conn.execute(
        "SELECT commune_id, village_id, kind FROM devices WHERE id = %s", (device_id,)
    ).fetchone()
    prev = conn.execute(
        "SELECT state FROM state_changes WHERE device_id = %s ORDER BY seq DESC LIMIT 1", (device_id,)
    ).fetchone()
    prev_state = prev[0] if prev else "unknown"
    conn.execute(
        "UPDATE device_state SET state = %s, since = %s, reason = %s, last_seen = %s,"
        " updated_at = now() WHERE device_id = %s",
        (state, at, reason, at, device_id),
    )
    feed.record_changes(conn, [(device_id, commune, village, kind, state, prev_state, at, reason)])
    if commit:
        conn.commit()


def sample(conn: psycopg.Connection, device_id: str, ts: datetime, metrics: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO status_samples (device_id, ts, received_at, metrics) VALUES (%s, %s, %s, %s)",
        (device_id, ts, ts, Jsonb(metrics)),
    )
    conn.execute(
        "UPDATE device_state SET metrics = %s, metrics_ts = %s WHERE device_id = %s",
        (Jsonb(metrics), ts, device_id),
    )
    conn.commit()
