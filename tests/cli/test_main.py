"""`ioc` imports only the module of the command it runs, and still knows every command."""

import subprocess
import sys

import pytest

from cli.main import COMMANDS, command_of, parser


def _choices(p: object) -> set[str]:
    return set(p._subparsers._group_actions[0].choices)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_module_registers_the_command_it_is_named_for(name: str) -> None:
    assert _choices(parser(name)) == {name}


def test_without_a_known_command_the_parser_has_them_all() -> None:
    assert _choices(parser()) == set(COMMANDS) == _choices(parser("no-such-command"))


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["keys", "list"], "keys"),
        (["-v", "ingest"], "ingest"),
        (["--verbose", "up", "--demo"], "up"),
        (["--help"], None),
        ([], None),
    ],
)
def test_the_command_is_the_first_word_that_is_not_an_option(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


def test_a_short_command_imports_no_other_command_module() -> None:
    code = (
        "import sys\n"
        "from cli.main import main\n"
        "try:\n"
        "    main(['keys', '--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print(sorted(m for m in sys.modules if m.startswith('cli.cmd_')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "revoke" in r.stdout  # the keys help, printed
    assert r.stdout.strip().splitlines()[-1] == "['cli.cmd_keys']"


def test_an_unknown_command_is_refused_with_the_list_of_commands() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "cli.main", "kyes"], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 2 and "invalid choice: 'kyes'" in r.stderr and "mqtt-auth" in r.stderr


def test_no_process_logs_the_urls_httpx_requests_even_verbose() -> None:
    """HTTP probes, pushes and notifications go through httpx, which logs each URL (query strings
    with keys and tokens included) at INFO; `ioc`'s logging keeps those lines out."""
    code = (
        "import http.server, threading, httpx\n"
        "from cli import context\n"
        "context.setup_logging(verbose=True)\n"
        "class Quiet(http.server.BaseHTTPRequestHandler):\n"
        "    def log_message(self, *a): pass\n"
        "srv = http.server.HTTPServer(('127.0.0.1', 0), Quiet)\n"
        "threading.Thread(target=srv.serve_forever, daemon=True).start()\n"
        "r = httpx.get(f'http://127.0.0.1:{srv.server_port}/status?token=s3cret-token')\n"
        "print(r.status_code)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert r.stdout.strip() == "501"  # the request was made (the bare handler answers 501)
    assert "s3cret-token" not in r.stderr
