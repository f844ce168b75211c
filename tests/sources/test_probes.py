"""The ping, TCP and HTTP(S) probers against real things on this machine: ICMP to loopback and into a
network namespace the test makes (whose replies never come), TCP to open and closed loopback ports,
HTTP(S) servers on loopback with certificates the test signs."""

import asyncio
import ctypes
import datetime as dt
import http.server
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.sources.probes import HttpProber, PingProber, TcpProber, body_fields
from ingest.sources.reading import Reading
from services.mapping import compile_field
from services.models import Device
from services.sources.model import HttpSource, PingSource, TcpSource

GATEWAY = Device("gw-test", "thoai-giang", "gateway")
EBOARD = Device("eb-test", "thoai-giang", "eboard")


def run(coro: Coroutine[Any, Any, Reading]) -> Reading:
    return asyncio.run(coro)


def ping(host: str, **kw: Any) -> Reading:
    async def main() -> Reading:
        p = PingProber()
        try:
            return await p.probe(GATEWAY, PingSource(host, **kw), {}, {})
        finally:
            p.close()

    return run(main())


# -- ICMP ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "127.31.7.200", "::1"])
def test_ping_to_loopback_addresses_answers_with_rtt_and_no_loss(host: str) -> None:
    r = ping(host)
    assert r.ok and r.error_code is None
    assert r.metrics["loss_pct"] == 0.0
    assert r.metrics["rtt_ms"] >= 0 and r.rtt_ms == r.metrics["rtt_ms"]


def test_many_concurrent_pings_share_one_socket_and_each_gets_its_own_replies() -> None:
    async def main() -> list[Reading]:
        p = PingProber()
        try:
            return await asyncio.gather(
                *(
                    p.probe(GATEWAY, PingSource(f"127.0.{i}.{j}", count=2), {}, {})
                    for i in range(2)
                    for j in range(1, 101)
                )
            )
        finally:
            p.close()

    readings = run(main())
    assert len(readings) == 200 and all(r.ok and r.metrics["loss_pct"] == 0.0 for r in readings)


def test_ping_to_a_name_that_does_not_resolve_is_a_dns_failure_not_an_exception() -> None:
    r = ping("no-such-device.invalid")
    assert not r.ok and r.error_code == "dns"


class Netns:
    """A network namespace of this test: a veth pair, our end 10.200.0.1/30, and a permanent
    neighbour entry for 10.200.0.2 pointing at the other end, which has no address: echo requests
    leave and nothing ever answers (nothing outside the namespace is touched)."""

    def __init__(self) -> None:
        self.name = f"ioc-test-{uuid.uuid4().hex[:8]}"
        self.silent = "10.200.0.2"

    def sh(self, *cmd: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.name, *cmd], check=True, capture_output=True)

    def create(self) -> None:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        self.sh("ip", "link", "set", "lo", "up")
        self.sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        self.sh("ip", "addr", "add", "10.200.0.1/30", "dev", "v0")
        self.sh("ip", "link", "set", "v0", "up")
        self.sh("ip", "link", "set", "v1", "up")
        mac = Path(f"/sys/class/net/v1/address")  # noqa: F541 - read inside the namespace below
        out = subprocess.run(
            ["ip", "netns", "exec", self.name, "cat", str(mac)], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.sh("ip", "neigh", "add", self.silent, "lladdr", out, "dev", "v0", "nud", "permanent")

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def call(self, fn: Callable[[], Any]) -> Any:
        """fn() in a thread that has entered the namespace (sockets it makes live there)."""
        out: list[Any] = []

        def main() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET: this thread only
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            try:
                out.append(fn())
            except BaseException as err:  # noqa: BLE001 - handed to the test
                out.append(err)

        t = threading.Thread(target=main, name="test.netns")
        t.start()
        t.join(60)
        if isinstance(out[0], BaseException):
            raise out[0]
        return out[0]


@pytest.fixture
def netns() -> Iterator[Netns]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    ns = Netns()
    try:
        ns.create()
    except subprocess.CalledProcessError as err:
        ns.delete()
        pytest.skip(f"cannot make a network namespace here: {err.stderr!r}")
    yield ns
    ns.delete()


def test_ping_to_an_address_that_never_answers_times_out_with_full_loss(netns: Netns) -> None:
    r = netns.call(lambda: ping(netns.silent, count=2, timeout_s=0.5))
    assert not r.ok and r.error_code == "timeout"
    assert r.metrics == {"loss_pct": 100.0} and r.rtt_ms is None
    # the namespace's own address answers: the silence is the target's, not the setup's
    assert netns.call(lambda: ping("10.200.0.1")).ok


# Run as nobody inside the test's namespace: ping 127.0.0.1 (answers) and the silent address.
UNPRIVILEGED_PING = """
import asyncio, json, sys
from ingest.sources.probes import PingProber
from services.models import Device
from services.sources.model import PingSource

async def main():
    p = PingProber()
    out = {}
    try:
        for host in sys.argv[1:]:
            r = await p.probe(Device("gw", "c", "gateway"), PingSource(host, count=2, timeout_s=0.5), {}, {})
            out[host] = [r.ok, r.error_code]
        out["privileged"] = p._sockets.privileged if p._sockets else None
    finally:
        p.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def _ping_as_nobody(netns: Netns, group_range: str, *caps: str) -> dict[str, Any]:
    """The prober in a process of uid/gid 65534 (no capability unless `caps`, given as ambient
    ones, as systemd's AmbientCapabilities does) in the namespace, whose ping_group_range (a
    per-namespace sysctl) is set first."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop to an unprivileged user")
    netns.sh("sysctl", "-q", "-w", f"net.ipv4.ping_group_range={group_range}")
    capargs = [f"--inh-caps=+{c}" for c in caps] + [f"--ambient-caps=+{c}" for c in caps]
    out = subprocess.run(
        [
            "ip", "netns", "exec", netns.name,
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *capargs,
            sys.executable, "-c", UNPRIVILEGED_PING, "127.0.0.1", netns.silent,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_ping_without_root_uses_unprivileged_sockets_where_ping_group_range_allows(netns: Netns) -> None:
    got = _ping_as_nobody(netns, "0 2147483647")
    assert got["privileged"] is False
    assert got["127.0.0.1"] == [True, None]
    assert got[netns.silent] == [False, "timeout"]


def test_ping_without_root_and_without_the_range_needs_cap_net_raw(netns: Netns) -> None:
    # the default range "1 0" (no group): without a capability there is no ICMP socket at all
    got = _ping_as_nobody(netns, "1 0")
    assert got["127.0.0.1"] == [False, "permission"] and got["privileged"] is None
    # with CAP_NET_RAW alone, as deploy/systemd/ioc-ingest@.service grants it: raw sockets
    got = _ping_as_nobody(netns, "1 0", "net_raw")
    assert got["privileged"] is True
    assert got["127.0.0.1"] == [True, None] and got[netns.silent] == [False, "timeout"]


def test_shipped_ingest_unit_grants_cap_net_raw_and_nothing_more() -> None:
    unit = (Path(__file__).resolve().parents[2] / "deploy/systemd/ioc-ingest@.service").read_text()
    lines = {line.strip() for line in unit.splitlines()}
    assert "AmbientCapabilities=CAP_NET_RAW" in lines and "CapabilityBoundingSet=CAP_NET_RAW" in lines
    assert "User=ioc" in lines and "NoNewPrivileges=yes" in lines


def test_tcp_to_an_address_that_never_answers_times_out(netns: Netns) -> None:
    src = TcpSource(netns.silent, 80, timeout_s=0.5)
    r = netns.call(lambda: run(TcpProber().probe(GATEWAY, src, {}, {})))
    assert not r.ok and r.error_code == "timeout"


# -- TCP -------------------------------------------------------------------------------------


def test_tcp_connect_to_a_listening_port_answers_and_to_a_closed_one_is_refused() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        r = run(TcpProber().probe(GATEWAY, TcpSource("127.0.0.1", port), {}, {}))
        assert r.ok and r.metrics["rtt_ms"] >= 0
    # the port is closed now (nothing listens on it)
    r = run(TcpProber().probe(GATEWAY, TcpSource("127.0.0.1", port), {}, {}))
    assert not r.ok and r.error_code == "refused" and r.error


# -- HTTP(S) ---------------------------------------------------------------------------------

STATUS_JSON = {"display": {"on": True, "brightness": 80}, "temp": 41.5, "fw": "2.1.0"}


class Handler(http.server.BaseHTTPRequestHandler):
    release: threading.Event

    def log_message(self, *args: Any) -> None:
        pass

    def _send(
        self, code: int, body: bytes, ctype: str = "text/plain", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path
        if path == "/ok":
            self._send(200, b"<html>Bang tin xa Thoai Giang: OK</html>", "text/html")
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), b"status")
        elif path == "/json":
            self._send(200, json.dumps(STATUS_JSON).encode(), "application/json")
        elif path == "/badjson":
            self._send(200, json.dumps({"display": {"on": "sometimes"}}).encode(), "application/json")
        elif path == "/notjson":
            self._send(200, b"screen on", "text/plain")
        elif path == "/auth":
            import base64

            want = "Basic " + base64.b64encode(b"admin:s3cret").decode()
            if self.headers.get("Authorization") == want:
                self._send(200, b"{}", "application/json")
            else:
                self._send(401, b"no", headers={"WWW-Authenticate": 'Basic realm="eb"'})
        elif path == "/hang":
            self.release.wait(60)
        elif path == "/hang-body":
            # headers at once, then a body that never finishes (a wedged embedded web server)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"display": ')
            self.wfile.flush()
            self.release.wait(60)
        elif path == "/temp":
            self._send(200, b"41.5\n", "text/plain")
        else:
            self._send(404, b"not found")


class Server:
    def __init__(self, ctx: ssl.SSLContext | None = None) -> None:
        release = threading.Event()
        handler = type("H", (Handler,), {"release": release})
        self.release = release
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        if ctx is not None:
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="test.http", daemon=True)
        self.thread.start()

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def web() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def http_probe(
    url: str,
    *,
    device: Device = EBOARD,
    secrets: dict[str, str] | None = None,
    ca: str | None = None,
    **kw: Any,
) -> tuple[Reading, dict[str, Any]]:
    state: dict[str, Any] = {}

    async def main() -> Reading:
        p = HttpProber(ca_file=ca)
        try:
            return await p.probe(device, HttpSource(url, **kw), secrets or {}, state)
        finally:
            await p.aclose()

    return run(main()), state


def test_http_status_in_the_expected_range_answers_with_status_and_rtt(web: Server) -> None:
    r, _ = http_probe(web.url("/ok"))
    assert r.ok and r.metrics["http_status"] == 200 and r.metrics["rtt_ms"] >= 0
    assert "tls_days_left" not in r.metrics
    r, _ = http_probe(web.url("/status/302"))
    assert r.ok and r.metrics["http_status"] == 302  # 200-399 by default, redirects not followed


def test_http_status_outside_the_expected_ranges_fails_with_http_status(web: Server) -> None:
    r, _ = http_probe(web.url("/status/503"))
    assert not r.ok and r.error_code == "http_status" and r.metrics["http_status"] == 503
    r, _ = http_probe(web.url("/status/204"), expect_status=((200, 200),))
    assert not r.ok and r.error_code == "http_status"
    r, _ = http_probe(web.url("/status/503"), expect_status=((200, 299), (503, 503)))
    assert r.ok


def test_http_expected_text_present_answers_and_missing_fails(web: Server) -> None:
    assert http_probe(web.url("/ok"), expect_text="Thoai Giang: OK")[0].ok
    r, _ = http_probe(web.url("/ok"), expect_text="ERROR")
    assert not r.ok and r.error_code == "text_missing"


def test_http_json_fields_are_mapped_as_a_vendor_payload(web: Server) -> None:
    fields = (
        compile_field("screen_on", "display.on"),
        compile_field("brightness_pct", "display.brightness"),
        compile_field("temperature_c", "temp"),
        compile_field("firmware", "fw"),
    )
    r, _ = http_probe(web.url("/json"), fields=fields)
    assert r.ok and r.error_code is None
    assert r.metrics | {"rtt_ms": 0} == {
        "screen_on": True,
        "brightness_pct": 80,
        "temperature_c": 41.5,
        "firmware": "2.1.0",
        "http_status": 200,
        "rtt_ms": 0,
    }


def test_http_answer_that_does_not_fit_its_fields_is_an_answer_kept_for_the_dead_letters(web: Server) -> None:
    fields = (compile_field("screen_on", "display.on"),)
    r, state = http_probe(web.url("/badjson"), fields=fields)
    assert r.ok and r.error_code == "malformed" and "screen_on" in (r.error or "")
    assert state["payload"] == b'{"display": {"on": "sometimes"}}'
    r, state = http_probe(web.url("/notjson"), fields=fields)
    assert r.ok and r.error_code == "malformed" and state["payload"] == b"screen on"


def test_http_basic_auth_from_the_secret_password_and_a_refusal_is_auth_failed(web: Server) -> None:
    r, _ = http_probe(web.url("/auth"), username="admin", secrets={"password": "s3cret"})
    assert r.ok
    r, _ = http_probe(web.url("/auth"), username="admin", secrets={"password": "wrong"})
    assert not r.ok and r.auth_failed and r.error_code == "auth" and r.metrics["http_status"] == 401
    r, _ = http_probe(web.url("/auth"))
    assert not r.ok and r.auth_failed and r.error_code == "auth"


def test_http_endpoint_that_hangs_is_a_timeout(web: Server) -> None:
    r, _ = http_probe(web.url("/hang"), timeout_s=0.5)
    assert not r.ok and r.error_code == "timeout"


def test_http_endpoint_that_sends_headers_then_hangs_in_its_body_is_a_timeout(web: Server) -> None:
    r, _ = http_probe(
        web.url("/hang-body"), timeout_s=0.5, fields=(compile_field("screen_on", "display.on"),)
    )
    assert not r.ok and r.error_code == "timeout"


def test_http_text_answer_is_the_string_at_as_a_vendor_payload(web: Server) -> None:
    # SPEC §8: a payload that is not JSON is the string `@` (numeric text becomes a number)
    r, _ = http_probe(web.url("/temp"), fields=(compile_field("temperature_c", "@"),))
    assert r.ok and r.error_code is None and r.metrics["temperature_c"] == 41.5
    # JSON paths over a text answer find nothing: that is a malformed answer, not an empty one
    r, state = http_probe(web.url("/temp"), fields=(compile_field("temperature_c", "temp"),))
    assert r.ok and r.error_code == "malformed" and "not a JSON object" in (r.error or "")
    assert state["payload"] == b"41.5\n"


def test_http_to_a_closed_port_is_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r, _ = http_probe(f"http://127.0.0.1:{port}/")
    assert not r.ok and r.error_code == "refused"


# -- HTTPS with certificates the test signs ---------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Pki:
    """A test CA and server certificates for 127.0.0.1 it signs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.now = dt.datetime.now(dt.UTC)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(_name("IOC test CA"))
            .issuer_name(_name("IOC test CA"))
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - dt.timedelta(days=400))
            .not_valid_after(self.now + dt.timedelta(days=400))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_file = root / "ca.pem"
        self.ca_file.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))

    def server_ctx(self, not_before: dt.datetime, not_after: dt.datetime, tag: str) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("127.0.0.1"))
            .issuer_name(self.ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        cert_file, key_file = self.root / f"{tag}.pem", self.root / f"{tag}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        return ctx


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def test_https_reports_the_days_left_on_the_server_certificate(pki: Pki) -> None:
    s = Server(
        pki.server_ctx(pki.now - dt.timedelta(days=1), pki.now + dt.timedelta(days=30, hours=12), "ok")
    )
    try:
        r, _ = http_probe(s.url("/ok", "https"), ca=str(pki.ca_file))
    finally:
        s.close()
    assert r.ok and r.metrics["http_status"] == 200
    assert 30.0 <= r.metrics["tls_days_left"] <= 30.5


def test_https_source_with_its_own_ca_file_verifies_and_reports_that_certificates_days_left(pki: Pki) -> None:
    not_after = pki.now + dt.timedelta(days=12, hours=6)
    s = Server(pki.server_ctx(pki.now - dt.timedelta(days=1), not_after, "own"))
    try:
        # no process-wide CA: the source's ca_file is what trusts the test CA
        r, _ = http_probe(s.url("/ok", "https"), ca_file=str(pki.ca_file))
        without, _ = http_probe(s.url("/ok", "https"))
    finally:
        s.close()
    assert r.ok and r.metrics["http_status"] == 200, r
    expected = round((not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400, 1)
    assert abs(r.metrics["tls_days_left"] - expected) <= 0.1
    assert not without.ok and without.error_code == "tls"


def test_https_ca_file_that_cannot_be_read_is_a_config_failure(tmp_path: Path) -> None:
    r, _ = http_probe("https://127.0.0.1:9/", ca_file=str(tmp_path / "gone.pem"))
    assert not r.ok and r.error_code == "config" and "gone.pem" in (r.error or "")


def test_https_with_an_untrusted_certificate_fails_verification(pki: Pki) -> None:
    s = Server(pki.server_ctx(pki.now - dt.timedelta(days=1), pki.now + dt.timedelta(days=30), "ok"))
    try:
        r, _ = http_probe(s.url("/ok", "https"))  # the system CAs do not know the test CA
    finally:
        s.close()
    assert not r.ok and r.error_code == "tls"


def test_https_with_an_expired_certificate_fails_and_says_how_long_ago_it_expired(pki: Pki) -> None:
    s = Server(pki.server_ctx(pki.now - dt.timedelta(days=100), pki.now - dt.timedelta(days=3), "old"))
    try:
        r, _ = http_probe(s.url("/ok", "https"), ca=str(pki.ca_file))
    finally:
        s.close()
    assert not r.ok and r.error_code == "tls" and "expired" in (r.error or "")
    assert -3.1 <= r.metrics["tls_days_left"] <= -2.9


# -- property: mapping an arbitrary JSON answer never raises ----------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=25,
)
FIELDS = (
    compile_field("screen_on", "display.on"),
    compile_field("brightness_pct", {"path": "display.brightness", "scale": 100}),
    compile_field("temperature_c", "temp || sensors[0].t"),
    compile_field("errors", "errors"),
    compile_field("content_id", "content"),
    compile_field("screen_on", {"path": "state", "map": {"ON": True, "OFF": False}}),
)


@settings(max_examples=300, deadline=None)
@given(doc=JSON, raw=st.binary(max_size=40))
def test_mapping_fields_of_an_arbitrary_answer_never_raises(doc: Any, raw: bytes) -> None:
    for body in (json.dumps(doc).encode(), raw):
        metrics, problem = body_fields("eboard", FIELDS, body)
        assert isinstance(metrics, dict) and (problem is None or isinstance(problem, str))
        assert problem is not None or set(metrics) <= {f.name for f in FIELDS}
