"""What the ONVIF poller learned of each camera (media profiles, stream/snapshot URIs)."""

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class CameraMedia:
    device_id: str
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    serial: str | None = None
    hardware_id: str | None = None
    profiles: list[dict[str, Any]] = field(default_factory=list)
    stream_uri: str | None = None
    snapshot_uri: str | None = None
    snapshot_auth: str | None = None
    events: bool | None = None
    xaddrs: dict[str, str] = field(default_factory=dict)
    updated_at: datetime | None = None

    def same_as(self, other: "CameraMedia | None") -> bool:
        """Equal but for `updated_at` (the poller writes only what changed)."""
        if other is None:
            return False
        a, b = asdict(self), asdict(other)
        a.pop("updated_at"), b.pop("updated_at")
        return a == b


_COLS = (
    "device_id",
    "manufacturer",
    "model",
    "firmware",
    "serial",
    "hardware_id",
    "profiles",
    "stream_uri",
    "snapshot_uri",
    "snapshot_auth",
    "events",
    "xaddrs",
)


def upsert(conn: psycopg.Connection, m: CameraMedia) -> None:
    values = [getattr(m, c) for c in _COLS]
    values[_COLS.index("profiles")] = Jsonb(m.profiles)
    values[_COLS.index("xaddrs")] = Jsonb(m.xaddrs)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLS[1:])
    conn.execute(
        f"INSERT INTO camera_media ({', '.join(_COLS)}) VALUES ({', '.join(['%s'] * len(_COLS))}) "  # noqa: S608
        f"ON CONFLICT (device_id) DO UPDATE SET {sets}, updated_at = now()",
        values,
    )


def get(conn: psycopg.Connection, device_id: str) -> CameraMedia | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {', '.join(_COLS)}, updated_at FROM camera_media WHERE device_id = %s",  # noqa: S608
            (device_id,),
        ).fetchone()
    return CameraMedia(**row) if row else None


def list_media(conn: psycopg.Connection, device_ids: list[str] | None = None) -> list[CameraMedia]:
    """Every active camera's media, or those of `device_ids`."""
    where, params = "WHERE d.retired_at IS NULL", []
    if device_ids is not None:
        where += " AND m.device_id = ANY(%s)"
        params.append(device_ids)
    cols = ", ".join(f"m.{c}" for c in _COLS)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {cols}, m.updated_at FROM camera_media m JOIN devices d ON d.id = m.device_id "  # noqa: S608
            f"{where} ORDER BY m.device_id",
            params,
        ).fetchall()
    return [CameraMedia(**r) for r in rows]
