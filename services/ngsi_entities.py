"""Device entities of the NGSI-LD view (ETSI GS CIM 009 subset): Smart Data Models `Device` in the
keyValues and normalized representations, and the `q` subset the view understands.

Shared by the gateway's entity routes and the subscription producer of `ioc alerts`, so a
notification carries exactly what `GET /ngsi-ld/v1/entities` shows.
"""

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
SDM = "https://smartdatamodels.org/"
IOC = "https://commune-ioc.org/ns/"
URN_RE = re.compile(r"urn:ngsi-ld:Device:([a-z0-9][a-z0-9-]{0,62}):([a-z0-9][a-z0-9-]{0,62})")
# Smart Data Models categories and controlled properties (their enumerations) for our kinds.
CATEGORY = {
    "camera": ["sensor", "multimedia"],
    "speaker": ["actuator", "multimedia"],
    "eboard": ["multimedia"],
    "wifi": ["network"],
    "gateway": ["network"],
}
CONTROLLED = {
    "camera": ["motion"],
    "speaker": ["noiseLevel"],
    "eboard": ["light"],
    "wifi": ["occupancy"],
    "gateway": ["power"],
}
# Status fields that map onto Smart Data Models Device attributes.
FIRMWARE, BATTERY, RSSI = "firmware", "battery_pct", "rssi_dbm"
CONTEXT = {
    "@context": [
        {
            "Device": f"{SDM}dataModel.Device/Device",
            "category": f"{SDM}dataModel.Device/category",
            "controlledProperty": f"{SDM}dataModel.Device/controlledProperty",
            "deviceState": f"{SDM}dataModel.Device/deviceState",
            "dateLastValueReported": f"{SDM}dataModel.Device/dateLastValueReported",
            "firmwareVersion": f"{SDM}dataModel.Device/firmwareVersion",
            "batteryLevel": f"{SDM}dataModel.Device/batteryLevel",
            "rssi": f"{SDM}dataModel.Device/rssi",
            "value": f"{SDM}dataModel.Device/value",
            "name": "https://schema.org/name",
            "commune": f"{IOC}commune",
            "village": f"{IOC}village",
            "kind": f"{IOC}kind",
            "refParent": {"@id": f"{IOC}refParent", "@type": "@id"},
        },
        CORE_CONTEXT,
    ]
}
ATTRS = (
    "name",
    "category",
    "controlledProperty",
    "deviceState",
    "dateLastValueReported",
    "location",
    "commune",
    "village",
    "kind",
    "refParent",
    "firmwareVersion",
    "batteryLevel",
    "rssi",
    "value",
)
RESERVED = {*ATTRS, "id", "type", "scope", "observedAt", "createdAt", "modifiedAt", "@context"}
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
CORE_VOCAB = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
DEVICE_TYPES = ("Device", f"{SDM}dataModel.Device/Device")
_LOCAL: dict[str, Any] = CONTEXT["@context"][0]  # type: ignore[index, assignment]
# Expanded attribute names (IRIs of the @context, the core context's location, the default
# vocabulary of the status fields) to the short terms our entities use.
TERMS: dict[str, str] = {
    **{(v if isinstance(v, str) else v["@id"]): k for k, v in _LOCAL.items()},
    f"{CORE_VOCAB}location": "location",
}


def compact(name: str) -> str:
    """The short term of an attribute or type name given expanded or short."""
    name = name.strip()
    if name in TERMS:
        return TERMS[name]
    return name.removeprefix(DEFAULT_VOCAB)


def expand(term: str) -> str:
    """The IRI a short term stands for under our @context (CIM 009 §5.5.7)."""
    v = _LOCAL.get(term)
    if v is not None:
        return v if isinstance(v, str) else str(v["@id"])
    if term == "location":
        return f"{CORE_VOCAB}location"
    return DEFAULT_VOCAB + term


def attribute_type(term: str) -> str:
    return {"location": "GeoProperty", "refParent": "Relationship"}.get(term, "Property")


def urn(commune: str, device_id: str) -> str:
    return f"urn:ngsi-ld:Device:{commune}:{device_id}"


def iso(t: datetime | None) -> str | None:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z") if t else None


def scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sorted(metrics.items()) if isinstance(v, bool | int | float | str)}


def key_values(r: dict[str, Any]) -> dict[str, Any]:
    """The entity in the simplified (keyValues) representation: Smart Data Models `Device` as is."""
    m = r["metrics"]
    e: dict[str, Any] = {
        "id": urn(r["commune"], r["device_id"]),
        "type": "Device",
        "category": CATEGORY[r["kind"]],
        "controlledProperty": CONTROLLED[r["kind"]] + (["temperature"] if "temperature_c" in m else []),
        "deviceState": r["state"],
        "commune": r["commune"],
        "kind": r["kind"],
    }
    if r["name"]:
        e["name"] = r["name"]
    if r["village"]:
        e["village"] = r["village"]
    if r["last_seen"]:
        e["dateLastValueReported"] = iso(r["last_seen"])
    if r["lat"] is not None and r["lon"] is not None:
        e["location"] = {"type": "Point", "coordinates": [r["lon"], r["lat"]]}
    if r["parent"]:
        e["refParent"] = f"urn:ngsi-ld:Device:{r['commune']}:{r['parent']}"
    if isinstance(m.get(FIRMWARE), str):
        e["firmwareVersion"] = m[FIRMWARE]
    if (
        isinstance(m.get(BATTERY), int | float)
        and not isinstance(m.get(BATTERY), bool)
        and 0 <= m[BATTERY] <= 100
    ):
        e["batteryLevel"] = round(m[BATTERY] / 100, 4)
    if isinstance(m.get(RSSI), int | float) and not isinstance(m.get(RSSI), bool):
        e["rssi"] = m[RSSI]
    values = scalars(m)
    for k, v in values.items():
        # Each measured value as its own attribute too (names of ours and NGSI-LD's win).
        if k not in e and k not in RESERVED and NAME_RE.fullmatch(k):
            e[k] = v
    if values:
        # Smart Data Models' `value`: the last measurements, URL-encoded `name=value;...`.
        e["value"] = quote(";".join(f"{k}={_text(v)}" for k, v in values.items()), safe="")
    return e


def _text(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def normalized(r: dict[str, Any]) -> dict[str, Any]:
    """The entity in the normalized representation: each attribute a Property, GeoProperty or Relationship."""
    e: dict[str, Any] = {}
    for k, v in key_values(r).items():
        if k in ("id", "type"):
            e[k] = v
        elif k == "location":
            e[k] = {"type": "GeoProperty", "value": v}
        elif k == "refParent":
            e[k] = {"type": "Relationship", "object": v}
        elif k == "dateLastValueReported":
            e[k] = {"type": "Property", "value": {"@type": "DateTime", "@value": v}}
        elif k == "deviceState" and r["since"]:
            e[k] = {"type": "Property", "value": v, "observedAt": iso(r["since"])}
        elif k not in RESERVED or k in ("value", "batteryLevel", "rssi"):
            e[k] = {"type": "Property", "value": v}
            if r["metrics_ts"]:
                e[k]["observedAt"] = iso(r["metrics_ts"])
        else:
            e[k] = {"type": "Property", "value": v}
    return e


def pick(e: dict[str, Any], attrs: list[str] | None) -> dict[str, Any]:
    return e if attrs is None else {k: v for k, v in e.items() if k in ("id", "type") or k in attrs}


def sys_attrs(e: dict[str, Any], r: dict[str, Any], normalized_attrs: bool) -> dict[str, Any]:
    """`options=sysAttrs` (CIM 009 §4.8): createdAt and modifiedAt of the entity, and of each
    attribute in the normalized representation (the registry row's and the last change's times)."""
    created, modified = iso(r.get("created_at")), iso(r.get("modified_at") or r.get("created_at"))
    out = dict(e)
    if normalized_attrs:
        for k, v in out.items():
            if isinstance(v, dict) and k not in ("id", "type"):
                out[k] = {**v, "createdAt": created, "modifiedAt": modified}
    out["createdAt"], out["modifiedAt"] = created, modified
    return out
