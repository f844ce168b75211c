"""The deciding half of a tick on its own, without a database: what opens, what waits, in order."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.alerts import config
from services.alerts.decisions import Decider, Observed, Open, Resolve
from services.alerts.statecache import StateRow
from services.alerts.topology import DeviceRef, Topology

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
ROUTER = DeviceRef("gw-1", "thoai-giang", "trung-binh", "gateway", "Router ấp Trung Bình", None)
SPEAKER = DeviceRef("spk-1", "thoai-giang", "trung-binh", "speaker", None, "gw-1")


def decider() -> Decider:
    topo = Topology(
        version=1,
        devices={"gw-1": ROUTER, "spk-1": SPEAKER},
        order={"gw-1": 0, "spk-1": 1},
        ancestors={"gw-1": (), "spk-1": ("gw-1",)},
        descendants={"gw-1": ["spk-1"], "spk-1": []},
    )
    return Decider(config.build({"rules": {"offline": {"for_s": 0}}}), topo, ZoneInfo("Asia/Ho_Chi_Minh"))


def both_offline(ingest_heard_at: datetime | None) -> Observed:
    states = {d: StateRow("offline", NOW - timedelta(minutes=5), {}) for d in ("gw-1", "spk-1")}
    return Observed(
        now=NOW,
        states=states,
        offline=set(states),
        maintenance=set(),
        open_alerts={},
        ingest_heard_at=ingest_heard_at,
        flaps={},
        events={},
        dirty=None,
    )


def opened(decisions: list[Open | Resolve]) -> list[tuple[str, str | None]]:
    return [(d.rule, d.device.id if d.device else None) for d in decisions if isinstance(d, Open)]


def test_a_device_behind_an_offline_parent_waits_and_only_the_parent_opens() -> None:
    d = decider()
    out = d.decide(both_offline(ingest_heard_at=NOW))
    assert opened(out.decisions) == [("offline", "gw-1")]
    assert d.tracks[("offline", "spk-1")].held  # its `for` starts afresh when the router is back
    assert out.clocks[("offline", "gw-1")] == NOW - timedelta(minutes=5)


def test_a_lost_broker_opens_one_ioc_wide_alert_and_holds_back_offline() -> None:
    out = decider().decide(both_offline(ingest_heard_at=NOW - timedelta(seconds=60)))
    assert opened(out.decisions) == [("broker_lost", None)]
