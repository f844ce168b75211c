"""Maintenance windows: which devices they cover (one-off and RFC 5545 rrule), and that they
silence alerts."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from services import maintenance
from services.errors import InvalidInput
from tests.alerts.conftest import (
    Receiver,
    alerts,
    all_online,
    base_config,
    load_registry,
    running,
    set_state,
    settings,
    write_config,
)
from tests.support import wait_for

NOW = datetime(2026, 11, 25, 3, 30, tzinfo=UTC)  # 10:30 in Asia/Ho_Chi_Minh


def _add(conn: psycopg.Connection, **kw: object) -> maintenance.Window:
    base: dict[str, object] = {
        "commune_id": None,
        "device_id": None,
        "village_id": None,
        "kind": None,
        "reason": "bảo trì",
        "rrule_text": None,
        "actor": "admin",
    }
    base.update(kw)
    return maintenance.create(conn, **base)  # type: ignore[arg-type]


def test_one_off_windows_cover_device_village_and_kind(db_url: str) -> None:
    load_registry(db_url)
    with psycopg.connect(db_url) as conn:
        _add(
            conn,
            device_id="eb-tay-binh",
            starts_at=NOW - timedelta(hours=1),
            ends_at=NOW + timedelta(hours=1),
        )
        _add(
            conn,
            commune_id="thoai-giang",
            village_id="trung-binh",
            kind="speaker",
            starts_at=NOW - timedelta(minutes=5),
            ends_at=NOW + timedelta(minutes=5),
        )
        _add(
            conn,
            commune_id="thoai-giang",
            kind="camera",
            starts_at=NOW + timedelta(hours=2),
            ends_at=NOW + timedelta(hours=3),
        )
        assert maintenance.devices_in_maintenance(conn, NOW) == {"eb-tay-binh", "spk-trung-binh-1"}
        assert maintenance.devices_in_maintenance(conn, NOW + timedelta(hours=2, minutes=30)) == {
            "cam-ubnd-1"
        }
        assert maintenance.devices_in_maintenance(conn, NOW + timedelta(hours=1)) == set()


def test_rrule_windows_repeat_on_the_local_clock(db_url: str) -> None:
    load_registry(db_url)
    with psycopg.connect(db_url) as conn:
        # Every Tuesday and Thursday 10:00-11:00 Vietnam time, from a first occurrence in the past.
        first = datetime(2026, 11, 3, 3, 0, tzinfo=UTC)  # Tue 10:00 +07
        w = _add(
            conn,
            commune_id="thoai-giang",
            village_id="tay-binh",
            starts_at=first,
            ends_at=first + timedelta(hours=1),
            rrule_text="FREQ=WEEKLY;BYDAY=TU,TH",
        )
        tue = datetime(2026, 11, 24, 3, 30, tzinfo=UTC)
        assert maintenance.devices_in_maintenance(conn, tue) == {"spk-tay-binh-1", "eb-tay-binh"}
        assert maintenance.devices_in_maintenance(conn, tue + timedelta(hours=1)) == set()
        assert maintenance.devices_in_maintenance(conn, tue + timedelta(days=1)) == set()  # Wednesday
        assert maintenance.devices_in_maintenance(conn, tue + timedelta(days=2)) == {
            "spk-tay-binh-1",
            "eb-tay-binh",
        }
        assert maintenance.devices_in_maintenance(conn, first - timedelta(days=7)) == set()
        maintenance.delete(conn, w.id, "admin")
        assert maintenance.devices_in_maintenance(conn, tue) == set()


def test_bad_windows_are_refused(db_url: str) -> None:
    load_registry(db_url)
    with psycopg.connect(db_url) as conn:
        with pytest.raises(InvalidInput, match="rrule"):
            _add(
                conn,
                device_id="eb-tay-binh",
                starts_at=NOW,
                ends_at=NOW + timedelta(hours=1),
                rrule_text="FREQ=SOMETIMES",
            )
        with pytest.raises(InvalidInput, match="after starts_at"):
            _add(conn, device_id="eb-tay-binh", starts_at=NOW, ends_at=NOW)
        with pytest.raises(InvalidInput, match="no village"):
            _add(
                conn,
                commune_id="thoai-giang",
                village_id="nowhere",
                starts_at=NOW,
                ends_at=NOW + timedelta(hours=1),
            )
        with pytest.raises(InvalidInput, match="no device"):
            _add(conn, device_id="ghost", starts_at=NOW, ends_at=NOW + timedelta(hours=1))


def test_maintenance_silences_alerts_of_its_devices_and_those_below(
    db_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    load_registry(db_url)
    all_online(db_url)
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        _add(
            conn,
            device_id="gw-trung-binh",
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(hours=1),
        )
        _add(
            conn,
            commune_id="thoai-giang",
            kind="eboard",
            starts_at=now - timedelta(days=1),
            ends_at=now - timedelta(days=1) + timedelta(hours=2),
            rrule_text="FREQ=DAILY",
        )
    with running(settings(db_url, write_config(tmp_path, base_config(receiver, offline={"for_s": 0})))):
        set_state(db_url, "gw-trung-binh", "offline")
        set_state(db_url, "spk-trung-binh-1", "offline")  # below the router in maintenance
        set_state(db_url, "eb-tay-binh", "offline")  # its kind's daily window
        set_state(db_url, "spk-tay-binh-1", "offline")  # not in maintenance: the one alert
        wait_for(lambda: alerts(db_url))
        set_state(db_url, "spk-tay-binh-1", "online")
        wait_for(lambda: alerts(db_url, "state = 'resolved'"))
    assert [a["device_id"] for a in alerts(db_url)] == ["spk-tay-binh-1"]
