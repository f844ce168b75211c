"""The devices the IOC polls (SPEC §8), answered on loopback while they are on the air.

- **http**: one small HTTP server per port; the device's `url` path answers JSON built from the
  registry's own `fields` map (`screen_on: display.on` gives `{"display": {"on": true}}`), filled
  with the device's current readings. Off the air, a request gets its connection reset.
- **http with a profile** (a vendor server listing its devices): every device of one URL path
  shares it; the answer lists the devices on the air, as the `truyenthanh` profile's server writes
  them (nested objects raw inside quotes), so a receiver off the air is simply missing from it.
- **tcp**: a listener on the device's port, closed while the device (or a router above it) is
  down, so a connect is refused, and opened again when it is back.

- **snmp** (v1, v2c, v3 authNoPriv and authPriv): an agent on the device's UDP port
  (`simulator.snmp_agent`), silent while the device is off the air or when asked with another
  community; a v3 agent refuses other keys as a real one does (usmStatsWrongDigests).

- **ping**: the kernel answers ICMP echo for every loopback address, so a ping device lives on an
  address of 127.0.0.0/8 of its own (e.g. 127.77.1.1); while it is off the air the simulator puts
  an `unreachable` route for that one address in the local routing table (`ip route`, which needs
  root or CAP_NET_ADMIN), so echo requests to it fail, and takes the route away when it is back
  (and at start and stop). Without that privilege the device stays on the air, said once in the log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from services.models import Registry
from services.sources.model import HttpSource, PingSource, SnmpSource, TcpSource

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost")
_PLAIN_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
OffAir = Callable[[str], object]
Readings = Callable[[str], dict[str, Any]]


def status_json(source: HttpSource, readings: dict[str, Any]) -> dict[str, Any]:
    """The document whose `fields` paths give back `readings` (plain dotted paths only)."""
    doc: dict[str, Any] = {}
    for f in source.fields:
        if f.name not in readings or not _PLAIN_PATH.match(f.path) or f.map or f.scale or f.offset:
            continue
        *parents, leaf = f.path.split(".")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = readings[f.name]
    return doc


def _reset(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        transport.abort()
    raise web.HTTPServiceUnavailable()


def smart_radio_list(receivers: list[tuple[str, dict[str, Any]]]) -> bytes:
    """A smart-radio vendor server's answer listing `receivers` (their id there, their readings):
    DataType 5, Data[].DeviceID and DeviceData.Data (AudioOutState, Volume as a level 1-15,
    RadioFrequency, PlayURL, Fan1Status), each nested object written raw inside quotes."""
    items = []
    for rid, now in receivers:
        volume = now.get("volume")
        level = max(1, min(15, round(float(volume) * 15 / 100))) if isinstance(volume, int | float) else 8
        fm = "102.7" if now.get("source") == "fm-xa" else ""
        data = orjson.dumps(
            {
                "AudioOutState": 1 if now.get("playing") else 0,
                "Fan1Status": 1 if float(now.get("temperature_c") or 0) > 40 else 0,
                "PlayURL": "",
                "RadioFrequency": fm,
                "Volume": level,
            }
        ).decode()
        inner = '{"PacketType":5,"Data":"' + data + '"}'
        items.append('{"DeviceID":' + orjson.dumps(rid).decode() + ',"DeviceData":"' + inner + '"}')
    return ('{"DataType":5,"Data":"[' + ",".join(items) + ']"}').encode()


class HttpDevices:
    """The HTTP status pages of the devices on one loopback port, and the vendor lists there."""

    def __init__(
        self,
        port: int,
        paths: dict[str, tuple[str, HttpSource]],
        off_air: OffAir,
        readings: Readings,
        lists: dict[str, list[tuple[str, HttpSource]]] | None = None,
    ):
        self.port, self.paths, self.off_air, self.readings = port, paths, off_air, readings
        self.lists = lists or {}
        self.requests = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        members = self.lists.get(request.path)
        if members is not None:
            self.requests += 1
            on_air = [(src.id or d, self.readings(d)) for d, src in members if not self.off_air(d)]
            return web.Response(body=smart_radio_list(on_air), content_type="text/plain")
        found = self.paths.get(request.path)
        if found is None:
            raise web.HTTPNotFound()
        device_id, source = found
        self.requests += 1
        if self.off_air(device_id):
            _reset(request)
        return web.json_response(status_json(source, self.readings(device_id)))

    async def start(self, stack: AsyncExitStack, sock: socket.socket | None) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.2)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site: web.BaseSite
        if sock is not None:
            site = web.SockSite(runner, sock)
        else:
            site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        listed = sum(len(m) for m in self.lists.values())
        log.info(
            "%d HTTP device(s) and %d listed ones answer on 127.0.0.1:%d", len(self.paths), listed, self.port
        )


class TcpDevice:
    """A device's TCP port: listening while it is on the air, refused while it is not."""

    def __init__(self, device_id: str, port: int, off_air: OffAir, sock: socket.socket | None) -> None:
        self.device_id, self.port, self.off_air = device_id, port, off_air
        self._sock = sock
        self._server: asyncio.Server | None = None
        self.accepted = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.close()

    async def _open(self) -> None:
        try:
            if self._sock is not None:
                sock, self._sock = self._sock, None
                self._server = await asyncio.start_server(self._accept, sock=sock)
            else:
                self._server = await asyncio.start_server(
                    self._accept, "127.0.0.1", self.port, reuse_address=True
                )
        except OSError as err:
            log.warning("%s: cannot listen on 127.0.0.1:%d again: %s", self.device_id, self.port, err)

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def run(self, stopping: asyncio.Event, tick_s: float = 0.2) -> None:
        try:
            while not stopping.is_set():
                down = bool(self.off_air(self.device_id))
                if down and self._server is not None:
                    await self._close()
                elif not down and self._server is None:
                    await self._open()
                try:
                    async with asyncio.timeout(tick_s):
                        await stopping.wait()
                except TimeoutError:
                    pass
        finally:
            await self._close()
            if self._sock is not None:
                self._sock.close()


def _is_own_loopback(host: str) -> bool:
    """A 127.x address other than 127.0.0.1: one the simulator may take off the air alone."""
    parts = host.split(".")
    return len(parts) == 4 and parts[0] == "127" and host != "127.0.0.1" and all(p.isdigit() for p in parts)


class PingDevice:
    """A device answering ping on its own loopback address, unreachable while off the air."""

    def __init__(self, device_id: str, host: str, off_air: OffAir) -> None:
        self.device_id, self.host, self.off_air = device_id, host, off_air
        self.down = False
        self.can_route = True

    async def _route(self, verb: str) -> bool:
        proc = await asyncio.create_subprocess_exec(
            "ip", "route", verb, "unreachable", f"{self.host}/32", "table", "local",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _out, err = await proc.communicate()
        if proc.returncode != 0 and verb == "add" and self.can_route:
            self.can_route = False
            log.warning(
                "%s: cannot take %s off the air (ip route: %s); it keeps answering ping",
                self.device_id,
                self.host,
                err.decode(errors="replace").strip() or proc.returncode,
            )
        return proc.returncode == 0

    async def run(self, stopping: asyncio.Event, tick_s: float = 0.2) -> None:
        try:
            await self._route("del")  # a route a killed simulator left behind
        except FileNotFoundError:
            log.warning("%s: no `ip` command: %s keeps answering ping", self.device_id, self.host)
            return
        try:
            while not stopping.is_set():
                down = bool(self.off_air(self.device_id))
                if down and not self.down and self.can_route:
                    self.down = await self._route("add")
                elif not down and self.down:
                    await self._route("del")
                    self.down = False
                try:
                    async with asyncio.timeout(tick_s):
                        await stopping.wait()
                except TimeoutError:
                    pass
        finally:
            if self.down:
                await self._route("del")
                self.down = False


def _loopback_port(url: str) -> tuple[int, str] | None:
    u = urlsplit(url)
    if u.scheme != "http" or u.hostname not in LOOPBACK:
        return None
    return u.port or 80, u.path or "/"


async def serve(
    stack: AsyncExitStack,
    reg: Registry,
    off_air: OffAir,
    readings: Readings,
    stopping: asyncio.Event,
    *,
    sockets: dict[int, socket.socket] | None = None,
) -> tuple[list[HttpDevices], list[TcpDevice]]:
    """Answer every loopback HTTP and TCP source of `reg` until `stopping` is set and `stack` closes."""
    sockets = dict(sockets or {})
    by_port: dict[int, dict[str, tuple[str, HttpSource]]] = {}
    lists: dict[int, dict[str, list[tuple[str, HttpSource]]]] = {}
    tcp: list[TcpDevice] = []
    pings: list[PingDevice] = []
    for d in reg.devices:
        if d.retired_at is not None:
            continue
        src = d.source
        if isinstance(src, HttpSource) and (where := _loopback_port(src.url)):
            if src.profile is not None:
                lists.setdefault(where[0], {}).setdefault(where[1], []).append((d.id, src))
            else:
                by_port.setdefault(where[0], {})[where[1]] = (d.id, src)
        elif isinstance(src, TcpSource) and src.host in LOOPBACK:
            tcp.append(TcpDevice(d.id, src.port, off_air, sockets.pop(src.port, None)))
        elif isinstance(src, PingSource) and _is_own_loopback(src.host):
            pings.append(PingDevice(d.id, src.host, off_air))
    http = []
    for port in sorted(set(by_port) | set(lists)):
        h = HttpDevices(port, by_port.get(port, {}), off_air, readings, lists.get(port))
        await h.start(stack, sockets.pop(port, None))
        http.append(h)
    agents = 0
    snmp_devices = [d for d in reg.devices if isinstance(d.source, SnmpSource)]
    if snmp_devices:
        from simulator import snmp_agent  # pysnmp: only when the registry has SNMP devices
    for d in snmp_devices:
        src = d.source
        if d.retired_at is not None or not isinstance(src, SnmpSource) or src.host not in LOOPBACK:
            continue
        secrets = reg.source_secrets.get(d.id, {})

        def view(device_id: str = d.id, kind: str = d.kind) -> list[tuple[Any, Any]] | None:
            if off_air(device_id):
                return None
            now = readings(device_id)
            return snmp_agent.table(device_id, kind, now, int(now.get("uptime_s", 0)))

        if src.version == "3":
            if not (src.user and src.auth and secrets.get("auth_key")):
                log.warning("%s: SNMP v3 without user, auth and auth_key: not served", d.id)
                continue
            v3 = snmp_agent.V3Agent(
                src.user, src.auth, secrets["auth_key"], src.priv, secrets.get("priv_key"), view
            )
            await v3.serve(sockets.pop(src.port, None), src.port)
            stack.callback(v3.close)
        else:
            agent = snmp_agent.Agent(secrets.get("community", ""), view)
            transport = await snmp_agent.serve(sockets.pop(src.port, None), src.port, agent)
            stack.callback(transport.close)
        agents += 1
    if agents:
        log.info("%d SNMP agent(s) answer on 127.0.0.1 while their devices are on the air", agents)
    tasks = [asyncio.create_task(t.run(stopping), name=f"simulator.tcp[{t.device_id}]") for t in tcp]
    tasks += [asyncio.create_task(p.run(stopping), name=f"simulator.ping[{p.device_id}]") for p in pings]

    async def _wait() -> None:
        stopping.set()
        await asyncio.gather(*tasks)

    stack.push_async_callback(_wait)
    if tcp:
        log.info("%d TCP device(s) listen on 127.0.0.1 while on the air", len(tcp))
    if pings:
        log.info("%d ping device(s) answer on their own 127.x addresses while on the air", len(pings))
    return http, tcp
