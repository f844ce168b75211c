"""A simulated speaker obeying the IOC's commands (SPEC §9), against a real loopback HTTP server:
the media fetched and checked, a busy device refusing a lower priority, a higher one taking over,
a lost answer said again, a bad fetch reported as `failed`."""

import asyncio
import hashlib
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from simulator.player import Player

AUDIO = b"ID3" + bytes(range(256)) * 8
SHA = hashlib.sha256(AUDIO).hexdigest()


class _Media(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/media/ok.mp3":
            self.send_response(200)
            self.send_header("Content-Length", str(len(AUDIO)))
            self.end_headers()
            self.wfile.write(AUDIO)
        else:
            self.send_error(404)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def media() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Media)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/media"
    finally:
        server.shutdown()
        server.server_close()


def play(delivery: str, url: str, priority: str = "normal", sha: str = SHA, duration_s: float = 1) -> bytes:
    cmd = {
        "type": "play",
        "id": delivery,
        "broadcast": delivery.split("-")[0],
        "priority": priority,
        "media_url": url,
        "sha256": sha,
        "duration_s": duration_s,
        "volume": 80,
    }
    return orjson.dumps(cmd)


def speaker() -> tuple[Player, list[dict[str, Any]]]:
    said: list[dict[str, Any]] = []
    # rate_scale 100: a 1 s clip plays for 10 ms; no random amplifier faults
    player = Player("speaker", random.Random(1), 100.0, lambda b: said.append(orjson.loads(b)), fault_p=0)
    return player, said


async def playing(said: list[dict[str, Any]], delivery: str) -> None:
    for _ in range(200):
        if statuses(said, delivery) == ["accepted", "playing"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{delivery} never played: {said}")


async def settle(player: Player) -> None:
    for _ in range(200):
        if not player.playing:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the player never finished")


def statuses(said: list[dict[str, Any]], delivery: str) -> list[str]:
    return [s["status"] for s in said if s["id"] == delivery]


def test_a_speaker_fetches_checks_and_plays_then_says_done(media: str) -> None:
    async def main() -> list[dict[str, Any]]:
        player, said = speaker()
        player.on_cmd(play("7-1", f"{media}/ok.mp3"))
        await settle(player)
        return said

    said = asyncio.run(main())
    assert statuses(said, "7-1") == ["accepted", "playing", "done"]


def test_media_that_is_not_the_commands_or_cannot_be_fetched_is_failed_with_its_reason(media: str) -> None:
    async def main() -> list[dict[str, Any]]:
        player, said = speaker()
        player.on_cmd(play("7-1", f"{media}/ok.mp3", sha="0" * 64))
        await settle(player)
        player.on_cmd(play("8-1", f"{media}/missing.mp3"))
        await settle(player)
        player.on_cmd(play("9-1", "http://127.0.0.1:1/nobody-listens.mp3"))
        await settle(player)
        return said

    said = asyncio.run(main())
    for delivery in ("7-1", "8-1", "9-1"):
        assert statuses(said, delivery) == ["accepted", "failed"], said
    reasons = {s["id"]: s.get("reason", "") for s in said if s["status"] == "failed"}
    assert reasons["7-1"] == "fetch error: the media's sha256 is not the command's"
    assert reasons["8-1"].startswith("fetch error:") and "404" in reasons["8-1"]
    assert reasons["9-1"].startswith("fetch error:")


def test_a_busy_speaker_refuses_the_same_priority_and_gives_way_to_an_emergency(media: str) -> None:
    async def main() -> list[dict[str, Any]]:
        player, said = speaker()
        player.on_cmd(play("7-1", f"{media}/ok.mp3", duration_s=60))  # 0.6 s at rate 100
        await playing(said, "7-1")
        player.on_cmd(play("8-1", f"{media}/ok.mp3", priority="normal"))
        player.on_cmd(play("9-1", f"{media}/ok.mp3", priority="emergency"))
        await settle(player)
        return said

    said = asyncio.run(main())
    (busy,) = [s for s in said if s["id"] == "8-1"]
    assert busy == {"id": "8-1", "status": "rejected", "reason": "busy: playing broadcast 7"}
    assert statuses(said, "7-1") == ["accepted", "playing"]  # ended by the emergency, never done
    assert statuses(said, "9-1") == ["accepted", "playing", "done"]


def test_a_command_sent_again_after_its_answer_is_answered_again_and_stop_ends_what_it_names(
    media: str,
) -> None:
    async def main() -> tuple[list[dict[str, Any]], bool]:
        player, said = speaker()
        player.on_cmd(play("7-1", f"{media}/ok.mp3"))
        await settle(player)
        player.on_cmd(play("7-1", f"{media}/ok.mp3"))  # the IOC lost our done: say it again
        player.on_cmd(play("8-1", f"{media}/ok.mp3", duration_s=600))
        await playing(said, "8-1")
        player.on_cmd(orjson.dumps({"type": "stop", "id": "other"}))  # not ours: plays on
        still = player.playing
        player.on_cmd(orjson.dumps({"type": "stop", "id": "8-1"}))
        for junk in (b"", b"not json", b'{"type": "play"}', b"[1, 2]"):
            player.on_cmd(junk)  # a command the device does not understand is logged, not fatal
        await asyncio.sleep(0.05)
        return said, still and not player.playing

    said, stopped = asyncio.run(main())
    assert statuses(said, "7-1") == ["accepted", "playing", "done", "done"]
    assert statuses(said, "8-1") == ["accepted", "playing"] and stopped
    assert len(said) == 6
