"""Registry files (YAML, CSV) and their import into a real database."""

from pathlib import Path

import psycopg
import pytest

from services import registry, registry_file
from services.errors import InvalidInput
from services.vault import Vault

YAML = """\
commune: {id: thoai-giang, name: "Xã Thoại Giang", district: "Huyện Thoại Sơn", province: "An Giang"}
villages:
  - {id: trung-binh, name: "Ấp Trung Bình"}
devices:
  - {id: gw-trung-binh, kind: gateway, village: trung-binh, name: "Router ấp Trung Bình"}
  - {id: cam-ubnd-1, kind: camera, village: trung-binh, name: "Camera cổng UBND",
     lat: 10.39, lon: 105.33, parent: gw-trung-binh,
     onvif: {host: 192.0.2.21, port: 80, username: admin, password: "s3cret-pw", poll_s: 30}}
  - {id: spk-trung-binh-1, kind: speaker, village: trung-binh, heartbeat_s: 30}
"""

VAULT = Vault("test-secret-key-0123456789")


def test_yaml_registry_parses_spec_example() -> None:
    reg = registry_file.parse_yaml(YAML)
    assert [c.id for c in reg.communes] == ["thoai-giang"]
    assert reg.communes[0].name == "Xã Thoại Giang"
    cam = next(d for d in reg.devices if d.id == "cam-ubnd-1")
    assert cam.parent_id == "gw-trung-binh"
    assert cam.onvif and cam.onvif.poll_s == 30 and cam.onvif.path == "/onvif/device_service"
    assert reg.passwords == {"cam-ubnd-1": "s3cret-pw"}
    spk = next(d for d in reg.devices if d.id == "spk-trung-binh-1")
    assert spk.heartbeat_s == 30 and spk.liveness_window_s == 90


def test_yaml_errors_name_their_lines_and_reject_the_file() -> None:
    bad = YAML + "  - {id: Bad_ID, kind: toaster}\n  - {id: spk-2, kind: speaker, lat: 91}\n"
    with pytest.raises(InvalidInput) as exc:
        registry_file.parse_yaml(bad, "reg.yaml")
    msg = exc.value.message
    assert "reg.yaml:10: device id 'Bad_ID'" in msg
    assert "reg.yaml:10: kind 'toaster'" in msg
    assert "reg.yaml:11: lat 91" in msg
    assert "nothing imported" in msg


def test_duplicate_ids_and_unknown_fields_are_errors() -> None:
    bad = YAML + "  - {id: spk-trung-binh-1, kind: speaker, hearbeat_s: 10}\n"
    with pytest.raises(InvalidInput) as exc:
        registry_file.parse_yaml(bad)
    assert "appears twice" in exc.value.message
    assert "unknown device field(s) hearbeat_s" in exc.value.message


def test_not_yaml_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="not valid YAML"):
        registry_file.parse_yaml("commune: {id: x\n")


def test_csv_rows_with_errors_are_reported_by_line() -> None:
    text = (
        "commune,id,kind,village,name,lat,lon,parent,heartbeat_s,onvif_host,onvif_port,onvif_username,"
        "onvif_password,onvif_poll_s\n"
        "long-thanh,spk-1,speaker,xom-1,Loa 1,,,,30,,,,,\n"
        "long-thanh,cam-1,camera,xom-1,Cam,19.0,105.5,,,10.0.0.5,8080,admin,pw,notanumber\n"
    )
    with pytest.raises(InvalidInput) as exc:
        registry_file.parse_csv(text, "d.csv")
    assert "d.csv:3: onvif.poll_s 'notanumber'" in exc.value.message


def test_import_is_an_upsert_and_encrypts_camera_passwords(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        r1 = registry.import_registry(conn, registry_file.parse_yaml(YAML), VAULT)
        assert (r1.devices_added, r1.devices_updated) == (3, 0)
        r2 = registry.import_registry(
            conn, registry_file.parse_yaml(YAML.replace("heartbeat_s: 30", "heartbeat_s: 20")), VAULT
        )
        assert (r2.devices_added, r2.devices_updated) == (0, 3)
        raw = conn.execute("SELECT onvif_password FROM devices WHERE id = 'cam-ubnd-1'").fetchone()[0]
        assert b"s3cret-pw" not in bytes(raw)
        assert registry.camera_password(conn, VAULT, "cam-ubnd-1") == "s3cret-pw"
        assert conn.execute("SELECT heartbeat_s FROM devices WHERE id='spk-trung-binh-1'").fetchone()[0] == 20
        assert conn.execute("SELECT count(*) FROM device_state").fetchone()[0] == 3


def test_import_rejects_unknown_parent_and_village_against_database(db_url: str) -> None:
    text = YAML + "  - {id: spk-x, kind: speaker, village: nowhere, parent: gw-missing}\n"
    with psycopg.connect(db_url) as conn:
        with pytest.raises(InvalidInput) as exc:
            registry.import_registry(conn, registry_file.parse_yaml(text), VAULT)
        assert "village nowhere is not defined" in exc.value.message
        assert "parent gw-missing is not a known device" in exc.value.message
        assert conn.execute("SELECT count(*) FROM devices").fetchone()[0] == 0


def test_retire_keeps_history_and_leaves_state(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(YAML), VAULT)
        registry.retire(conn, "spk-trung-binh-1")
        assert [d.id for d in registry.devices(conn)] == ["cam-ubnd-1", "gw-trung-binh"]
        assert len(registry.devices(conn, include_retired=True)) == 3
        assert conn.execute("SELECT count(*) FROM device_state").fetchone()[0] == 2


def test_read_rejects_unknown_extension(tmp_path: Path) -> None:
    f = tmp_path / "reg.txt"
    f.write_text(YAML)
    with pytest.raises(InvalidInput, match=r"\.yaml, \.yml or \.csv"):
        registry_file.read(f)


def test_csv_import_keeps_names_from_yaml(db_url: str) -> None:
    csv_text = (
        "commune,id,kind,village\n"
        "thoai-giang,spk-csv-1,speaker,trung-binh\n"
        "thoai-giang,spk-csv-2,speaker,tay-binh\n"
    )
    with psycopg.connect(db_url) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(YAML), VAULT)
        registry.import_registry(conn, registry_file.parse_csv(csv_text), VAULT, names_authoritative=False)
        names = dict(conn.execute("SELECT id, name FROM villages").fetchall())
        commune = conn.execute("SELECT name FROM communes WHERE id = 'thoai-giang'").fetchone()[0]
    assert names == {"trung-binh": "Ấp Trung Bình", "tay-binh": "tay-binh"}
    assert commune == "Xã Thoại Giang"
