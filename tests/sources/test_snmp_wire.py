"""The v1/v2c codec (ingest/sources/snmp_wire.py): requests net-snmp's snmpd answers are tested in
test_snmp.py; here a response built by pyasn1 (pysnmp's own message layer) decodes to the values it
carries, and arbitrary or damaged datagrams never raise anything but a decoding error."""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import univ
from pysnmp.proto import api, rfc1902, rfc1905

from ingest.sources import snmp_wire as wire

V2 = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
VALUES = [
    ((1, 3, 6, 1, 2, 1, 1, 3, 0), rfc1902.TimeTicks(4294967295), 4294967295),
    (
        (1, 3, 6, 1, 2, 1, 1, 1, 0),
        rfc1902.OctetString("RouterOS 7.15 Tiếng Việt".encode()),
        "RouterOS 7.15 Tiếng Việt",
    ),
    ((1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 2), rfc1902.Integer32(-5), -5),
    ((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 1), rfc1902.Counter64(2**64 - 1), 2**64 - 1),
    ((1, 3, 6, 1, 2, 1, 2, 2, 1, 10, 1), rfc1902.Counter32(2**32 - 1), 2**32 - 1),
    ((1, 3, 6, 1, 4, 1, 41112, 1, 6, 1, 2, 1, 8, 300), rfc1902.Gauge32(7), 7),
    ((1, 3, 6, 1, 2, 1, 4, 20, 1, 1), rfc1902.IpAddress("192.0.2.10"), "192.0.2.10"),
    ((1, 3, 6, 1, 2, 1, 1, 2, 0), univ.ObjectIdentifier((1, 3, 6, 1, 4, 1, 14988, 1)), "1.3.6.1.4.1.14988.1"),
    ((1, 3, 6, 1, 2, 1, 1, 9, 0), rfc1905.noSuchInstance, wire.NO_SUCH_INSTANCE),
    ((1, 3, 6, 1, 2, 1, 1, 10, 0), rfc1905.endOfMibView, wire.END_OF_MIB_VIEW),
]


def response(request_id: int = 4242, status: int = 0, index: int = 0) -> bytes:
    pdu = V2.ResponsePDU()
    V2.apiPDU.set_defaults(pdu)
    V2.apiPDU.set_request_id(pdu, request_id)
    V2.apiPDU.set_error_status(pdu, status)
    V2.apiPDU.set_error_index(pdu, index)
    V2.apiPDU.set_varbinds(pdu, [(univ.ObjectIdentifier(o), v) for o, v, _ in VALUES])
    msg = V2.Message()
    V2.apiMessage.set_defaults(msg)
    V2.apiMessage.set_community(msg, "cộng-đồng".encode())
    V2.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


def test_a_response_encoded_by_pyasn1_decodes_to_its_values() -> None:
    r = wire.decode(response())
    assert r.request_id == 4242 and r.error_status is None and r.community == "cộng-đồng".encode()
    assert r.varbinds == [(o, want) for o, _, want in VALUES]
    assert wire.decode(response(7, 2, 3)).error_status == "noSuchName"
    assert wire.decode(response(7, 16, 1)).error_status == "authorizationError"


def test_a_request_is_what_pyasn1_reads_as_a_getbulk() -> None:
    oids = [(1, 3, 6, 1, 2, 1, 1, 3), (1, 3, 6, 1, 4, 1, 41112, 1, 6, 1, 2, 1, 8, 2**31)]
    raw = wire.request("2c", b"public", wire.GETBULK, 2**31 - 1, oids, 1, 10)
    msg, rest = decoder.decode(raw, asn1Spec=V2.Message())
    assert rest == b""
    pdu = V2.apiMessage.get_pdu(msg)
    assert pdu.isSameTypeWith(V2.GetBulkRequestPDU())
    assert int(V2.apiBulkPDU.get_request_id(pdu)) == 2**31 - 1
    assert (
        int(V2.apiBulkPDU.get_non_repeaters(pdu)) == 1 and int(V2.apiBulkPDU.get_max_repetitions(pdu)) == 10
    )
    assert [tuple(o) for o, _ in V2.apiPDU.get_varbinds(pdu)] == oids
    assert bytes(V2.apiMessage.get_community(msg)) == b"public"


def _only_decoding_errors(data: bytes) -> None:
    try:
        wire.decode(data)
    except (wire.Malformed, ValueError, IndexError, struct.error):
        pass


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_datagrams_never_raise_anything_but_a_decoding_error(data: bytes) -> None:
    _only_decoding_errors(data)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_damaged_responses_never_raise_anything_but_a_decoding_error(data: st.DataObject) -> None:
    good = bytearray(response())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(good) - 1))
        good[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(good)))
    _only_decoding_errors(bytes(good[:cut]))
