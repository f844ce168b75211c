"""The SNMP prober against real agents: Debian's net-snmp snmpd (v1, v2c, v3 authNoPriv/authPriv),
snmpsim replaying recorded and hand-written walks (vendor client counts, a wrapped counter, a
reboot), and UDP servers that answer garbage, truncated BER or nothing."""

import asyncio
from typing import Any

import pytest

from ingest.sources.reading import Reading
from ingest.sources.snmp import SnmpProber
from services.models import Device
from services.sources.model import SnmpSource
from services.sources.profiles import shipped, shipped_examples
from tests.fix_snmp import COMMUNITY, V3_USERS, Snmpd

DEVICE = Device("ap-test", "xa-test", "wifi")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def probe(
    prober: SnmpProber, src: SnmpSource, secrets: dict[str, str], state: dict[str, Any] | None = None
) -> Reading:
    """One poll on an event loop of its own (the prober's sockets closed at its end)."""
    return probes(prober, [(src, secrets)], state)[0]


def probes(
    prober: SnmpProber, calls: list[tuple[SnmpSource, dict[str, str]]], state: dict[str, Any] | None = None
) -> list[Reading]:
    """Polls in turn on one event loop, as the scheduler runs them."""

    async def run() -> list[Reading]:
        try:
            return [await prober.probe(DEVICE, s, k, {} if state is None else state) for s, k in calls]
        finally:
            prober.close()

    return asyncio.run(run())


def v3(port: int, user: str, **kw: Any) -> tuple[SnmpSource, dict[str, str]]:
    auth, akey, priv, pkey = V3_USERS[user]
    secrets = {"auth_key": akey, **({"priv_key": pkey} if pkey else {})}
    return SnmpSource("127.0.0.1", port, "3", user, auth, priv, **kw), secrets


def test_v2c_metrics_and_interface_table(snmpd: Snmpd) -> None:
    r = probe(SnmpProber(dict), SnmpSource("127.0.0.1", snmpd.port, "2c"), {"community": COMMUNITY})
    assert r.ok and not r.auth_failed and r.error is None
    m = r.metrics
    assert m["firmware"] == "Commune IOC test agent (net-snmp)"
    assert isinstance(m["uptime_s"], int) and m["uptime_s"] >= 0
    names = {i["name"] for i in m["interfaces"]}
    assert "lo" in names
    lo = next(i for i in m["interfaces"] if i["name"] == "lo")
    assert lo["oper"] == "up" and lo["admin"] == "up" and isinstance(lo["rx_bytes"], int)
    assert m["if_up"] + m["if_down"] == len(m["interfaces"])
    # the default uplink is a non-loopback interface
    assert isinstance(m["uplink_up"], bool)


def test_uplink_named_by_ifname_gives_its_counters(snmpd: Snmpd) -> None:
    src = SnmpSource("127.0.0.1", snmpd.port, "2c", uplink="lo")
    r = probe(SnmpProber(dict), src, {"community": COMMUNITY})
    lo = next(i for i in r.metrics["interfaces"] if i["name"] == "lo")
    assert r.metrics["uplink_up"] is True
    assert r.metrics["rx_bytes"] == lo["rx_bytes"] and r.metrics["tx_bytes"] == lo["tx_bytes"]


def test_v1_walks_with_getnext_and_reads_extra(snmpd: Snmpd) -> None:
    src = SnmpSource(
        "127.0.0.1",
        snmpd.port,
        "1",
        extra=(
            ("contact", "1.3.6.1.2.1.1.4.0"),
            ("or_last_change", "1.3.6.1.2.1.1.8.0"),
            ("nothing", "1.3.6.1.2.1.1.99.0"),
        ),
    )
    r = probe(SnmpProber(dict), src, {"community": COMMUNITY})
    assert r.ok, r.error
    assert r.metrics["contact"] == "tests@example.invalid"
    assert isinstance(r.metrics["or_last_change"], int)
    assert "nothing" not in r.metrics
    assert r.metrics["interfaces"]


@pytest.mark.parametrize("user", sorted(V3_USERS))
def test_v3_users(snmpd: Snmpd, user: str) -> None:
    src, secrets = v3(snmpd.port, user)
    r = probe(SnmpProber(dict), src, secrets)
    assert r.ok, r.error
    assert r.metrics["firmware"].startswith("Commune IOC test agent")


def test_v3_wrong_key_is_auth_failed(snmpd: Snmpd) -> None:
    src, secrets = v3(snmpd.port, "ioc-sha-aes")
    r = probe(SnmpProber(dict), src, {**secrets, "auth_key": "not-the-key-at-all"})
    assert not r.ok and r.auth_failed and r.error_code == "auth"


def test_v3_unknown_user_is_auth_failed(snmpd: Snmpd) -> None:
    src = SnmpSource("127.0.0.1", snmpd.port, "3", "nobody-here", "sha", "aes")
    r = probe(SnmpProber(dict), src, {"auth_key": "some-auth-key", "priv_key": "some-priv-key"})
    assert not r.ok and r.auth_failed


def test_right_and_wrong_keys_of_one_user_do_not_mix(snmpd: Snmpd) -> None:
    prober = SnmpProber(dict)
    src, secrets = v3(snmpd.port, "ioc-sha-aes")
    wrong, right = probes(prober, [(src, {**secrets, "auth_key": "not-the-key-at-all"}), (src, secrets)])
    assert not wrong.ok and right.ok


def test_wrong_community_is_a_timeout(snmpd: Snmpd) -> None:
    src = SnmpSource("127.0.0.1", snmpd.port, "2c", timeout_s=0.5)
    r = probe(SnmpProber(dict), src, {"community": "not-the-community"})
    assert not r.ok and not r.auth_failed and r.error_code == "timeout"


def test_reboot_is_an_event_and_gives_no_rate(snmpd: Snmpd) -> None:
    clock = Clock()
    prober = SnmpProber(dict, clock=clock)
    src = SnmpSource("127.0.0.1", snmpd.port, "2c", uplink="lo")
    state: dict[str, Any] = {}
    first = probe(prober, src, {"community": COMMUNITY}, state)
    assert first.events == ()
    # as if the agent had been up for 400 days at the last poll: sysUpTime went down
    state["uptime_ticks"] = 400 * 86400 * 100
    clock.t += 60
    r = probe(prober, src, {"community": COMMUNITY}, state)
    assert [e[0] for e in r.events] == ["rebooted"]
    assert r.events[0][1] == "warning"
    assert "rx_bps" not in r.metrics and "tx_bps" not in r.metrics


def test_counters_below_last_poll_give_no_negative_rate(snmpd: Snmpd) -> None:
    clock = Clock()
    prober = SnmpProber(dict, clock=clock)
    src = SnmpSource("127.0.0.1", snmpd.port, "2c", uplink="lo")
    state: dict[str, Any] = {}
    probe(prober, src, {"community": COMMUNITY}, state)
    clock.t += 60
    steady = probe(prober, src, {"community": COMMUNITY}, state)
    assert steady.metrics["rx_bps"] >= 0 and steady.metrics["tx_bps"] >= 0
    # the last poll's counter was higher than now (a wrap or a reset without a reboot)
    state["uplink"]["rx"] = steady.metrics["rx_bytes"] + 2**40
    clock.t += 60
    r = probe(prober, src, {"community": COMMUNITY}, state)
    assert "rx_bps" not in r.metrics
    assert r.metrics["tx_bps"] >= 0


GARBAGE = b"\x00\xffnot snmp at all\x13\x37"


def _truncated(request: bytes) -> bytes:
    # a BER SEQUENCE claiming 200 bytes and carrying 3
    return b"\x30\x81\xc8\x02\x01\x01"


@pytest.mark.parametrize("reply", [lambda _req: GARBAGE, _truncated, lambda req: req[: len(req) // 2]])
def test_malformed_replies_are_offline_not_a_crash(udp_responder: Any, reply: Any) -> None:
    agent = udp_responder(reply)
    src = SnmpSource("127.0.0.1", agent.port, "2c", timeout_s=0.5)
    r = probe(SnmpProber(dict), src, {"community": COMMUNITY})
    assert agent.received >= 1
    assert not r.ok and r.error_code == "malformed", r


def _small_agent(snmpd_port: int, most_rows: int) -> Any:
    """An agent with a small message size in front of snmpd: a GETBULK asking for more than
    `most_rows` rows is answered tooBig (RFC 3416's error-status 1) with the request's varbinds."""
    import socket

    from pyasn1.codec.ber import decoder, encoder
    from pysnmp.proto import api

    v2 = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]

    def reply(request: bytes) -> bytes | None:
        msg, _ = decoder.decode(request, asn1Spec=v2.Message())
        pdu = v2.apiMessage.get_pdu(msg)
        if (
            pdu.isSameTypeWith(v2.GetBulkRequestPDU())
            and int(v2.apiBulkPDU.get_max_repetitions(pdu)) > most_rows
        ):
            out = v2.ResponsePDU()
            v2.apiPDU.set_defaults(out)
            v2.apiPDU.set_request_id(out, v2.apiPDU.get_request_id(pdu))
            v2.apiPDU.set_error_status(out, 1)
            v2.apiPDU.set_varbinds(out, v2.apiPDU.get_varbinds(pdu))
            v2.apiMessage.set_pdu(msg, out)
            return bytes(encoder.encode(msg))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(request, ("127.0.0.1", snmpd_port))
            return s.recvfrom(65535)[0]

    return reply


def test_an_agent_answering_too_big_is_asked_for_fewer_rows(snmpd: Snmpd, udp_responder: Any) -> None:
    agent = udp_responder(_small_agent(snmpd.port, 2))
    src = SnmpSource("127.0.0.1", agent.port, "2c", uplink="lo", timeout_s=5)
    r = probe(SnmpProber(dict), src, {"community": COMMUNITY})
    direct = probe(
        SnmpProber(dict), SnmpSource("127.0.0.1", snmpd.port, "2c", uplink="lo"), {"community": COMMUNITY}
    )
    assert r.ok, r.error
    assert [i["name"] for i in r.metrics["interfaces"]] == [i["name"] for i in direct.metrics["interfaces"]]
    assert r.metrics["uplink_up"] is True and r.metrics["firmware"] == direct.metrics["firmware"]


def _small_v1_agent(snmpd_port: int, most_oids: int, refused: list[int]) -> Any:
    """A v1 agent with a small message size in front of snmpd: a GET or GETNEXT of more than
    `most_oids` OIDs is answered tooBig (RFC 1157's error-status 1) with the request's varbinds."""
    import socket

    from pyasn1.codec.ber import decoder, encoder
    from pysnmp.proto import api

    v1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]

    def reply(request: bytes) -> bytes | None:
        msg, _ = decoder.decode(request, asn1Spec=v1.Message())
        pdu = v1.apiMessage.get_pdu(msg)
        if len(v1.apiPDU.get_varbinds(pdu)) > most_oids:
            refused.append(len(v1.apiPDU.get_varbinds(pdu)))
            out = v1.GetResponsePDU()
            v1.apiPDU.set_defaults(out)
            v1.apiPDU.set_request_id(out, v1.apiPDU.get_request_id(pdu))
            v1.apiPDU.set_error_status(out, 1)
            v1.apiPDU.set_varbinds(out, v1.apiPDU.get_varbinds(pdu))
            v1.apiMessage.set_pdu(msg, out)
            return bytes(encoder.encode(msg))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(request, ("127.0.0.1", snmpd_port))
            return s.recvfrom(65535)[0]

    return reply


def test_a_v1_agent_answering_too_big_is_asked_fewer_oids_a_request(snmpd: Snmpd, udp_responder: Any) -> None:
    # v1 has no GETBULK: a tooBig GET or GETNEXT is asked again in halves, down to one OID
    refused: list[int] = []
    agent = udp_responder(_small_v1_agent(snmpd.port, 1, refused))
    extra = (("contact", "1.3.6.1.2.1.1.4.0"), ("nothing", "1.3.6.1.2.1.1.99.0"))
    src = SnmpSource("127.0.0.1", agent.port, "1", uplink="lo", extra=extra, timeout_s=5)
    r = probe(SnmpProber(dict), src, {"community": COMMUNITY})
    direct = probe(
        SnmpProber(dict), SnmpSource("127.0.0.1", snmpd.port, "1", uplink="lo"), {"community": COMMUNITY}
    )
    assert refused, "the small agent was never asked more than one OID"
    assert r.ok, r.error
    assert [i["name"] for i in r.metrics["interfaces"]] == [i["name"] for i in direct.metrics["interfaces"]]
    assert r.metrics["uplink_up"] is True and r.metrics["firmware"] == direct.metrics["firmware"]
    assert r.metrics["contact"] == "tests@example.invalid" and "nothing" not in r.metrics


def test_a_hanging_agent_is_bounded_by_timeout_s(udp_responder: Any) -> None:
    agent = udp_responder(lambda _req: None)
    src = SnmpSource("127.0.0.1", agent.port, "2c", timeout_s=0.3)
    r = probe(SnmpProber(dict), src, {"community": COMMUNITY})
    assert agent.received >= 1
    assert not r.ok and r.error_code == "timeout"


def test_missing_community_is_a_config_error_not_a_crash() -> None:
    r = probe(SnmpProber(dict), SnmpSource("127.0.0.1", 9, "2c"), {})
    assert not r.ok and r.error_code == "config"


def test_shipped_vendor_profiles_name_client_count_oids() -> None:
    profiles = shipped()
    assert profiles["unifi"].snmp and profiles["unifi"].snmp.clients == "1.3.6.1.4.1.41112.1.6.1.2.1.8"
    assert profiles["mikrotik"].snmp and profiles["mikrotik"].snmp.clients == "1.3.6.1.4.1.14988.1.1.1.3.1.6"


@pytest.mark.parametrize("profile", ["unifi", "mikrotik"])
def test_vendor_profile_sums_the_client_count_column(snmpsim: Any, profile: str) -> None:
    example = next(iter(shipped_examples(profile)))
    src = SnmpSource("127.0.0.1", snmpsim.port, "2c", profile=profile, uplink="eth0")
    r = probe(SnmpProber(shipped), src, {"community": profile})
    assert r.ok, r.error
    assert r.metrics["clients"] == example["clients"]
    # 32-bit counters where the agent has no ifXTable
    assert r.metrics["uplink_up"] is True and r.metrics["rx_bytes"] == 123456
    assert r.metrics["if_up"] == 2 and r.metrics["if_down"] == 1


def test_recorded_net_snmp_walk_replays(snmpsim: Any) -> None:
    r = probe(SnmpProber(dict), SnmpSource("127.0.0.1", snmpsim.port, "2c"), {"community": "netsnmp"})
    assert r.ok, r.error
    assert r.metrics["firmware"] == "Commune IOC test agent"
    assert [i["name"] for i in r.metrics["interfaces"]] == ["lo", "ifb0", "ifb1", "eth0"]
    # ifHCInOctets (Counter64) preferred to ifInOctets
    assert next(i for i in r.metrics["interfaces"] if i["name"] == "lo")["rx_bytes"] == 5793029729


def test_a_wrapped_32_bit_counter_gives_no_rate(snmpsim: Any) -> None:
    clock = Clock()
    prober = SnmpProber(dict, clock=clock)
    src = SnmpSource("127.0.0.1", snmpsim.port, "2c", uplink="eth0")
    state: dict[str, Any] = {}
    first = probes(prober, [(src, {"community": "wrap-1"})], state)[0]
    clock.t += 60
    second = probes(prober, [(src, {"community": "wrap-2"})], state)[0]
    assert first.ok and second.ok
    assert "rx_bps" not in second.metrics
    assert second.metrics["tx_bps"] == (1600000 - 1000000) * 8 / 60
    assert second.events == ()


def test_a_reboot_between_recordings_is_an_event_and_no_rate(snmpsim: Any) -> None:
    clock = Clock()
    prober = SnmpProber(dict, clock=clock)
    src = SnmpSource("127.0.0.1", snmpsim.port, "2c", uplink="eth0")
    state: dict[str, Any] = {}
    probes(prober, [(src, {"community": "reboot-1"})], state)
    clock.t += 60
    r = probes(prober, [(src, {"community": "reboot-2"})], state)[0]
    assert r.events == (("rebooted", "warning", {"uptime_s": 12, "previous_uptime_s": 86400}),)
    assert "rx_bps" not in r.metrics and "tx_bps" not in r.metrics


def test_a_recorded_cisco_switch_gives_its_sysdescrs_first_line_as_firmware(snmpsim: Any) -> None:
    """A walk of a real Catalyst 3560 from snmpsim's own recordings (github.com/etingof/snmpsim,
    data/recorded/cisco-catalyst-3560.snmprec, cut to the system group and four interfaces): its
    sysDescr has four CRLF lines."""
    r = probe(SnmpProber(dict), SnmpSource("127.0.0.1", snmpsim.port, "2c"), {"community": "cisco-c3560"})
    assert r.ok, r.error
    assert r.metrics["firmware"] == (
        "Cisco IOS Software, C3560 Software (C3560-IPSERVICESK9-M), Version 12.2(55)SE3,"
        " RELEASE SOFTWARE (fc1)"
    )
    assert r.metrics["uptime_s"] == 4924464
    assert {i["name"]: i["oper"] for i in r.metrics["interfaces"]} == {
        "Vl1": "down",
        "Vl2": "up",
        "Vl3": "up",
        "Vl999": "down",
    }
    assert (r.metrics["if_up"], r.metrics["if_down"]) == (2, 2)
