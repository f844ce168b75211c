"""The ping, TCP and HTTP(S) probers of polled sources (SPEC §8), each a `Prober` of
`ingest.sources.reading`: asked once per poll, they answer a `Reading` and never raise for what
the device or the network did.

ICMP goes through one socket per process (`IcmpSocket`), not one per ping: a raw socket receives
every ICMP packet of the host, so N concurrent raw sockets would each parse every reply (N² work at
5,000 targets). Replies are matched to requests by sequence number (and, on a raw socket, by our
identifier). The socket is unprivileged (`net.ipv4.ping_group_range`) when the system allows it,
else raw (root or `CAP_NET_RAW`, which the shipped systemd unit grants); the choice is made once, at
the first ping, and logged once.
"""

import asyncio
import errno
import itertools
import logging
import socket
import ssl
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import orjson
from cryptography import x509
from icmplib import ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import SocketPermissionError
from icmplib.utils import is_ipv6_address, unique_identifier
from jmespath.exceptions import JMESPathError

from ingest.sources.reading import Reading
from services.mapping import SEARCH, FieldMap, MappingError, apply_fields, decode, kept, map_key
from services.models import Device
from services.sources.model import HttpSource, PingSource, Source, TcpSource
from services.sources.profiles import read_once

log = logging.getLogger(__name__)

# Between the echo requests of one ping (fping's default is 1 s per target; three packets 1 s
# apart would make every ping last 3 s, and the spread buys nothing on a LAN).
PING_INTERVAL_S = 0.2
# Read at most this much of an HTTP answer (text and fields are looked for in it).
HTTP_BODY_MAX = 1 << 20
# How deep strings holding JSON are decoded in a vendor's answer (ingest refuses deeper than 32).
QUOTED_DEPTH_MAX = 16
# 56 bytes, as ping's; fixed (icmplib's default draws a random one per packet, a fifth of its cost)
ECHO_PAYLOAD = bytes(range(56))
ICMP_ECHO_REQUEST_V4, ICMP_ECHO_REQUEST_V6 = 8, 128
ICMP_ECHO_REPLY_V4, ICMP_ECHO_REPLY_V6 = 0, 129


def _failure(code: str, detail: str, **kw: Any) -> Reading:
    return Reading(ok=False, error=detail[:200], error_code=code, **kw)


def _os_code(err: OSError) -> str:
    if isinstance(err, socket.gaierror):
        return "dns"
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    if isinstance(err, TimeoutError):
        return "timeout"
    if err.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.EADDRNOTAVAIL):
        return "unreachable"
    return "network"


# -- ICMP ------------------------------------------------------------------------------------


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


# RFC 1071 sum of the fixed payload, once: a request's checksum is then three additions
_PAYLOAD_SUM = sum(struct.unpack(f"!{len(ECHO_PAYLOAD) // 2}H", ECHO_PAYLOAD))


def echo_request(ident: int, seq: int, *, v6: bool) -> bytes:
    """An echo request with our payload. ICMPv6's checksum (over a pseudo-header) and an
    unprivileged socket's are the kernel's; a raw IPv4 socket sends ours."""
    if v6:
        return struct.pack("!BBHHH", ICMP_ECHO_REQUEST_V6, 0, 0, ident, seq) + ECHO_PAYLOAD
    checksum = ~_fold((ICMP_ECHO_REQUEST_V4 << 8) + ident + seq + _PAYLOAD_SUM) & 0xFFFF
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST_V4, 0, checksum, ident, seq) + ECHO_PAYLOAD


class _Ping:
    """One ping in flight: `count` requests, each settled by its reply, an ICMP error or its
    timer; `done` resolves when every one is settled. Callbacks only, no task per request."""

    __slots__ = ("done", "error", "left", "rtts")

    def __init__(self, done: asyncio.Future[None], count: int) -> None:
        self.done, self.left = done, count
        self.rtts: list[float] = []
        self.error: str | None = None

    def settle(self, rtt_ms: float | None = None, error: str | None = None) -> None:
        if rtt_ms is not None:
            self.rtts.append(rtt_ms)
        if error is not None:
            self.error = error
        self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)


class IcmpSocket:
    """One ICMP socket (v4 or v6) of this process, shared by every ping; reads in the event loop."""

    def __init__(self, v6: bool, privileged: bool) -> None:
        cls = ICMPv6Socket if v6 else ICMPv4Socket
        self.privileged = privileged
        self._v6 = v6
        # icmplib makes the socket (raw, or unprivileged where ping_group_range allows); requests
        # are built and sent here (icmplib's send resolves the address and sets TTL and traffic
        # class on every packet: most of a ping's CPU) and replies read without blocking (its own
        # receive blocks, or drops a reply that comes after a tiny timeout)
        self._sock = cls(privileged=privileged)
        self._raw: socket.socket = self._sock.sock
        self._raw.setblocking(False)
        try:
            # a burst of replies (thousands of targets) must not overflow the default buffer
            self._raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            pass
        # the identifier of our requests on a raw socket (an unprivileged socket gets the kernel's)
        self._id = unique_identifier()
        self._seq = itertools.count(int(time.time()) & 0xFFFF)
        # sequence -> (its ping, sent at, its timer)
        self._pending: dict[int, tuple[_Ping, float, asyncio.TimerHandle]] = {}
        self._loop = asyncio.get_running_loop()
        self._fd = self._raw.fileno()
        self._loop.add_reader(self._fd, self._readable)

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        self._sock.close()
        for ping, _sent, timer in self._pending.values():
            timer.cancel()
            if not ping.done.done():
                ping.done.cancel()
        self._pending.clear()

    async def ping(self, address: str, count: int, interval_s: float, timeout_s: float) -> _Ping:
        """`count` echo requests `interval_s` apart, each waiting `timeout_s` for its reply."""
        ping = _Ping(self._loop.create_future(), count)
        for i in range(count):
            if i:
                self._loop.call_later(i * interval_s, self._send, ping, address, timeout_s)
            else:
                self._send(ping, address, timeout_s)
        try:
            await ping.done
        finally:
            ping.left = -1  # requests not yet sent (a cancelled ping) are not sent
        return ping

    def _send(self, ping: _Ping, address: str, timeout_s: float) -> None:
        if ping.left < 0:
            return
        seq = next(self._seq) & 0xFFFF
        while seq in self._pending:  # a wrapped counter meeting a request still waiting
            seq = next(self._seq) & 0xFFFF
        try:
            self._raw.sendto(echo_request(self._id, seq, v6=self._v6), (address, 0))
        except OSError as err:  # a full buffer (BlockingIOError) too: that request is lost
            ping.settle(error=f"cannot send: {err.strerror or err}")
            return
        timer = self._loop.call_later(timeout_s, self._expire, seq)
        self._pending[seq] = (ping, time.perf_counter(), timer)

    def _expire(self, seq: int) -> None:
        entry = self._pending.pop(seq, None)
        if entry is not None:
            entry[0].settle()

    def _readable(self) -> None:
        for _ in range(256):  # drain what is there, then let the loop breathe
            try:
                packet = self._raw.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.warning("ping: ICMP socket error: %s", err)
                return
            now = time.perf_counter()
            parsed = parse_reply(packet, v6=self._v6, ip_header=self.privileged and not self._v6)
            if parsed is None:
                continue
            kind, ident, seq, detail = parsed
            if self.privileged and ident != self._id:
                continue  # another process's ping (a raw socket sees every ICMP packet)
            entry = self._pending.pop(seq, None)
            if entry is None:
                continue
            ping, sent_at, timer = entry
            timer.cancel()
            if kind == "reply":
                ping.settle(rtt_ms=(now - sent_at) * 1000)
            else:
                ping.settle(error=detail)


# ICMP errors that quote one of our requests: (v6, type) -> (name, {code: detail})
_ICMP_ERRORS: dict[tuple[bool, int], tuple[str, dict[int, str]]] = {
    (False, 3): (
        "destination unreachable",
        {
            0: "network unreachable",
            1: "host unreachable",
            3: "port unreachable",
            13: "administratively prohibited",
        },
    ),
    (False, 11): ("time exceeded", {}),
    (True, 1): (
        "destination unreachable",
        {0: "no route", 1: "administratively prohibited", 3: "address unreachable"},
    ),
    (True, 3): ("time exceeded", {}),
}


def parse_reply(packet: bytes, *, v6: bool, ip_header: bool) -> tuple[str, int, int, str] | None:
    """(`reply` or `error`, identifier, sequence, detail) of an ICMP echo reply, or of an error that
    quotes an echo request; None for anything else (our own requests seen on loopback, other ICMP).
    A raw IPv4 socket reads the IP header too; raw IPv6 and unprivileged sockets do not."""
    if ip_header:
        if len(packet) < 20:
            return None
        packet = packet[(packet[0] & 0x0F) * 4 :]
    if len(packet) < 8:
        return None
    icmp_type, code = packet[0], packet[1]
    if icmp_type == (ICMP_ECHO_REPLY_V6 if v6 else ICMP_ECHO_REPLY_V4):
        ident, seq = struct.unpack_from("!HH", packet, 4)
        return "reply", ident, seq, ""
    err = _ICMP_ERRORS.get((v6, icmp_type))
    if err is None:
        return None
    inner = packet[8:]  # the quoted request: its IP header, then its ICMP header
    if v6:
        if len(inner) < 48 or inner[6] != 58:  # next header: ICMPv6
            return None
        quoted = inner[40:]
    else:
        if len(inner) < 28 or inner[9] != 1:  # protocol: ICMP
            return None
        quoted = inner[(inner[0] & 0x0F) * 4 :]
    if len(quoted) < 8 or quoted[0] != (ICMP_ECHO_REQUEST_V6 if v6 else ICMP_ECHO_REQUEST_V4):
        return None
    ident, seq = struct.unpack_from("!HH", quoted, 4)
    name, codes = err
    return "error", ident, seq, codes.get(code, f"{name} (code {code})")


class IcmpSockets:
    """Privileged or not, decided once per process at the first ping and logged once."""

    def __init__(self) -> None:
        self._socks: dict[bool, IcmpSocket] = {}
        self.privileged: bool | None = None
        self.error: str | None = None

    def get(self, v6: bool) -> IcmpSocket:
        s = self._socks.get(v6)
        if s is not None:
            return s
        if self.error is not None:
            raise PermissionError(self.error)
        order = [self.privileged] if self.privileged is not None else [False, True]
        for privileged in order:
            try:
                s = IcmpSocket(v6, privileged)
            except SocketPermissionError:
                continue
            if self.privileged is None:
                log.info(
                    "ping: %s",
                    "unprivileged ICMP sockets (net.ipv4.ping_group_range)"
                    if not privileged
                    else "raw ICMP sockets (root or CAP_NET_RAW)",
                )
            self.privileged = privileged
            self._socks[v6] = s
            return s
        self.error = (
            "no ICMP socket: run with CAP_NET_RAW (the shipped systemd unit grants it) or widen"
            " net.ipv4.ping_group_range to a group of this user (docs/sources.md)"
        )
        log.error("ping: %s; every ping device reads as failed", self.error)
        raise PermissionError(self.error)

    def close(self) -> None:
        for s in self._socks.values():
            s.close()
        self._socks.clear()


class PingProber:
    """ICMP echo: `count` requests `PING_INTERVAL_S` apart, each waiting `timeout_s`; ok while any
    got a reply. Metrics `rtt_ms` (mean of the replies), `loss_pct`."""

    kind: ClassVar[str] = "ping"

    def __init__(self, interval_s: float = PING_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._sockets: IcmpSockets | None = None

    def close(self) -> None:
        if self._sockets is not None:
            self._sockets.close()

    async def _address(self, host: str) -> str:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
            return host
        except OSError:
            pass
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_RAW)
        return str(infos[0][4][0])

    async def probe(
        self, device: Device, source: Source, secrets: Mapping[str, str], state: dict[str, Any]
    ) -> Reading:
        assert isinstance(source, PingSource)
        if self._sockets is None:
            self._sockets = IcmpSockets()
        try:
            address = await self._address(source.host)
        except OSError as err:
            return _failure("dns", f"{source.host}: {err}")
        try:
            sock = self._sockets.get(is_ipv6_address(address))
        except PermissionError as err:
            return _failure("permission", str(err))
        result = await sock.ping(address, source.count, self._interval_s, source.timeout_s)
        rtts = result.rtts
        loss = round(100 * (source.count - len(rtts)) / source.count, 1)
        if not rtts:
            if result.error is not None:
                code, detail = "unreachable", f"{address}: {result.error}"
            else:
                code, detail = "timeout", f"no reply from {address} within {source.timeout_s:g} s"
            return Reading(ok=False, metrics={"loss_pct": loss}, error=detail, error_code=code)
        rtt = round(sum(rtts) / len(rtts), 3)
        return Reading(ok=True, metrics={"rtt_ms": rtt, "loss_pct": loss}, rtt_ms=rtt)


# -- TCP -------------------------------------------------------------------------------------


class TcpProber:
    """A TCP connect to host:port (closed at once); metric `rtt_ms` (the handshake)."""

    kind: ClassVar[str] = "tcp"

    async def probe(
        self, device: Device, source: Source, secrets: Mapping[str, str], state: dict[str, Any]
    ) -> Reading:
        assert isinstance(source, TcpSource)
        where = f"{source.host}:{source.port}"
        start = time.perf_counter()
        try:
            async with asyncio.timeout(source.timeout_s):
                _reader, writer = await asyncio.open_connection(source.host, source.port)
        except TimeoutError:
            return _failure("timeout", f"{where}: no answer within {source.timeout_s:g} s")
        except OSError as err:
            return _failure(_os_code(err), f"{where}: {err.strerror or err}")
        rtt = round((time.perf_counter() - start) * 1000, 3)
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass  # a reset on close says nothing about reachability
        return Reading(ok=True, metrics={"rtt_ms": rtt}, rtt_ms=rtt)


# -- HTTP(S) ---------------------------------------------------------------------------------


def tls_days_left(der: bytes, now: datetime) -> float:
    """Days until the certificate's notAfter (negative once it has expired)."""
    cert = x509.load_der_x509_certificate(der)
    return round((cert.not_valid_after_utc - now).total_seconds() / 86400, 1)


async def peer_certificate(host: str, port: int, timeout_s: float) -> bytes | None:
    """The server's certificate, not verified (to say when a certificate that failed expires)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout_s):
            _r, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
    except (OSError, TimeoutError, ssl.SSLError):
        return None
    obj = w.get_extra_info("ssl_object")
    der = obj.getpeercert(binary_form=True) if obj is not None else None
    w.close()
    try:
        await w.wait_closed()
    except (OSError, ssl.SSLError):
        pass
    return der


def _tls_code(err: BaseException) -> str | None:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return "tls"
        seen = seen.__cause__ or seen.__context__
    return None


def _http_failure(err: httpx.HTTPError, url: str) -> tuple[str, str]:
    if isinstance(err, httpx.TimeoutException):
        return "timeout", f"{url}: no answer in time ({type(err).__name__})"
    code = _tls_code(err)
    if code is not None:
        return code, f"{url}: TLS: {str(err)[:150]}"
    # the deepest OSError says why (anyio wraps a refusal in "All connection attempts failed")
    cause, seen = None, err.__cause__ or err.__context__
    while seen is not None:
        if isinstance(seen, OSError):
            cause = seen
        seen = seen.__cause__ or seen.__context__
    if cause is not None:
        return _os_code(cause), f"{url}: {cause.strerror or cause}"
    text = str(err)
    if "Name or service not known" in text or "getaddrinfo" in text:
        return "dns", f"{url}: {text[:150]}"
    if isinstance(err, httpx.ConnectError):
        return ("refused" if "refused" in text.lower() else "network"), f"{url}: {text[:150]}"
    return "malformed", f"{url}: {type(err).__name__}: {text[:150]}"


@dataclass
class _Answer:
    """One GET's answer (or the failure that stood for it), shared by the devices of one vendor list."""

    failure: Reading | None = None
    status: int = 0
    raw: bytes = b""
    rtt_ms: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    # the first device that finds a vendor's list unreadable dead-letters it; the others do not
    claimed: bool = False
    # judged once for the devices of a list: None while not yet, else (the list's items by their
    # id, or why the server is lost); one pass for a thousand receivers, not a thousand
    verdict: "tuple[dict[str, Any] | None, Reading | None] | None" = None


@dataclass(frozen=True)
class ListHealth:
    """A vendor list's server as its pollers last found it (reported as the health of a source)."""

    listening_since: datetime | None
    error: str | None = None
    refused: bool = False


# The console of a Vietnamese smart-radio system turns its vendor server's answer into JSON with
# these replacements, in this order (hiepsieuhp89/truyenthanh, app/Jobs/UpdateDevicesStatus.php):
# the server writes nested objects as raw JSON inside quotes.
_QUOTED_JSON_FIXES = ((':"{', ":{"), (':"[{', ":[{"), ('"}"', "}"), ('"{"', "{"), (']"}', "]}"))


def repair_quoted_json(raw: bytes) -> Any:
    """A vendor answer whose nested objects arrive as strings: escaped (`"Data": "{\\"a\\": 1}"`,
    decoded where a string holds a JSON object or list) or raw inside quotes (not JSON at all:
    repaired as the vendor's own console does, then decoded). Text that is neither is returned as
    text (so a profile's fields fail on it by name)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", errors="replace")
        for old, new in _QUOTED_JSON_FIXES:
            text = text.replace(old, new)
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            return raw.decode("utf-8", errors="replace").strip()
    return _unquote(doc, 0)


def _unquote(v: Any, depth: int) -> Any:
    if depth > QUOTED_DEPTH_MAX:
        return v
    if isinstance(v, dict):
        return {k: _unquote(x, depth + 1) for k, x in v.items()}
    if isinstance(v, list):
        return [_unquote(x, depth + 1) for x in v]
    if isinstance(v, str) and v[:1] in "{[" and v.rstrip()[-1:] in "}]":
        try:
            return _unquote(orjson.loads(v), depth + 1)
        except orjson.JSONDecodeError:
            return v
    return v


class HttpProber:
    """GET the URL; ok when its status is in `expect_status` and it holds `expect_text`. Metrics
    `rtt_ms` (to the response headers), `http_status`, `tls_days_left` for https, and the JSON
    `fields` mapped as a vendor payload's. 401 (or 403 to our credentials) is `auth_failed`. A body
    that does not fit `fields` is still an answer: ok, with error_code `malformed` (the scheduler
    dead-letters it; the raw body is left in `state["payload"]`).

    With a `profile` (SPEC §8 profiles, `http:`), the URL is a vendor server that lists its devices:
    the device is its item whose `id` is `source.http.id`, read with the profile's fields; a device
    the list does not name is a failure `not_listed` (not connected to its server). The devices of
    one list share one GET per half poll period, so a server is asked about once per cycle, not
    once per device. A server that does not answer, refuses our credentials or answers no list is
    lost: its devices' readings say `source_down` (their states freeze) and `lists` has the
    server's health, which the scheduler reports as a source's (one source_lost alert)."""

    kind: ClassVar[str] = "http"

    def __init__(
        self,
        ca_file: str | None = None,
        body_max: int = HTTP_BODY_MAX,
        *,
        profiles: Callable[[], Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The system's CAs (Debian's store, which the admin manages; SSL_CERT_FILE honoured), a
        # process-wide private CA, or a source's own `ca_file`: one client per CA file. A fresh
        # connection per probe: a kept-alive one would prove less.
        self._default_ca = ca_file
        self._body_max = body_max
        self._clients: dict[str | None, httpx.AsyncClient] = {}
        self._profiles = profiles or read_once()
        self._clock = clock
        # (url, user, password, ca file, profile) -> (good until, the GET in flight or done)
        self._shared: dict[tuple[str, str, str, str, str], tuple[float, asyncio.Task[_Answer]]] = {}
        self.gets = 0  # GETs sent (a vendor list's devices share them)
        # by source id (`HttpSource.broker_id`): what the last answer of each list's server said
        self.lists: dict[str, ListHealth] = {}

    def _http(self, ca_file: str | None) -> httpx.AsyncClient:
        """The client trusting `ca_file` (OSError or ssl.SSLError when it cannot be read)."""
        client = self._clients.get(ca_file)
        if client is None:
            client = httpx.AsyncClient(
                verify=ssl.create_default_context(cafile=ca_file),
                trust_env=False,  # no proxies from the environment for commune LAN devices
                follow_redirects=False,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
            )
            self._clients[ca_file] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            await c.aclose()

    async def _get(self, source: HttpSource, auth: httpx.BasicAuth | None) -> _Answer:
        url = source.url
        now = datetime.now(UTC)
        metrics: dict[str, Any] = {}
        ca_file = source.ca_file or self._default_ca
        try:
            client = self._http(ca_file)
        except (OSError, ssl.SSLError) as err:
            return _Answer(
                _failure("config", f"ca_file {ca_file}: cannot be read as PEM certificates: {err}")
            )
        self.gets += 1
        start = time.perf_counter()
        try:
            async with asyncio.timeout(source.timeout_s):
                async with client.stream("GET", url, auth=auth, timeout=source.timeout_s) as resp:
                    rtt = round((time.perf_counter() - start) * 1000, 3)
                    if url.lower().startswith("https://"):
                        stream = resp.extensions.get("network_stream")
                        obj = stream.get_extra_info("ssl_object") if stream is not None else None
                        der = obj.getpeercert(binary_form=True) if obj is not None else None
                        if der:
                            metrics["tls_days_left"] = tls_days_left(der, now)
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) >= self._body_max:
                            del body[self._body_max :]
                            break
        except TimeoutError:
            return _Answer(_failure("timeout", f"{url}: no answer within {source.timeout_s:g} s"))
        except httpx.HTTPError as err:
            code, detail = _http_failure(err, url)
            if code == "tls":
                u = httpx.URL(url)
                der = await peer_certificate(u.host, u.port or 443, min(source.timeout_s, 5.0))
                if der:
                    return _Answer(_failure(code, detail, metrics={"tls_days_left": tls_days_left(der, now)}))
            return _Answer(_failure(code, detail))
        metrics.update(rtt_ms=rtt, http_status=resp.status_code)
        return _Answer(None, resp.status_code, bytes(body), rtt, metrics)

    async def _shared_get(self, source: HttpSource, auth: httpx.BasicAuth | None, password: str) -> _Answer:
        """The answer of the list's GET, asked again once it is older than half a poll period."""
        now = self._clock()
        for k in [k for k, (until, task) in self._shared.items() if until <= now and task.done()]:
            del self._shared[k]
        key = (source.url, source.username or "", password, source.ca_file or "", source.profile or "")
        held = self._shared.get(key)
        if held is None:
            task = asyncio.get_running_loop().create_task(self._get(source, auth))
            held = self._shared[key] = (now + source.poll_s / 2, task)
        return await asyncio.shield(held[1])

    def _judge_list(
        self, source: HttpSource, profile: Any, answer: _Answer, with_credentials: bool
    ) -> tuple[dict[str, Any] | None, Reading | None]:
        """Once per answer of a list's server: its items by their id, or the Reading that says the
        server is lost (`source_down`: nothing is said of its devices), and the server's health."""
        sid = source.broker_id or source.url
        index: dict[str, Any] | None = None
        down = answer.failure or _checked(source, answer, with_credentials)
        url = source.url
        if down is None:
            hp = profile.http
            doc = repair_quoted_json(answer.raw) if hp.repair == "quoted_json" else decode(answer.raw)
            try:
                found = hp.devices_expr.search(doc, options=SEARCH)
            except (JMESPathError, TypeError, ValueError, OverflowError):
                found = None
            if isinstance(found, list):
                index = {}
                for item in found:
                    try:
                        item_id = hp.id_expr.search(item, options=SEARCH)
                    except (JMESPathError, TypeError, ValueError, OverflowError):
                        continue
                    if item_id is not None:
                        index.setdefault(map_key(item_id), item)  # the first of a repeated id
            else:
                down = Reading(
                    False,
                    error=f"{url}: profile {profile.name}: the answer has no list of devices at {hp.devices!r}",
                    error_code="malformed",
                )
        before = self.lists.get(sid)
        if down is None:
            if before is not None and before.error is not None:
                log.info("vendor list %s answers again", sid)
            since = (
                before.listening_since if before is not None and before.listening_since else datetime.now(UTC)
            )
            self.lists[sid] = ListHealth(since)
            return index, None
        self.lists[sid] = ListHealth(None, down.error, down.error_code == "auth")
        if before is None or before.error is None:
            log.warning("vendor list %s lost: %s", sid, down.error)
        metrics = {**answer.metrics, **down.metrics}
        return None, Reading(
            False,
            metrics=metrics,
            error=down.error,
            error_code=down.error_code,
            rtt_ms=answer.rtt_ms or None,
            source_down=True,
        )

    async def probe(
        self, device: Device, source: Source, secrets: Mapping[str, str], state: dict[str, Any]
    ) -> Reading:
        assert isinstance(source, HttpSource)
        url = source.url
        password = secrets.get("password")
        auth = httpx.BasicAuth(source.username or "", password or "") if source.username or password else None
        profile = None
        if source.profile is not None:
            profile = self._profiles().get(source.profile)
            if profile is None or getattr(profile, "http", None) is None:
                return _failure(
                    "config", f"profile {source.profile!r} is unknown here or has no http: section"
                )
            answer = await self._shared_get(source, auth, password or "")
            if answer.verdict is None:
                answer.verdict = self._judge_list(source, profile, answer, auth is not None)
            index, down = answer.verdict
            if down is not None:
                if down.error_code == "malformed" and not answer.claimed:
                    answer.claimed = True  # one dead letter per answer, not one per device of the list
                    state["payload"] = answer.raw[:65536]
                return down
            assert index is not None
            return _listed(device, source, profile, answer, index, state)
        answer = await self._get(source, auth)
        if answer.failure is not None:
            return answer.failure
        refused = _checked(source, answer, auth is not None)
        if refused is not None:
            return refused
        metrics, rtt, raw = dict(answer.metrics), answer.rtt_ms, answer.raw
        if source.fields:
            mapped, problem = body_fields(device.kind, source.fields, raw)
            metrics.update(mapped)
            if problem is not None:
                state["payload"] = raw[:65536]
                return Reading(
                    ok=True, metrics=metrics, error=f"{url}: {problem}", error_code="malformed", rtt_ms=rtt
                )
        return Reading(ok=True, metrics=metrics, rtt_ms=rtt)


def _checked(source: HttpSource, answer: _Answer, with_credentials: bool) -> Reading | None:
    """The failure an answer is by its status (`expect_status`) or its text (`expect_text`); None
    when it passes. 401 (or 403 to our credentials) is `auth_failed`."""
    url, status, metrics, rtt = source.url, answer.status, dict(answer.metrics), answer.rtt_ms
    if not any(lo <= status <= hi for lo, hi in source.expect_status):
        if status == 401 or (status == 403 and with_credentials):
            return Reading(
                ok=False,
                metrics=metrics,
                auth_failed=True,
                error=f"{url}: HTTP {status}: our credentials are refused"
                if with_credentials
                else f"{url}: HTTP {status}: the endpoint wants credentials",
                error_code="auth",
                rtt_ms=rtt,
            )
        return Reading(
            ok=False,
            metrics=metrics,
            error=f"{url}: HTTP {status}, expected {_ranges(source.expect_status)}",
            error_code="http_status",
            rtt_ms=rtt,
        )
    if source.expect_text is not None and source.expect_text not in answer.raw.decode("utf-8", "replace"):
        return Reading(
            ok=False,
            metrics=metrics,
            error=f"{url}: the answer does not contain {source.expect_text[:60]!r}",
            error_code="text_missing",
            rtt_ms=rtt,
        )
    return None


def _listed(
    device: Device,
    source: HttpSource,
    profile: Any,
    answer: _Answer,
    index: dict[str, Any],
    state: dict[str, Any],
) -> Reading:
    """The device's item in its vendor server's list, read with the profile's `http:` rules."""
    hp = profile.http
    where = f"{source.url}: profile {profile.name}"
    rtt, metrics = answer.rtt_ms, dict(answer.metrics)
    item = index.get(source.id or "")
    if item is None:
        return Reading(
            ok=False,
            metrics=metrics,
            error=f"{where}: the server does not list {source.id!r} (not connected to it)",
            error_code="not_listed",
            rtt_ms=rtt,
        )
    data = item
    if hp.item_expr is not None:
        try:
            data = hp.item_expr.search(item, options=SEARCH)
        except (JMESPathError, TypeError, ValueError, OverflowError):
            data = None
    try:
        mapped = apply_fields(device.kind, hp.fields, data)
    except MappingError as err:
        state["payload"] = orjson.dumps(item, default=str)[:65536]
        return Reading(ok=True, metrics=metrics, error=f"{where}: {err}", error_code="malformed", rtt_ms=rtt)
    if hp.keep:
        metrics.update(kept(device.kind, data, mapped, ("ts", *metrics), hp.drop))
    metrics.update(mapped)
    return Reading(ok=True, metrics=metrics, rtt_ms=rtt)


def body_fields(kind: str, fields: tuple[FieldMap, ...], raw: bytes) -> tuple[dict[str, Any], str | None]:
    """The kind's fields read from the answer, as from a vendor payload (JSON, else its text as `@`),
    or what kept them from being read (never raises)."""
    doc = decode(raw)
    try:
        return apply_fields(kind, fields, doc), None
    except MappingError as err:
        return {}, str(err)


def _ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


__all__ = [
    "HttpProber",
    "IcmpSockets",
    "PingProber",
    "TcpProber",
    "body_fields",
    "repair_quoted_json",
    "tls_days_left",
]
