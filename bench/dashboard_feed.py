"""The commune bench/dashboard.py shows and the MQTT traffic it lives under.

Registry: devices spread over villages (every village has every kind), each at its own point so a
map marker is known by its latitude; the first few are probe cameras named to sort first.
Stream: statuses of every device round robin at a steady rate; a share of the messages flip a
device's availability (a rotating set is offline at any time); probe cameras flip `reachable` and
carry their publish time (`bench_t`, kept by ingest as an unknown field) to the page.
"""

import json
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.fastpub import FastPublisher
from services import auth
from services.topics import device_topic
from tests.dashboard.conftest import PASSWORD

COMMUNE = "xa-bench"
KINDS = (("camera", "cam", "Camera"), ("speaker", "spk", "Loa"), ("eboard", "eb", "Bảng tin"),
         ("wifi", "wifi", "Wi-Fi"), ("gateway", "gw", "Router"))  # fmt: skip


@dataclass(frozen=True)
class Registry:
    villages: int
    ids: list[str]
    kinds: list[str]
    names: list[str]
    positions: list[tuple[float, float]]
    probes: int

    @classmethod
    def build(cls, devices: int, villages: int, probes: int) -> "Registry":
        ids, kinds, names, positions = [], [], [], []
        side = int((devices / villages) ** 0.5) + 1
        for i in range(devices):
            v, j = i % villages, i // villages
            kind, prefix, label = KINDS[0] if i < probes else KINDS[j % len(KINDS)]
            ids.append(f"{prefix}-{i:04d}")
            kinds.append(kind)
            # Digits sort before letters: offline probes head the device list, in its viewport.
            names.append(f"0 Camera đầu dò {i}" if i < probes else f"{label} xóm {v + 1} số {j}")
            # A 0.0004° grid inside 0.01° village squares, nudged by i·1e-8° so latitudes are unique.
            lat = 10.20 + (v // 5) * 0.01 + (j // side) * 0.0004 + i * 1e-8
            lon = 105.20 + (v % 5) * 0.01 + (j % side) * 0.0004
            positions.append((lat, lon))
        return cls(villages, ids, kinds, names, positions, probes)

    def village(self, i: int) -> str:
        return f"xom-{i % self.villages + 1}"

    def probe_positions(self) -> list[dict[str, Any]]:
        return [{"id": self.ids[i], "lat": self.positions[i][0]} for i in range(self.probes)]


def seed(db_url: str, reg: Registry) -> None:
    """The commune, its villages and devices (never heard yet) and an admin."""
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO communes (id, name) VALUES (%s, 'Xã Thử Tải')", (COMMUNE,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO villages (commune_id, id, name) VALUES (%s, %s, %s)",
                [(COMMUNE, f"xom-{v + 1}", f"Xóm {v + 1}") for v in range(reg.villages)],
            )
            cur.executemany(
                "INSERT INTO devices (id, commune_id, village_id, kind, name, lat, lon, heartbeat_s)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, 600)",
                [
                    (d, COMMUNE, reg.village(i), reg.kinds[i], reg.names[i], *reg.positions[i])
                    for i, d in enumerate(reg.ids)
                ],
            )
        conn.execute("INSERT INTO device_state (device_id) SELECT id FROM devices")
        conn.execute("UPDATE registry_version SET version = version + 1")
        auth.add_user(conn, "admin", PASSWORD, "admin")


def status(kind: str, n: int) -> dict[str, Any]:
    """A plausible status whose numbers move, so rows in view repaint."""
    match kind:
        case "camera":
            return {"reachable": True, "rtt_ms": 5 + n % 40, "recording": True}
        case "speaker":
            return {"volume": n % 100, "playing": n % 2 == 0, "power": "mains"}
        case "eboard":
            return {"screen_on": True, "brightness_pct": n % 100, "temperature_c": 30 + n % 15}
        case "wifi":
            return {"clients": n % 40, "uplink_up": True, "cpu_pct": n % 100}
        case _:
            return {"uplink_up": True, "rtt_ms": 10 + n % 50, "cpu_pct": n % 100}


class Stream:
    """The publisher: warm_up() once, then running() around the measured views."""

    def __init__(
        self,
        mqtt_url: str,
        reg: Registry,
        rate: float,
        flip_share: float,
        offline: int,
        probe_every_s: float,
    ) -> None:
        self.url = mqtt_url
        self.reg = reg
        self.rate = rate
        self.flip_share = flip_share
        self.offline = offline
        self.probe_every_s = probe_every_s
        self.background = list(range(reg.probes, len(reg.ids)))
        # Flips rotate through the devices in an order spread over villages and kinds.
        self.order = self.background[:]
        random.Random(0).shuffle(self.order)
        self.down: deque[int] = deque()
        self.probe_up = [True] * reg.probes
        self.counts = {"statuses": 0, "flips": 0, "probe_flips": 0}
        self.seconds = 0.0
        self._stop = threading.Event()

    def _topic(self, i: int, channel: str) -> str:
        return device_topic(COMMUNE, self.reg.kinds[i], self.reg.ids[i], channel)

    def warm_up(self) -> None:
        """Every device heard once (unknown -> online), then the first `offline` of the rotation down."""
        msgs = [
            (self._topic(i, "status"), json.dumps(status(self.reg.kinds[i], i)).encode())
            for i in range(len(self.reg.ids))
        ]
        self.down.extend(self.order[: self.offline])
        msgs += [(self._topic(i, "availability"), b"offline") for i in self.down]
        with FastPublisher(self.url, "bench-dashboard-warmup") as pub:
            pub.publish(msgs)

    @contextmanager
    def running(self) -> Iterator[None]:
        thread = threading.Thread(target=self._run, name="bench.dashboard.publisher")
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()

    def _flip(self) -> tuple[str, bytes]:
        if self.counts["flips"] % 2 == 0:
            i = self.order[(self.offline + self.counts["flips"] // 2) % len(self.order)]
            self.down.append(i)
            value = b"offline"
        else:
            i = self.down.popleft()
            value = b"online"
        self.counts["flips"] += 1
        return self._topic(i, "availability"), value

    def _probe(self) -> tuple[str, bytes]:
        k = self.counts["probe_flips"] % self.reg.probes
        self.probe_up[k] = not self.probe_up[k]
        self.counts["probe_flips"] += 1
        body = {"reachable": self.probe_up[k], "rtt_ms": 3, "bench_t": time.time()}
        return self._topic(k, "status"), json.dumps(body).encode()

    def _run(self) -> None:
        with FastPublisher(self.url, "bench-dashboard-pub") as pub:
            t0 = time.perf_counter()
            next_probe = t0 + self.probe_every_s
            n = 0
            while not self._stop.is_set():
                delay = t0 + n / self.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                if self.reg.probes and time.perf_counter() >= next_probe:
                    next_probe += self.probe_every_s
                    pub.send(*self._probe())
                if int((n + 1) * self.flip_share) > int(n * self.flip_share):
                    pub.send(*self._flip())
                else:
                    i = self.background[n % len(self.background)]
                    pub.send(self._topic(i, "status"), json.dumps(status(self.reg.kinds[i], n)).encode())
                    self.counts["statuses"] += 1
                n += 1
            pub.wait_acked()
            self.seconds = time.perf_counter() - t0

    def summary(self) -> dict[str, Any]:
        sent = sum(self.counts.values())
        return {
            **self.counts,
            "seconds": round(self.seconds, 1),
            "msg_s": round(sent / max(self.seconds, 1e-9)),
        }
