"""Maintenance windows on WS /ws/live: created and deleted through the API, seen by every client
of the window's commune and by no one else."""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.dashboard.serve import gateway

Headers = Callable[..., dict[str, str]]


@pytest.fixture
def gw(seeded: str) -> Iterator[str]:
    with gateway(seeded) as base:
        yield base


def recv(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


@contextmanager
def live(base: str, headers: dict[str, str]) -> Iterator[ClientConnection]:
    with connect(base.replace("http://", "ws://") + "/ws/live", additional_headers=headers) as ws:
        assert recv(ws)["type"] == "snapshot"
        yield ws


def same_row(window: dict[str, Any], row: dict[str, Any]) -> bool:
    """The feed's window reads like the GET row: same fields, same values (times as instants)."""
    if set(window) != set(row):
        return False
    for k in row:
        if k.endswith("_at") and row[k] is not None:
            if datetime.fromisoformat(window[k]) != datetime.fromisoformat(row[k]):
                return False
        elif window[k] != row[k]:
            return False
    return True


def test_created_and_deleted_windows_reach_clients_of_their_commune_only(gw: str, as_user: Headers) -> None:
    with (
        httpx.Client(base_url=gw, headers=as_user("admin")) as api,
        live(gw, as_user("admin")) as everyone,
        live(gw, as_user("op-tg")) as thoai_giang_only,
    ):
        # Long Thạnh first: the Thoại Giang operator's next message must be the window after it.
        r = api.post(
            "/api/v1/maintenance",
            json={
                "commune": "long-thanh",
                "village": "xom-1",
                "kind": "wifi",
                "starts_at": "2030-01-02T01:00:00Z",
                "ends_at": "2030-01-02T03:00:00Z",
                "reason": "Thay bộ phát Wi-Fi",
            },
        )
        assert r.status_code == 201, r.text
        far = r.json()
        r = api.post(
            "/api/v1/maintenance",
            json={
                "device_id": "spk-tay-binh-1",
                "starts_at": "2020-01-01T00:00:00Z",
                "ends_at": "2040-01-01T00:00:00Z",
                "reason": "Sửa loa",
                "rrule": None,
            },
        )
        assert r.status_code == 201, r.text
        near = r.json()

        got = [recv(everyone), recv(everyone)]
        assert [(m["type"], m["op"], m["commune"], m["window"]["id"]) for m in got] == [
            ("maintenance", "created", "long-thanh", far["id"]),
            ("maintenance", "created", "thoai-giang", near["id"]),
        ]
        rows = {w["id"]: w for w in api.get("/api/v1/maintenance").json()["items"]}
        assert same_row(got[0]["window"], rows[far["id"]])
        assert same_row(got[1]["window"], rows[near["id"]])
        assert got[1]["window"]["active"] is True and got[1]["window"]["created_by"] == "admin"
        assert got[1]["seq"] == got[0]["seq"] + 1

        m = recv(thoai_giang_only)
        assert (m["op"], m["window"]["id"], m["seq"]) == ("created", near["id"], got[1]["seq"])

        assert api.delete(f"/api/v1/maintenance/{far['id']}").status_code == 204
        assert api.delete(f"/api/v1/maintenance/{near['id']}").status_code == 204
        got = [recv(everyone), recv(everyone)]
        assert [(m["op"], m["commune"], m["window"]["id"]) for m in got] == [
            ("deleted", "long-thanh", far["id"]),
            ("deleted", "thoai-giang", near["id"]),
        ]
        assert got[1]["window"]["active"] is False and got[1]["window"]["reason"] == "Sửa loa"
        m = recv(thoai_giang_only)
        assert (m["op"], m["window"]["id"]) == ("deleted", near["id"])


def test_a_refused_window_publishes_nothing(gw: str, as_user: Headers) -> None:
    with (
        httpx.Client(base_url=gw, headers=as_user("admin")) as api,
        live(gw, as_user("admin")) as ws,
    ):
        bad = api.post(
            "/api/v1/maintenance",
            json={
                "device_id": "spk-xom-1",
                "starts_at": "2030-01-02T03:00:00Z",
                "ends_at": "2030-01-02T01:00:00Z",
            },
        )
        assert bad.status_code == 400
        assert api.delete("/api/v1/maintenance/999999").status_code == 404
        ok = api.post(
            "/api/v1/maintenance",
            json={
                "device_id": "spk-xom-1",
                "starts_at": "2030-01-02T01:00:00Z",
                "ends_at": "2030-01-02T03:00:00Z",
            },
        ).json()
        # The first message is the accepted window: nothing was announced for the refused calls.
        m = recv(ws)
        assert (m["op"], m["window"]["id"], m["window"]["device_id"]) == ("created", ok["id"], "spk-xom-1")
