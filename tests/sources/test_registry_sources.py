"""`source`, `brokers:` and `profiles:` in registry files (YAML and CSV): what is stored, what is
refused (with its line), where secrets go, and which profile wins."""

from pathlib import Path

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from services import keys, registry, registry_file
from services.errors import InvalidInput
from services.registry_cache import RegistryCache
from services.sources import HttpSource, MqttSource, PingSource, SnmpSource, TcpSource
from services.sources import store as source_store
from services.vault import Vault
from tests.gateway.conftest import gateway_settings, headers_for, password_hash

SECRET = "test-secret-key-0123456789"
HEAD = """\
commune: {id: thoai-giang, name: "Xã Thoại Giang"}
villages:
  - {id: trung-binh, name: "Ấp Trung Bình"}
"""
GOOD = (
    """\
brokers:
  - {id: aiot, url: "mqtts://ioc:broker-pass-1@aiot.example.vn:8883", client_id: ioc-thoai-giang}
profiles:
  loa-x:
    mqtt:
      availability: {topic: "x/{id}/lwt", online: "1", offline: "0"}
      status: [{topic: "x/{id}/st", split: ",", fields: {volume: "[2]", rssi_dbm: {path: "[3]", scale: 2, offset: -113}}}]
"""
    + HEAD
    + """\
devices:
  - {id: gw-trung-binh, kind: gateway, village: trung-binh, source: {ping: {host: 192.0.2.1}}}
  - {id: loa-tb-1, kind: speaker, village: trung-binh, source: {mqtt: {profile: tasmota, id: loa_tb_1, broker: aiot}}}
  - {id: loa-tb-2, kind: speaker, village: trung-binh, source: {mqtt: {profile: loa-x}}}
  - {id: ap-buu-dien, kind: wifi, village: trung-binh, parent: gw-trung-binh,
     source: {snmp: {host: 192.0.2.10, community: "c0mmunity-secret", extra: {temp: 1.3.6.1.4.1.9.9.13.1.3.1.3.1}}}}
  - {id: ap-truong, kind: wifi, village: trung-binh,
     source: {snmp: {host: 192.0.2.11, version: 3, user: ioc, auth: sha, auth_key: "auth-key-secret", priv: aes,
                     priv_key: "priv-key-secret", uplink: eth0}}}
  - {id: eb-cho, kind: eboard, village: trung-binh,
     source: {http: {url: "http://admin:http-pass-9@192.0.2.30/status?x=1", fields: {screen_on: display.on}, poll_s: 10, fail_after: 3}}}
  - {id: nvr-ubnd, kind: camera, village: trung-binh, source: {tcp: {host: 192.0.2.40, port: 554}}}
"""
)
SECRETS = ("broker-pass-1", "c0mmunity-secret", "auth-key-secret", "priv-key-secret", "http-pass-9")


def imported(db_url: str, text: str, *, csv: bool = False) -> None:
    reg = (registry_file.parse_csv if csv else registry_file.parse_yaml)(text, "reg", profiles_dir=None)
    with psycopg.connect(db_url) as conn:
        registry.import_registry(conn, reg, Vault(SECRET))


def errors_of(db_url: str, text: str, *, csv: bool = False) -> list[str]:
    with pytest.raises(InvalidInput) as err:
        imported(db_url, text, csv=csv)
    return list(err.value.detail or [])


def test_every_source_kind_is_stored_with_its_defaults_and_no_secret(db_url: str) -> None:
    imported(db_url, GOOD)
    with psycopg.connect(db_url) as conn:
        devices = {d.id: d for d in registry.devices(conn)}
        stored = str(conn.execute("SELECT json_agg(source) FROM devices").fetchone()) + str(
            conn.execute(
                "SELECT json_agg(row_to_json(b)) FROM (SELECT id, url, username, options FROM mqtt_brokers) b"
            ).fetchone()
        )
        vault = Vault(SECRET)
        assert source_store.source_secrets(conn, vault, "ap-truong") == {
            "auth_key": "auth-key-secret",
            "priv_key": "priv-key-secret",
        }
        assert source_store.source_secrets(conn, vault, "ap-buu-dien") == {"community": "c0mmunity-secret"}
        assert source_store.source_secrets(conn, vault, "eb-cho") == {"password": "http-pass-9"}
        assert source_store.broker_password(conn, vault, "aiot") == "broker-pass-1"
        raw = conn.execute("SELECT string_agg(encode(source_secret, 'escape'), '') FROM devices").fetchone()
    for s in SECRETS:
        assert s not in stored and s not in str(raw)
    assert devices["gw-trung-binh"].source == PingSource("192.0.2.1", 3, 1.0, 30, 2)
    assert devices["loa-tb-1"].source == MqttSource("tasmota", "loa_tb_1", "aiot")
    assert devices["loa-tb-2"].source == MqttSource("loa-x", "loa-tb-2", None)
    ap = devices["ap-buu-dien"].source
    assert isinstance(ap, SnmpSource) and (ap.version, ap.port, ap.poll_s, ap.fail_after) == (
        "2c",
        161,
        60,
        2,
    )
    assert ap.extra == (("temp", "1.3.6.1.4.1.9.9.13.1.3.1.3.1"),)
    v3 = devices["ap-truong"].source
    assert isinstance(v3, SnmpSource) and (v3.version, v3.user, v3.auth, v3.priv, v3.uplink) == (
        "3",
        "ioc",
        "sha",
        "aes",
        "eth0",
    )
    eb = devices["eb-cho"].source
    assert isinstance(eb, HttpSource) and eb.url == "http://192.0.2.30/status?x=1" and eb.username == "admin"
    assert (eb.poll_s, eb.fail_after, eb.expect_status) == (10, 3, ((200, 399),))
    assert devices["nvr-ubnd"].source == TcpSource("192.0.2.40", 554)
    # a polled source's liveness window covers a poll and a poller's takeover (10 + 60 + its 10 s
    # timeout), 3 polls when that is longer
    assert devices["eb-cho"].liveness_window_s == 80


def test_bad_sources_are_refused_with_their_file_lines(db_url: str) -> None:
    text = (
        HEAD
        + """\
devices:
  - {id: d-3, kind: wifi, source: {snmp: {host: 192.0.2.10, community: c, extra: {temp: "1.3.6.x"}}}}
  - {id: d-4, kind: wifi, source: {snmp: {host: 192.0.2.11, version: 3, user: ioc, auth: sha}}}
  - {id: d-5, kind: wifi, source: {snmp: {host: 192.0.2.12, version: 3, user: ioc, auth: sha, auth_key: 12345678, priv: aes}}}
  - {id: d-6, kind: eboard, source: {http: {url: "http://192.0.2.30/", fields: {clients: a.b}}}}
  - {id: d-7, kind: eboard, source: {http: {url: "http://192.0.2.30/", fields: {screen_on: "a.[b"}}}}
  - {id: d-8, kind: gateway, source: {ping: {host: 192.0.2.1, bogus: 1}}}
  - {id: d-9, kind: wifi, source: {snmp: {host: 192.0.2.13}}}
  - {id: d-10, kind: camera, source: {ping: {host: 192.0.2.2}}, onvif: {host: 192.0.2.2}}
"""
    )
    joined = "\n".join(errors_of(db_url, text))
    assert "reg:5: source.snmp.extra.temp: '1.3.6.x' is not an OID" in joined
    assert "reg:6: source.snmp.auth_key is required with auth" in joined
    assert "reg:7: source.snmp.priv_key is required with priv" in joined
    assert "reg:8: source.http.fields.clients: a eboard has no field 'clients'" in joined
    assert "reg:9: source.http.fields.screen_on: 'a.[b' is not a valid JMESPath expression" in joined
    assert "reg:10: unknown source.ping key(s) bogus" in joined
    assert "reg:11: source.snmp.community is required for v1/v2c (there is no default 'public')" in joined
    assert "reg:12: a device has onvif or source, not both" in joined
    # what only the database can tell: profiles and brokers defined nowhere
    refs = HEAD + (
        "devices:\n"
        "  - {id: d-1, kind: speaker, source: {mqtt: {profile: nope}}}\n"
        "  - {id: d-2, kind: speaker, source: {mqtt: {profile: tasmota, broker: nowhere}}}\n"
    )
    joined = "\n".join(errors_of(db_url, refs))
    assert "reg:5: unknown profile 'nope'" in joined
    assert "reg:6: unknown broker 'nowhere'" in joined
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)


def test_a_profile_that_does_not_compile_is_refused_and_one_mapping_a_field_the_kind_lacks_imports(
    db_url: str,
) -> None:
    text = (
        """\
profiles:
  ap-vendor:
    mqtt:
      status: [{topic: "ap/{id}", fields: {clients: sta_count}}]
  broken:
    mqtt:
      status: [{topic: "b/{id}", fields: {volume: "foo[?"}}]
"""
        + HEAD
        + """\
devices:
  - {id: loa-1, kind: speaker, source: {mqtt: {profile: ap-vendor}}}
"""
    )
    joined = "\n".join(errors_of(db_url, text))
    assert (
        "reg:5: profiles.broken.mqtt.status[0].fields.volume: 'foo[?' is not a valid JMESPath expression"
        in joined
    )
    # a field the speaker lacks is published as an unknown field (SPEC §4 keeps those), as SPEC §8's
    # own example does with uptime_s on a speaker
    imported(db_url, text.replace('"foo[?"', "vol"))
    with psycopg.connect(db_url) as conn:
        assert [d.id for d in registry.devices(conn)] == ["loa-1"]


# SPEC §8's example, as written there (the "…" secrets replaced: v3 keys need 8 characters)
SPEC_8 = """\
commune: {id: thoai-giang, name: "Xã Thoại Giang", province: "An Giang"}
villages:
  - {id: trung-binh, name: "Ấp Trung Bình"}
brokers:
  - {id: aiot, url: "mqtts://user:pass@aiot.example.vn:8883", client_id: ioc-thoai-giang}
profiles:
  tasmota:
    mqtt:
      availability: {topic: "tele/{id}/LWT", online: "Online", offline: "Offline"}
      status:
        - topic: "tele/{id}/STATE"
          fields: {rssi_dbm: Wifi.Signal, uptime_s: UptimeSec,
                   playing: {path: POWER, map: {"ON": true, "OFF": false}}}
        - {topic: "tele/{id}/SENSOR", fields: {temperature_c: ANALOG.Temperature}}
      events:
        - {topic: "stat/{id}/RESULT", type: result}
devices:
  - {id: loa-tb-1, kind: speaker, village: trung-binh,
     source: {mqtt: {profile: tasmota, id: loa_tb_1}}}
  - {id: ap-buu-dien, kind: wifi, village: trung-binh, parent: gw-trung-binh,
     source: {snmp: {host: 192.0.2.10, community: public}}}
  - {id: ap-truong, kind: wifi, village: trung-binh,
     source: {snmp: {host: 192.0.2.11, version: 3, user: ioc, auth: sha, auth_key: "auth-key-1",
                     priv: aes, priv_key: "priv-key-1", uplink: eth0}}}
  - {id: gw-trung-binh, kind: gateway, village: trung-binh, source: {ping: {host: 192.0.2.1}}}
  - {id: eb-cho, kind: eboard, village: trung-binh,
     source: {http: {url: "http://192.0.2.30/status", fields: {screen_on: display.on}}}}
  - {id: nvr-ubnd, kind: camera, village: trung-binh, source: {tcp: {host: 192.0.2.40, port: 554}}}
"""


def test_the_spec_8_example_imports_and_its_tasmota_profile_maps_a_state(db_url: str) -> None:
    from datetime import UTC, datetime

    from services.sources.vendor import Router, routes, translate

    imported(db_url, SPEC_8)
    with psycopg.connect(db_url) as conn:
        devices = {d.id: d for d in registry.devices(conn)}
        (profile,) = source_store.registry_profiles(conn)
    assert set(devices) == {"loa-tb-1", "ap-buu-dien", "ap-truong", "gw-trung-binh", "eb-cho", "nvr-ubnd"}
    (route,) = Router(routes([devices["loa-tb-1"]], {"tasmota": profile}, "ioc")).match("tele/loa_tb_1/STATE")
    # tele/%topic%/STATE from arendst/Tasmota tasmota/tasmota_xdrv_driver/xdrv_59_influxdb.ino, with
    # "POWER" (a one-relay device) as the SPEC's profile reads it
    state = (
        b'{"Time":"2021-08-14T17:19:33","Uptime":"0T00:24:09","UptimeSec":1449,"Heap":29,"POWER":"ON",'
        b'"Wifi":{"AP":1,"SSId":"indebuurt_IoT","Channel":11,"Mode":"11n","RSSI":100,"Signal":-44}}'
    )
    doc = orjson.loads(translate(route, state, datetime(2026, 12, 3, tzinfo=UTC)).payload)
    assert (doc["rssi_dbm"], doc["playing"], doc["uptime_s"], doc["Wifi"]["RSSI"]) == (-44, True, 1449, 100)


def test_csv_sources_are_urls_and_files_without_the_column_still_import(db_url: str) -> None:
    old = "commune,id,kind,village,name\nthoai-giang,spk-1,speaker,,Loa 1\n"
    imported(db_url, old, csv=True)
    csv = (
        "commune,id,kind,village,name,source\n"
        "thoai-giang,gw-1,gateway,,,ping://192.0.2.1?count=5&poll_s=20\n"
        "thoai-giang,ap-1,wifi,,,snmp://public-c0m@192.0.2.10:1161?version=1&uplink=wan&extra.temp=1.3.6.1.2.1.1.3.0\n"
        "thoai-giang,ap-2,wifi,,,snmp://ioc:auth-key-secret:priv-key-secret@192.0.2.11?auth=sha256&priv=aes256\n"
        "thoai-giang,nvr-1,camera,,,tcp://192.0.2.40:554?timeout_s=2\n"
        "thoai-giang,eb-1,eboard,,,https://192.0.2.30/api/status?key=1#expect_status=200-299&field.screen_on=display.on&poll_s=15\n"
        "thoai-giang,loa-1,speaker,,,profile://tasmota/loa_tb_1\n"
    )
    imported(db_url, csv, csv=True)
    with psycopg.connect(db_url) as conn:
        d = {x.id: x for x in registry.devices(conn)}
        assert source_store.source_secrets(conn, Vault(SECRET), "ap-2") == {
            "auth_key": "auth-key-secret",
            "priv_key": "priv-key-secret",
        }
        assert source_store.source_secrets(conn, Vault(SECRET), "ap-1") == {"community": "public-c0m"}
    assert d["spk-1"].source is None
    assert d["gw-1"].source == PingSource("192.0.2.1", 5, 1.0, 20, 2)
    ap1 = d["ap-1"].source
    assert isinstance(ap1, SnmpSource) and (ap1.version, ap1.port, ap1.uplink) == ("1", 1161, "wan")
    ap2 = d["ap-2"].source
    assert isinstance(ap2, SnmpSource) and (ap2.version, ap2.user, ap2.auth, ap2.priv) == (
        "3",
        "ioc",
        "sha256",
        "aes256",
    )
    assert d["nvr-1"].source == TcpSource("192.0.2.40", 554, 2.0)
    eb = d["eb-1"].source
    assert isinstance(eb, HttpSource) and eb.url == "https://192.0.2.30/api/status?key=1"
    assert eb.expect_status == ((200, 299),) and eb.poll_s == 15 and eb.fields[0].name == "screen_on"
    assert d["loa-1"].source == MqttSource("tasmota", "loa_tb_1")
    bad = (
        "commune,id,kind,source\n"
        "thoai-giang,x-1,wifi,snmp://192.0.2.10\n"
        "thoai-giang,x-2,speaker,profile://nope\n"
        "thoai-giang,x-3,wifi,ftp://192.0.2.10\n"
        "thoai-giang,x-4,wifi,snmp://ioc:short@192.0.2.11?auth=sha\n"
    )
    joined = "\n".join(errors_of(db_url, bad, csv=True))
    assert "reg:2: source.snmp.community is required" in joined
    assert "reg:4: source 'ftp://192.0.2.10': the scheme must be" in joined
    assert "reg:5: source.snmp.auth_key must be at least 8 characters" in joined
    fixed = (
        bad.replace("snmp://192.0.2.10", "snmp://c@192.0.2.10")
        .replace("ftp:", "ping:")
        .replace(":short@", ":long-enough@")
    )
    assert "reg:3: unknown profile 'nope'" in "\n".join(errors_of(db_url, fixed, csv=True))


def test_multi_commune_files_take_brokers_and_profiles(db_url: str) -> None:
    text = """\
brokers:
  - {id: aiot, url: "mqtt://aiot.example.vn:1883"}
profiles:
  mine: {mqtt: {availability: "m/{id}/status"}}
communes:
  - id: thoai-giang
    name: "Xã Thoại Giang"
    devices:
      - {id: loa-1, kind: speaker, source: {mqtt: {profile: mine, broker: aiot}}}
  - id: long-thanh
    name: "Xã Long Thạnh"
    devices:
      - {id: loa-2, kind: speaker, source: {mqtt: {profile: esphome, broker: aiot}}}
"""
    imported(db_url, text)
    with psycopg.connect(db_url) as conn:
        assert [b for b in source_store.brokers(conn)] == ["aiot"]
        assert source_store.brokers(conn)["aiot"].client_id == "ioc-aiot"
        assert [p.name for p in source_store.registry_profiles(conn)] == ["mine"]


def test_a_profiles_dir_file_replaces_a_shipped_profile_and_a_registry_profile_replaces_both(
    db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "tasmota.yaml").write_text('mqtt: {availability: "custom/{id}/LWT"}\n')
    imported(db_url, HEAD + "devices:\n  - {id: loa-1, kind: speaker, source: {mqtt: {profile: tasmota}}}\n")
    cache = RegistryCache(profiles_dir=tmp_path)
    with psycopg.connect(db_url) as conn:
        cache.refresh_if_due(conn, force=True)
    assert cache.profiles["tasmota"].origin == "dir"
    assert cache.profiles["tasmota"].mqtt.availability[0].topic == "custom/{id}/LWT"  # type: ignore[union-attr]
    assert cache.profiles["esphome"].origin == "shipped"
    imported(
        db_url,
        'profiles:\n  tasmota: {mqtt: {availability: "reg/{id}/LWT"}}\n'
        + HEAD
        + "devices:\n  - {id: loa-1, kind: speaker, source: {mqtt: {profile: tasmota}}}\n",
    )
    with psycopg.connect(db_url) as conn:
        cache.refresh_if_due(conn, force=True)
    assert cache.profiles["tasmota"].origin == "registry"
    assert cache.profiles["tasmota"].mqtt.availability[0].topic == "reg/{id}/LWT"  # type: ignore[union-attr]


def test_no_api_returns_a_source_secret(db_url: str) -> None:
    imported(db_url, GOOD + "  - {id: spk-none, kind: speaker, village: trung-binh}\n")
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO users (username, password_hash, role) VALUES ('admin', %s, 'admin')",
            (password_hash(),),
        )
        conn.execute("UPDATE device_state SET state = 'online', last_seen = now()")
        _, secret = keys.create(conn, "province", None)
    headers = headers_for(db_url)()
    share = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(gateway_settings(db_url))) as c:
        bodies = [
            c.get("/api/v1/devices", headers=headers),
            c.get("/api/v1/devices/ap-truong", headers=headers),
            c.get("/api/v1/devices/eb-cho", headers=headers),
            c.get("/api/v1/status", headers=headers),
            c.get("/api/share/v1/devices", headers=share),
            c.get("/api/share/v1/devices?format=csv", headers=share),
            c.get("/api/share/v1/status", headers=share),
            c.get("/ngsi-ld/v1/entities?type=Device", headers=share),
            c.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Device:thoai-giang:ap-truong", headers=share),
        ]
    for r in bodies:
        assert r.status_code == 200, r.text
        for s in SECRETS:
            assert s not in r.text
    body = {d["id"]: d for d in orjson.loads(bodies[0].content)["items"]}
    assert body["ap-truong"]["source"] == {
        "kind": "snmp",
        "host": "192.0.2.11",
        "port": 161,
        "version": "3",
        "poll_s": 60,
    }
    assert body["eb-cho"]["source"] == {
        "kind": "http",
        "host": "192.0.2.30",
        "url": "http://192.0.2.30/status",
        "poll_s": 10,
    }
    assert body["loa-tb-1"]["source"] == {
        "kind": "mqtt",
        "profile": "tasmota",
        "id": "loa_tb_1",
        "broker": "aiot",
    }
    assert body["gw-trung-binh"]["source"]["kind"] == "ping" and body["spk-none"]["source"] is None


def test_http_ca_file_must_be_an_absolute_readable_pem_file_for_https(tmp_path: Path) -> None:
    from services.sources import spec
    from services.sources.model import from_json, to_json
    from tests.sources.test_probes import Pki

    pki = Pki(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")

    def errors(body: dict[str, object]) -> list[str]:
        return spec.parse({"http": body}, device_id="eb-1", kind="eboard")[2]

    url = "https://192.0.2.30/status"
    assert errors({"url": url, "ca_file": "ca.pem"}) == [
        "source.http.ca_file 'ca.pem' must be an absolute path"
    ]
    assert errors({"url": "http://192.0.2.30/", "ca_file": str(pki.ca_file)}) == [
        "source.http.ca_file is for https:// URLs"
    ]
    for bad in (junk, tmp_path / "missing.pem"):
        (problem,) = errors({"url": url, "ca_file": str(bad)})
        assert problem.startswith(f"source.http.ca_file {bad}: not a readable file of PEM certificates")
    src, _secrets, problems = spec.parse(
        {"http": {"url": url, "ca_file": str(pki.ca_file)}}, device_id="eb-1", kind="eboard"
    )
    assert problems == [] and isinstance(src, HttpSource) and src.ca_file == str(pki.ca_file)
    assert to_json(src)["http"]["ca_file"] == str(pki.ca_file) and from_json(to_json(src)) == src
    # the CSV form carries it in the fragment, with the other options
    src2, _s, problems = spec.parse_url(
        f"{url}#ca_file={pki.ca_file}&poll_s=60", device_id="eb-1", kind="eboard"
    )
    assert problems == [] and isinstance(src2, HttpSource) and src2.ca_file == str(pki.ca_file)


def test_every_source_kind_round_trips_through_its_stored_form() -> None:
    from services.mapping import compile_field
    from services.sources.model import from_json, to_json

    for src in (
        MqttSource("tasmota", "loa_1", "aiot"),
        SnmpSource(
            "192.0.2.10", 1161, "3", "ioc", "sha", "aes", "eth0", "unifi", (("cpu", "1.3.6.1.4.1.9.1"),)
        ),
        PingSource("192.0.2.1", 5, 0.5, 10, 3),
        TcpSource("192.0.2.40", 554, 2.0, 15, 1),
        HttpSource(
            "https://192.0.2.30/s",
            ((200, 200), (300, 399)),
            "OK",
            (compile_field("screen_on", "display.on"),),
            "admin",
            4.0,
            20,
            3,
            "/etc/ioc/ca.pem",
        ),
    ):
        assert from_json(orjson.loads(orjson.dumps(to_json(src)))) == src


def test_a_profiles_dir_file_with_a_key_given_twice_is_refused_at_its_line(tmp_path: Path) -> None:
    from services.sources import profiles

    path = tmp_path / "loa.yaml"
    path.write_text('mqtt:\n  availability: "a/{id}/LWT"\n  availability: "b/{id}/LWT"\n')
    with pytest.raises(profiles.ProfileError) as exc:
        profiles.load_dir(tmp_path, "dir")
    assert exc.value.errors == [f"{path}:3: availability is given twice (first on line 2); keep one"]


# Every CSV `source` form docs/sources.md promises, one a row (parsed without a database).
CSV_FORMS = [
    ("loa-1", "speaker", "profile://tasmota", MqttSource("tasmota", "loa-1")),
    ("loa-2", "speaker", "profile://tasmota/loa_tb_2?broker=aiot", MqttSource("tasmota", "loa_tb_2", "aiot")),
    # a Zigbee2MQTT friendly_name may structure topics with "/" (zigbee2mqtt.io, MQTT topics page)
    (
        "loa-3",
        "speaker",
        "profile://zigbee2mqtt/tu-loa/nhiet-do",
        MqttSource("zigbee2mqtt", "tu-loa/nhiet-do"),
    ),
    ("ap-1", "wifi", "snmp://public@192.0.2.10", SnmpSource("192.0.2.10")),
    ("ap-2", "wifi", "snmp://public@[2001:db8::10]:1161?version=1", SnmpSource("2001:db8::10", 1161, "1")),
    (
        "ap-3",
        "wifi",
        "snmp://ioc:AuthKey123@192.0.2.11?auth=md5&uplink=wan&profile=unifi&extra.cpu=1.3.6.1.4.1.2021.11.9.0"
        "&poll_s=120&fail_after=3&timeout_s=1.5",
        SnmpSource(
            "192.0.2.11",
            161,
            "3",
            "ioc",
            "md5",
            None,
            "wan",
            "unifi",
            (("cpu", "1.3.6.1.4.1.2021.11.9.0"),),
            120,
            3,
            1.5,
        ),
    ),
    (
        "ap-4",
        "wifi",
        "snmp://ioc:AuthKey123:PrivKey456@192.0.2.12?version=3&auth=sha&priv=des",
        SnmpSource("192.0.2.12", 161, "3", "ioc", "sha", "des"),
    ),
    ("gw-1", "gateway", "ping://192.0.2.1", PingSource("192.0.2.1")),
    (
        "gw-2",
        "gateway",
        "ping://[2001:db8::1]?count=5&timeout_s=2&poll_s=20&fail_after=3",
        PingSource("2001:db8::1", 5, 2.0, 20, 3),
    ),
    ("gw-3", "gateway", "ping://gw.thoai-giang.local", PingSource("gw.thoai-giang.local")),
    (
        "nvr-1",
        "camera",
        "tcp://192.0.2.40:554?timeout_s=2&poll_s=10&fail_after=4",
        TcpSource("192.0.2.40", 554, 2.0, 10, 4),
    ),
    (
        "eb-1",
        "eboard",
        "http://admin:p%40ss@192.0.2.30:8080/status?token=abc#expect_status=200,204"
        "&expect_text=Thoai%20Giang&field.screen_on=display.on&timeout_s=5&poll_s=15&fail_after=3",
        None,
    ),
    ("eb-2", "eboard", "https://eb.example.vn/status#expect_status=200-299", None),
]


def test_every_csv_source_form_of_the_docs_parses_to_its_source() -> None:
    rows = "".join(f'thoai-giang,{i},{k},"{u}"\n' for i, k, u, _ in CSV_FORMS)
    reg = registry_file.parse_csv("commune,id,kind,source\n" + rows, "reg", profiles_dir=None)
    got = {d.id: d.source for d in reg.devices}
    for dev_id, _kind, _url, want in CSV_FORMS:
        if want is not None:
            assert got[dev_id] == want, dev_id
    eb1, eb2 = got["eb-1"], got["eb-2"]
    assert isinstance(eb1, HttpSource) and isinstance(eb2, HttpSource)
    # the query stays the endpoint's; the options came from the fragment; the password is a secret
    assert eb1.url == "http://192.0.2.30:8080/status?token=abc" and eb1.username == "admin"
    assert eb1.expect_status == ((200, 200), (204, 204)) and eb1.expect_text == "Thoai Giang"
    assert (eb1.timeout_s, eb1.poll_s, eb1.fail_after, eb1.fields[0].name) == (5.0, 15, 3, "screen_on")
    assert eb2.url == "https://eb.example.vn/status" and eb2.expect_status == ((200, 299),)
    assert reg.source_secrets["eb-1"] == {"password": "p@ss"}
    assert reg.source_secrets["ap-1"] == {"community": "public"}
    assert reg.source_secrets["ap-4"] == {"auth_key": "AuthKey123", "priv_key": "PrivKey456"}


def test_a_bad_csv_source_is_refused_at_its_line() -> None:
    bad = [
        ("x-1", "gateway", "ping://192.0.2.1?bogus=1", "unknown source.ping key(s) bogus"),
        ("x-2", "gateway", "ping://192.0.2.1?count=1&count=2", "source option count is given twice"),
        ("x-3", "camera", "tcp://192.0.2.40", "source.tcp.port is required"),
        ("x-4", "camera", "tcp://192.0.2.40:99999", "is not a URL"),
        ("x-5", "wifi", "snmp://ioc@192.0.2.11?version=3", "source.snmp.auth is required for SNMP v3"),
        ("x-6", "wifi", "snmp://c@192.0.2.11?version=5", "source.snmp.version '5' must be 1, 2c or 3"),
        ("x-7", "wifi", "snmp://c:extra@192.0.2.11", "takes no password"),
        ("x-8", "eboard", "http:///status", "must be an http:// or https:// URL"),
        ("x-9", "eboard", "http://192.0.2.30/#expect_status=abc", "source.http.expect_status"),
        ("x-10", "eboard", "http://192.0.2.30/#field.clients=a", "a eboard has no field 'clients'"),
        ("x-11", "speaker", "profile://Tasmota/x", "is not a profile name"),
        ("x-12", "speaker", "profile://tasmota/a%20b", "cannot be part of a topic"),
        ("x-13", "speaker", "ftp://192.0.2.10", "the scheme must be profile, snmp, ping, tcp, http or https"),
    ]
    rows = "".join(f'thoai-giang,{i},{k},"{u}"\n' for i, k, u, _ in bad)
    with pytest.raises(InvalidInput) as err:
        registry_file.parse_csv("commune,id,kind,source\n" + rows, "reg", profiles_dir=None)
    detail = list(err.value.detail or [])
    for line, (_i, _k, _u, words) in enumerate(bad, start=2):
        assert any(d.startswith(f"reg:{line}: ") and words in d for d in detail), (line, words, detail)
