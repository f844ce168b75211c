"""The registry as the alert evaluator sees it: active devices in registry order, their parent
chains (for parent suppression and the devices an offline alert lists), and the names messages
show. Read again whenever the registry version changes."""

from collections.abc import Mapping
from dataclasses import dataclass, field

import psycopg

from services import village_terms
from services.alerts import messages
from services.alerts.statecache import StateRow

IOC_WIDE = ""  # device key of alerts about the IOC itself


@dataclass(frozen=True)
class DeviceRef:
    id: str
    commune_id: str
    village_id: str | None
    kind: str
    name: str | None
    parent_id: str | None


@dataclass(frozen=True)
class Topology:
    """One read of the registry; empty (version -1) before the first."""

    version: int = -1
    devices: dict[str, DeviceRef] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)  # registry order: devices are evaluated in it
    ancestors: dict[str, tuple[str, ...]] = field(default_factory=dict)
    descendants: dict[str, list[str]] = field(default_factory=dict)
    villages: dict[tuple[str, str], str] = field(default_factory=dict)
    communes: dict[str, str] = field(default_factory=dict)
    terms: dict[str, str | None] = field(default_factory=dict)  # each commune's word for its villages

    def place(self, device_id: str | None) -> messages.Place:
        """The names to show for a device (none for an IOC-wide alert)."""
        dev = self.devices.get(device_id or "")
        if dev is None:
            return messages.Place()
        village = self.villages.get((dev.commune_id, dev.village_id or ""))
        return messages.Place(
            dev.name, dev.kind, village, self.communes.get(dev.commune_id), self.terms.get(dev.commune_id)
        )

    def affected(self, device_id: str, states: Mapping[str, StateRow]) -> list[str]:
        """The devices below this one that are not online (an offline alert lists them)."""
        return sorted(
            d
            for d in self.descendants.get(device_id, ())
            if d in states and states[d].state not in ("online", "maintenance")
        )


def version(conn: psycopg.Connection) -> int | None:
    """The registry version now (None before the registry has one)."""
    row = conn.execute("SELECT version FROM registry_version").fetchone()
    return int(row[0]) if row else None


def read(conn: psycopg.Connection) -> Topology:
    """The registry now, in the caller's transaction."""
    registry_version = version(conn)
    devices = {
        r[0]: DeviceRef(*r)
        for r in conn.execute(
            "SELECT id, commune_id, village_id, kind, name, parent_id FROM devices WHERE retired_at IS NULL"
        )
    }
    villages = {(r[0], r[1]): r[2] for r in conn.execute("SELECT commune_id, id, name FROM villages")}
    communes: dict[str, str] = dict(conn.execute("SELECT id, name FROM communes").fetchall())
    ancestors: dict[str, tuple[str, ...]] = {}
    descendants: dict[str, list[str]] = {d: [] for d in devices}
    for dev in devices.values():
        chain: list[str] = []
        cur = dev.parent_id
        while cur and cur in devices and cur not in chain and cur != dev.id:
            chain.append(cur)
            cur = devices[cur].parent_id
        ancestors[dev.id] = tuple(chain)
        for a in chain:
            descendants[a].append(dev.id)
    return Topology(
        0 if registry_version is None else registry_version,
        devices,
        {d: i for i, d in enumerate(devices)},
        ancestors,
        descendants,
        villages,
        communes,
        village_terms.commune_terms(conn),
    )
