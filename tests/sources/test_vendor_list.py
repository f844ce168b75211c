"""Vendor servers that list their devices over HTTP (profiles with `http:`, SPEC §8): the shipped
`truyenthanh` smart-radio profile against the answers its file writes from the vendor console's
code, served by a real loopback HTTP server; one GET per list and half poll period; every way the
answer or the registry can be wrong."""

import asyncio
import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ingest.sources.probes import HttpProber, repair_quoted_json
from ingest.sources.reading import Reading
from services import registry, registry_file
from services.errors import InvalidInput
from services.models import Device
from services.sources import HttpSource
from services.sources.profiles import ProfileError, parse, shipped, shipped_examples
from services.sources.spec import parse as parse_source
from services.sources.spec import parse_url
from services.vault import Vault

PROFILE = "truyenthanh"
# the console's request: base64 of {"DataType":20,"Data":"GET_ALL_DEVICE_STATUS"}
ASK = "/eyJEYXRhVHlwZSI6MjAsIkRhdGEiOiJHRVRfQUxMX0RFVklDRV9TVEFUVVMifQ=="
EXAMPLES = [(i, ex) for i, ex in enumerate(shipped_examples(PROFILE))]


class _Handler(http.server.BaseHTTPRequestHandler):
    body: list[bytes]
    status: list[int]
    paths: list[str]

    def log_message(self, *_a: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.paths.append(self.path)
        data, status = self.body[0], self.status[0]
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class VendorServer:
    """A loopback stand-in for the vendor's server: answers every GET with `body`, counts them."""

    def __init__(self) -> None:
        self.body = [b"{}"]
        self.status = [200]
        self.paths: list[str] = []
        handler = type("H", (_Handler,), {"body": self.body, "status": self.status, "paths": self.paths})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="test.vendor", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{ASK}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def vendor() -> Iterator[VendorServer]:
    s = VendorServer()
    yield s
    s.close()


def _speaker(n: int = 1) -> Device:
    return Device(f"loa-{n}", "xa", "speaker")


def probe_all(
    url: str, ids: list[str], *, kind: str = "speaker", clock: list[float] | None = None, rounds: int = 1
) -> tuple[list[list[tuple[Reading, dict[str, Any]]]], HttpProber]:
    """Every id probed at once, `rounds` times (the clock moved by a whole poll period between)."""
    t = clock if clock is not None else [0.0]
    prober = HttpProber(profiles=shipped, clock=lambda: t[0])

    async def main() -> list[list[tuple[Reading, dict[str, Any]]]]:
        out = []
        try:
            for _ in range(rounds):
                states: list[dict[str, Any]] = [{} for _ in ids]
                readings = await asyncio.gather(
                    *(
                        prober.probe(
                            Device(f"d-{i}", "xa", kind), HttpSource(url, profile=PROFILE, id=x), {}, st
                        )
                        for i, (x, st) in enumerate(zip(ids, states, strict=True))
                    )
                )
                out.append(list(zip(readings, states, strict=True)))
                t[0] += 30.0
        finally:
            await prober.aclose()
        return out

    return asyncio.run(main()), prober


def test_the_project_ships_a_vietnamese_smart_radio_profile_with_cited_answers() -> None:
    profile = shipped()[PROFILE]
    assert profile.http is not None and profile.http.repair == "quoted_json"
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize(("i", "example"), EXAMPLES, ids=[f"{PROFILE}-{i}" for i, _ in EXAMPLES])
def test_shipped_profile_reads_its_written_answers(vendor: VendorServer, i: int, example: dict) -> None:
    vendor.body[0] = example["body"].encode()
    [[(reading, state)]], _ = probe_all(vendor.url, [str(example["id"])], kind=example["kind"])
    if example.get("not_listed"):
        assert (reading.ok, reading.error_code, reading.source_down) == (False, "not_listed", False), reading
        assert str(example["id"]) in (reading.error or "")
    elif example.get("malformed"):
        assert (reading.ok, reading.error_code) == (False, "malformed"), reading
        assert state["payload"] == example["body"].encode()
    elif "error" in example:
        # listed (so online) but a field does not fit: dead-lettered naming the profile and field
        assert (reading.ok, reading.error_code) == (True, "malformed"), reading
        assert f"profile {PROFILE}" in (reading.error or "") and example["error"] in (reading.error or "")
        assert example["id"] in state["payload"].decode()
    else:
        assert reading.ok and reading.error_code is None, reading
        got = {k: reading.metrics.get(k) for k in example["status"]}
        assert got == example["status"]
        assert reading.metrics["http_status"] == 200


def test_the_devices_of_one_list_share_one_get_per_half_poll_period(vendor: VendorServer) -> None:
    vendor.body[0] = shipped_examples(PROFILE)[0]["body"].encode()
    ids = ["123456789ABCDF4", "123456789ABCDF5", *(f"ABSENT{n}" for n in range(18))]
    rounds, prober = probe_all(vendor.url, ids, rounds=3)
    # 20 devices, 3 poll periods: one GET each period, not 60
    assert len(vendor.paths) == 3 and prober.gets == 3
    assert set(vendor.paths) == {ASK}
    for readings in rounds:
        codes = [r.error_code for r, _ in readings]
        assert codes[:2] == [None, None] and codes[2:] == ["not_listed"] * 18


def test_an_unreadable_list_is_one_dead_letter_per_answer_not_one_per_device(vendor: VendorServer) -> None:
    vendor.body[0] = b'{"DataType":3,"Data":"No Data"}'
    [readings], _ = probe_all(vendor.url, ["A1", "A2", "A3"])
    assert [(r.ok, r.error_code, r.source_down) for r, _ in readings] == [(False, "malformed", True)] * 3
    assert sum("payload" in st for _, st in readings) == 1
    assert "no list of devices at 'Data'" in (readings[0][0].error or "")


def test_a_vendor_server_that_is_down_fails_its_devices_as_refused_not_as_unlisted() -> None:
    with socket_port() as port:
        url = f"http://127.0.0.1:{port}{ASK}"
    [readings], _ = probe_all(url, ["A1", "A2"])
    assert [(r.ok, r.error_code, r.source_down) for r, _ in readings] == [(False, "refused", True)] * 2


class socket_port:  # noqa: N801 - a context manager read as a phrase
    """A loopback port that was free and is closed again (nothing listens on it)."""

    def __enter__(self) -> int:
        import socket

        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return int(self.s.getsockname()[1])

    def __exit__(self, *_a: Any) -> None:
        self.s.close()


def test_repair_leaves_plain_json_and_text_alone_and_stops_at_its_depth() -> None:
    assert repair_quoted_json(b'{"a": [1, "x"]}') == {"a": [1, "x"]}
    assert repair_quoted_json(b"Request Invalid!") == "Request Invalid!"
    assert repair_quoted_json(b'{"a": "{not json}"}') == {"a": "{not json}"}
    # strings holding lists holding strings ... deeper than QUOTED_DEPTH_MAX: decoded that far, the
    # rest left as a string (each level doubles the escapes, so 18 levels are about 1 MB)
    deep = orjson.dumps(1).decode()
    for _ in range(18):
        deep = orjson.dumps("[" + deep + "]").decode()
    doc = repair_quoted_json(deep.encode())
    depth = 0
    while isinstance(doc, list):
        doc, depth = doc[0], depth + 1
    assert isinstance(doc, str) and 0 < depth < 18


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": "DeviceID", "fields": {"volume": "Volume"}}, "http.devices: a JMESPath to the list"),
        (
            {"devices": "Data[", "fields": {"volume": "Volume"}},
            "http.devices: 'Data[' is not a valid JMESPath",
        ),
        ({"devices": "Data", "fields": {"loudness": "Volume"}}, "http.fields.loudness: no device kind has"),
        (
            {"devices": "Data", "repair": "magic", "fields": {"volume": "V"}},
            "http.repair: 'magic' must be one of",
        ),
        ({"devices": "Data", "fields": {"volume": "V"}, "bogus": 1}, "http: unknown key(s) bogus"),
        ({"devices": "Data"}, "http.fields: names no field"),
        ({"devices": "Data", "keep": "yes", "fields": {"volume": "V"}}, "http.keep: must be true or false"),
    ],
)
def test_a_bad_http_profile_is_refused_naming_its_key(body: dict, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        parse("loa-y", {"http": body})
    assert message in str(err.value), err.value.errors


def test_an_http_source_with_a_profile_needs_its_id_and_an_id_needs_a_profile() -> None:
    _, _, errors = parse_source(
        {"http": {"url": "http://192.0.2.5:906/", "profile": PROFILE}}, device_id="d", kind="speaker"
    )
    assert any("source.http.id is required with a profile" in e for e in errors)
    _, _, errors = parse_source(
        {"http": {"url": "http://192.0.2.5:906/", "id": "X"}}, device_id="d", kind="speaker"
    )
    assert any("source.http.id needs source.http.profile" in e for e in errors)
    src, _, errors = parse_url(
        f"http://192.0.2.5:906{ASK}#profile={PROFILE}&id=123456789ABCDF4&poll_s=20",
        device_id="d",
        kind="speaker",
    )
    assert errors == [] and isinstance(src, HttpSource)
    assert (src.profile, src.id, src.poll_s, src.url) == (
        PROFILE,
        "123456789ABCDF4",
        20,
        f"http://192.0.2.5:906{ASK}",
    )


HEAD = """\
commune: {id: thoai-giang, name: "Xã Thoại Giang"}
villages:
  - {id: trung-binh, name: "Ấp Trung Bình"}
"""


def test_the_registry_refuses_a_list_profile_it_cannot_use_and_stores_a_good_one(db_url: str) -> None:
    url = f"http://192.0.2.5:906{ASK}"
    bad = HEAD + (
        "devices:\n"
        f'  - {{id: loa-1, kind: speaker, village: trung-binh, source: {{http: {{url: "{url}", profile: nope, id: A}}}}}}\n'
        f'  - {{id: loa-2, kind: speaker, village: trung-binh, source: {{http: {{url: "{url}", profile: tasmota, id: B}}}}}}\n'
    )
    reg = registry_file.parse_yaml(bad, "reg", profiles_dir=None)
    with psycopg.connect(db_url) as conn, pytest.raises(InvalidInput) as err:
        registry.import_registry(conn, reg, Vault("test-secret-key-0123456789"))
    joined = "\n".join(err.value.detail or [])
    assert "reg:5: unknown profile 'nope'" in joined
    assert "reg:6: profile 'tasmota' has no http: section" in joined and PROFILE in joined
    good = HEAD + (
        "devices:\n"
        f'  - {{id: loa-1, kind: speaker, village: trung-binh, source: {{http: {{url: "{url}", profile: {PROFILE}, id: "123456789ABCDF4"}}}}}}\n'
    )
    reg = registry_file.parse_yaml(good, "reg", profiles_dir=None)
    with psycopg.connect(db_url) as conn:
        registry.import_registry(conn, reg, Vault("test-secret-key-0123456789"))
        (stored,) = conn.execute("SELECT source FROM devices WHERE id = 'loa-1'").fetchone()
    assert stored["http"]["profile"] == PROFILE and stored["http"]["id"] == "123456789ABCDF4"


# -- through the pipeline --------------------------------------------------------------------

A, B = "123456789ABCDF4", "123456789ABCDF5"


def _listing(*ids: str) -> bytes:
    """The server's answer (nested objects in quotes, as the console repairs them) for `ids`."""
    items = ",".join(
        f'{{"DeviceID":"{x}","DeviceData":"{{"PacketType":5,"Data":"{{"AudioOutState":{n % 2},'
        f'"Fan1Status":0,"PlayURL":"","RadioFrequency":"102.7","Volume":{3 * (n + 1)}}}"}}"}}'
        for n, x in enumerate(ids)
    )
    return f'{{"DataType":5,"Data":"[{items}]"}}'.encode()


@pytest.mark.slow
def test_receivers_of_a_vendor_list_go_offline_when_unlisted_and_freeze_under_one_alert_when_it_is_lost(
    db_url: str, mqtt_url: str, tmp_path: Any, vendor: VendorServer
) -> None:
    from ingest.service import IngestService
    from services.alerts.messages import describe
    from tests.alerts.conftest import running, write_config
    from tests.alerts.conftest import settings as alert_settings
    from tests.sources import stack
    from tests.sources.test_poll import rows, state, states
    from tests.support import scalar, wait_for

    assert repair_quoted_json(_listing(A, B))["Data"][1]["DeviceID"] == B
    vendor.body[0] = _listing(A, B)
    server = vendor.url.split(ASK)[0]  # the source's id: http://127.0.0.1:PORT
    stack.load(
        db_url,
        f"""\
commune: {{id: thoai-giang, name: "Xã Thoại Giang"}}
villages:
  - {{id: bac-thanh, name: "Ấp Bắc Thạnh"}}
devices:
  - {{id: loa-a, kind: speaker, village: bac-thanh,
     source: {{http: {{url: "{vendor.url}", profile: {PROFILE}, id: "{A}", poll_s: 5, timeout_s: 2}}}}}}
  - {{id: loa-b, kind: speaker, village: bac-thanh,
     source: {{http: {{url: "{vendor.url}", profile: {PROFILE}, id: "{B}", poll_s: 5, timeout_s: 2}}}}}}
""",
    )
    rules = {"offline": {"for_s": 0}, "auth_failed": {"for_s": 0}, "source_lost": {"for_s": 0}}
    alerts_file = write_config(tmp_path, {"rules": rules})
    ids = ("loa-a", "loa-b")
    with (
        IngestService(stack.ingest_settings(db_url, mqtt_url, "ingest-vendor-list", poll=True)) as svc,
        running(alert_settings(db_url, alerts_file)),
    ):
        wait_for(lambda: svc.health.check())
        wait_for(lambda: states(db_url, ids) == ["online"] * 2, timeout=60)
        a = scalar(db_url, "SELECT metrics FROM device_state WHERE device_id = 'loa-a'")
        assert (a["playing"], a["volume"], a["RadioFrequency"]) == (False, 20, "102.7")
        b = scalar(db_url, "SELECT metrics FROM device_state WHERE device_id = 'loa-b'")
        assert (b["playing"], b["volume"]) == (True, 40)

        # B leaves its server: offline after fail_after polls, saying why; A stays online
        vendor.body[0] = _listing(A)
        wait_for(lambda: state(db_url, "loa-b") == "offline", timeout=60)
        assert state(db_url, "loa-a") == "online"
        assert (
            scalar(db_url, "SELECT metrics->>'probe_error' FROM device_state WHERE device_id = 'loa-b'")
            == "not_listed"
        )
        wait_for(lambda: rows(db_url, "SELECT 1 FROM alerts WHERE rule = 'offline' AND device_id = 'loa-b'"))
        vendor.body[0] = _listing(A, B)
        wait_for(lambda: states(db_url, ids) == ["online"] * 2, timeout=60)
        offline_alerts = scalar(db_url, "SELECT count(*) FROM alerts WHERE rule = 'offline'")

        # The server answers no list (its error text): one source_lost alert naming it, the
        # receivers' states frozen as they were, far past their liveness window (3 × 5 s)
        vendor.body[0] = b"Request Invalid!"
        alert = wait_for(
            lambda: rows(
                db_url, "SELECT affected, details FROM alerts WHERE rule = 'source_lost' AND state = 'open'"
            ),
            timeout=60,
        )
        assert alert[0][0] == ["loa-a", "loa-b"] and alert[0][1]["sources"] == server
        assert server in describe("source_lost", alert[0][1])
        lost_at = datetime.now(UTC)
        wait_for(lambda: datetime.now(UTC) > lost_at + timedelta(seconds=20), timeout=40)
        assert states(db_url, ids) == ["online"] * 2
        assert scalar(db_url, "SELECT count(*) FROM alerts WHERE rule = 'offline'") == offline_alerts
        # the unreadable answer is kept, once per answer (not once per receiver)
        dead = rows(
            db_url, "SELECT payload, detail FROM dead_letters WHERE payload = %s", (b"Request Invalid!",)
        )
        assert dead and all("no list of devices" in d for _, d in dead)
        assert len(dead) <= 2 * 20 / 5 + 2

        vendor.body[0] = _listing(A, B)
        wait_for(
            lambda: scalar(db_url, "SELECT state FROM alerts WHERE rule = 'source_lost'") == "resolved",
            timeout=60,
        )

        # The server refuses our credentials: its receivers are auth_failed under the one alert
        vendor.status[0] = 401
        wait_for(lambda: states(db_url, ids) == ["auth_failed"] * 2, timeout=60)
        alert = wait_for(
            lambda: rows(db_url, "SELECT details FROM alerts WHERE rule = 'source_lost' AND state = 'open'"),
            timeout=60,
        )
        assert alert[0][0]["refused"] == server
        assert scalar(db_url, "SELECT count(*) FROM alerts WHERE rule = 'auth_failed'") == 0
        vendor.status[0] = 200
        wait_for(lambda: states(db_url, ids) == ["online"] * 2, timeout=60)

        # The server goes down: the same, one alert
        vendor.close()
        wait_for(
            lambda: (
                scalar(db_url, "SELECT count(*) FROM alerts WHERE rule = 'source_lost' AND state = 'open'")
                == 1
            ),
            timeout=60,
        )
        assert states(db_url, ids) == ["online"] * 2
        assert scalar(db_url, "SELECT count(*) FROM alerts WHERE rule = 'offline'") == offline_alerts


# -- inputs nobody thought of ------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _quoted(v: Any) -> Any:
    """`v` with every nested object and list written as a JSON string (escaped), as the vendor does."""
    if isinstance(v, dict):
        return {
            k: orjson.dumps(_quoted(x)).decode() if isinstance(x, dict | list) and x else _quoted(x)
            for k, x in v.items()
        }
    if isinstance(v, list):
        return [_quoted(x) for x in v]
    return v


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_repair_of_any_bytes_never_raises(raw: bytes) -> None:
    repair_quoted_json(raw)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _json, max_size=4))
def test_nested_objects_written_as_strings_come_back_as_they_were(doc: dict[str, Any]) -> None:
    def looks_like_json(v: Any) -> bool:
        if isinstance(v, str):
            t = v.strip()
            return t[:1] in "{[" and t.rstrip()[-1:] in "}]"
        if isinstance(v, dict):
            return any(looks_like_json(x) for x in v.values())
        if isinstance(v, list):
            return any(looks_like_json(x) for x in v)
        return False

    assume(not looks_like_json(doc))  # a string of the vendor's that is JSON text is decoded: by design
    assert repair_quoted_json(orjson.dumps(_quoted(doc))) == doc


def test_a_list_answer_of_any_shape_is_a_reading_never_an_exception(vendor: VendorServer) -> None:
    """Whatever JSON the server answers, each device gets a Reading (listed, not_listed, or the
    server lost), through the real prober and one loopback server for every example."""

    @settings(max_examples=60, deadline=None)
    @given(_json, st.sampled_from(["123456789ABCDF4", "0", "True", ""]))
    def check(doc: Any, rid: str) -> None:
        vendor.body[0] = orjson.dumps({"DataType": 5, "Data": doc})
        [[(r, _st)]], _ = probe_all(vendor.url, [rid])
        assert isinstance(r, Reading)
        assert r.ok or r.error_code in ("not_listed", "malformed"), r

    check()
