"""The device registry in the database: import (upsert), list, retire, and the snapshot
that running processes reload when `registry_version` moves."""

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.errors import InvalidInput, NotFound
from services.models import Device, Onvif, Registry
from services.sources import from_json, to_json
from services.sources import profiles as source_profiles
from services.sources import store as source_store
from services.vault import Vault


@dataclass(frozen=True)
class ImportResult:
    communes: int
    villages: int
    devices_added: int
    devices_updated: int


def _check_against_db(conn: psycopg.Connection, reg: Registry) -> None:
    errors: list[str] = []
    ids = [d.id for d in reg.devices]
    existing = {
        r[0]: r[1] for r in conn.execute("SELECT id, commune_id FROM devices WHERE id = ANY(%s)", (ids,))
    }
    for d in reg.devices:
        if d.id in existing and existing[d.id] != d.commune_id:
            errors.append(f"device {d.id} already belongs to commune {existing[d.id]}; device ids are unique")
    villages = {(v.commune_id, v.id) for v in reg.villages}
    villages |= {(r[0], r[1]) for r in conn.execute("SELECT commune_id, id FROM villages")}
    for d in reg.devices:
        if d.village_id and (d.commune_id, d.village_id) not in villages:
            errors.append(f"device {d.id}: village {d.village_id} is not defined in commune {d.commune_id}")
    parents = dict(conn.execute("SELECT id, parent_id FROM devices WHERE retired_at IS NULL").fetchall())
    parents.update({d.id: d.parent_id for d in reg.devices})
    for d in reg.devices:
        if d.parent_id and d.parent_id not in parents:
            errors.append(f"device {d.id}: parent {d.parent_id} is not a known device")
            continue
        seen, cur = {d.id}, d.parent_id
        while cur:
            if cur in seen:
                errors.append(f"device {d.id}: parent chain loops back through {cur}")
                break
            seen.add(cur)
            cur = parents.get(cur)
    errors += _check_sources(conn, reg)
    if errors:
        raise InvalidInput(
            f"{len(errors)} registry error(s); nothing imported:\n" + "\n".join(errors), detail=errors
        )


def _check_sources(conn: psycopg.Connection, reg: Registry) -> list[str]:
    """Profiles and brokers a source names exist (file, database, IOC_PROFILES_DIR, shipped), and
    the profile maps only fields of the device's kind; errors carry the device's file line."""
    with_source = [d for d in reg.devices if d.source is not None]
    if not with_source:
        return []
    errors: list[str] = []
    try:
        base = source_profiles.catalogue(source_profiles.env_dir())
    except source_profiles.ProfileError as err:
        return list(err.errors)
    profiles = source_profiles.effective(base, source_store.registry_profiles(conn))
    profiles.update(reg.profiles)
    brokers = set(source_store.brokers(conn)) | {b.id for b in reg.brokers}

    def where(d: Device) -> str:
        line = reg.lines.get(d.id)
        return f"{reg.where}:{line}" if line else reg.where

    for d in with_source:
        name = getattr(d.source, "profile", None)
        if name is not None:
            profile = profiles.get(name)
            if profile is None:
                errors.append(f"{where(d)}: unknown profile {name!r} (known: {', '.join(sorted(profiles))})")
            elif d.source is not None and d.source.kind == "http" and profile.http is None:
                with_http = ", ".join(sorted(n for n, p in profiles.items() if p.http is not None)) or "none"
                errors.append(
                    f"{where(d)}: profile {name!r} has no http: section to read a vendor's list (profiles with one: {with_http})"
                )
        broker = getattr(d.source, "broker", None)
        if broker is not None and broker not in brokers:
            known = ", ".join(sorted(brokers)) or "none"
            errors.append(f"{where(d)}: unknown broker {broker!r} (known: {known}); define it under brokers:")
    return errors


def import_registry(
    conn: psycopg.Connection, reg: Registry, vault: Vault | None, *, names_authoritative: bool = True
) -> ImportResult:
    """Upsert communes, villages and devices in one transaction; history is never deleted.

    CSV files carry no commune or village names: with `names_authoritative=False` an
    existing name is kept and a new one defaults to the id.
    """
    if reg.passwords and vault is None:
        raise InvalidInput("camera passwords need IOC_SECRET_KEY to be stored encrypted")
    if (reg.broker_passwords or reg.source_secrets) and vault is None:
        raise InvalidInput(
            "SNMP communities and keys, broker and HTTP passwords need IOC_SECRET_KEY to be stored encrypted"
        )
    with conn.transaction():
        _check_against_db(conn, reg)
        source_store.upsert_brokers(conn, reg.brokers, reg.broker_passwords, vault)
        source_store.upsert_profiles(conn, reg.profiles.values())
        for c in reg.communes:
            conn.execute(
                "INSERT INTO communes (id, name, district, province, village_term) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET"
                " name = CASE WHEN %s THEN EXCLUDED.name ELSE communes.name END,"
                " village_term = CASE WHEN %s THEN EXCLUDED.village_term ELSE communes.village_term END,"
                " district = COALESCE(EXCLUDED.district, communes.district),"
                " province = COALESCE(EXCLUDED.province, communes.province), updated_at = now()",
                (
                    c.id,
                    c.name,
                    c.district,
                    c.province,
                    c.village_term,
                    names_authoritative,
                    names_authoritative,
                ),
            )
        for v in reg.villages:
            # A YAML file states a village in full (no former_commune clears it); a CSV row only adds one.
            conn.execute(
                "INSERT INTO villages (commune_id, id, name, former_commune) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (commune_id, id) DO UPDATE SET"
                " name = CASE WHEN %s THEN EXCLUDED.name ELSE villages.name END,"
                " former_commune = CASE WHEN %s THEN EXCLUDED.former_commune"
                " ELSE COALESCE(EXCLUDED.former_commune, villages.former_commune) END, updated_at = now()",
                (v.commune_id, v.id, v.name, v.former_commune, names_authoritative, names_authoritative),
            )
        added = updated = 0
        for d in reg.devices:
            onvif = None
            if d.onvif:
                onvif = Jsonb(
                    {
                        "host": d.onvif.host,
                        "port": d.onvif.port,
                        "username": d.onvif.username,
                        "path": d.onvif.path,
                        "poll_s": d.onvif.poll_s,
                    }
                )
            secret = vault.encrypt(reg.passwords[d.id]) if vault and d.id in reg.passwords else None
            source = Jsonb(to_json(d.source)) if d.source is not None else None
            source_secret = (
                source_store.encrypt_secrets(vault, reg.source_secrets[d.id])
                if vault and d.id in reg.source_secrets
                else None
            )
            row = conn.execute(
                "INSERT INTO devices (id, commune_id, village_id, kind, name, lat, lon, parent_id,"
                " heartbeat_s, onvif, onvif_password, source, source_secret)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT (id) DO UPDATE SET village_id = EXCLUDED.village_id, kind = EXCLUDED.kind,"
                " name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon,"
                " parent_id = EXCLUDED.parent_id, heartbeat_s = EXCLUDED.heartbeat_s,"
                " onvif = EXCLUDED.onvif,"
                " onvif_password = COALESCE(EXCLUDED.onvif_password, devices.onvif_password),"
                # every import states the source in full, secrets included (they are required)
                " source = EXCLUDED.source, source_secret = EXCLUDED.source_secret,"
                " retired_at = NULL, updated_at = now() "
                "RETURNING (xmax = 0) AS inserted",
                (
                    d.id,
                    d.commune_id,
                    d.village_id,
                    d.kind,
                    d.name,
                    d.lat,
                    d.lon,
                    d.parent_id,
                    d.heartbeat_s,
                    onvif,
                    secret,
                    source,
                    source_secret,
                ),
            ).fetchone()
            if row and row[0]:
                added += 1
            else:
                updated += 1
            conn.execute("INSERT INTO device_state (device_id) VALUES (%s) ON CONFLICT DO NOTHING", (d.id,))
        bump_version(conn)
    return ImportResult(len(reg.communes), len(reg.villages), added, updated)


def bump_version(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE registry_version SET version = version + 1")


def version(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT version FROM registry_version").fetchone()
    return int(row[0]) if row else 0


def retire(conn: psycopg.Connection, device_id: str) -> None:
    """Retire a device: its history stays; it leaves state, alerts and sharing."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE devices SET retired_at = now(), updated_at = now() "
            "WHERE id = %s AND retired_at IS NULL RETURNING id",
            (device_id,),
        ).fetchone()
        if row is None:
            exists = conn.execute("SELECT 1 FROM devices WHERE id = %s", (device_id,)).fetchone()
            raise NotFound(f"device {device_id} is already retired" if exists else f"no device {device_id}")
        conn.execute("DELETE FROM device_state WHERE device_id = %s", (device_id,))
        bump_version(conn)


def _device(r: dict[str, Any]) -> Device:
    o = r["onvif"]
    onvif = (
        Onvif(
            o["host"],
            o.get("port", 80),
            o.get("username"),
            o.get("path", "/onvif/device_service"),
            o.get("poll_s", 30),
        )
        if o
        else None
    )
    return Device(
        r["id"],
        r["commune_id"],
        r["kind"],
        r["village_id"],
        r["name"],
        r["lat"],
        r["lon"],
        r["parent_id"],
        r["heartbeat_s"],
        onvif,
        r["retired_at"],
        from_json(r["source"]) if r["source"] else None,
    )


_COLUMNS = (
    "id, commune_id, kind, village_id, name, lat, lon, parent_id, heartbeat_s, onvif, retired_at, source"
)


def devices(conn: psycopg.Connection, *, include_retired: bool = False) -> list[Device]:
    where = "" if include_retired else "WHERE retired_at IS NULL"
    with conn.cursor(row_factory=dict_row) as cur:
        return [_device(r) for r in cur.execute(f"SELECT {_COLUMNS} FROM devices {where} ORDER BY id")]  # noqa: S608


def camera_password(conn: psycopg.Connection, vault: Vault, device_id: str) -> str | None:
    row = conn.execute("SELECT onvif_password FROM devices WHERE id = %s", (device_id,)).fetchone()
    return vault.decrypt(row[0]) if row and row[0] else None
