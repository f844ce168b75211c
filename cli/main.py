"""The `ioc` command: every subcommand is named here, with the module that adds its parser with
`register()`. Only the module of the command about to run is imported: each one imports what it runs
(the gateway's web app, the alert channels, the simulator), and all of them take longer to import
than a short command takes to run (`ioc keys list` from a script, every child `ioc up` starts)."""

import argparse
import importlib
import sys

from services.errors import ConfigError, IocError

COMMANDS = {
    "alerts": "cli.cmd_alerts",
    "cameras": "cli.cmd_cameras",
    "devices": "cli.cmd_devices",
    "gateway": "cli.cmd_gateway",
    "ingest": "cli.cmd_ingest",
    "keys": "cli.cmd_keys",
    "migrate": "cli.cmd_migrate",
    "mqtt-auth": "cli.cmd_mqtt_auth",
    "simulate": "cli.cmd_simulate",
    "up": "cli.cmd_up",
    "users": "cli.cmd_users",
}


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `command` alone when it is one (the others stay unimported)."""
    p = argparse.ArgumentParser(prog="ioc", description="Commune IOC — operations center of a smart commune")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in [command] if command in COMMANDS else COMMANDS:
        importlib.import_module(COMMANDS[name]).register(sub)
    return p


def command_of(argv: list[str]) -> str | None:
    """The command `argv` names: its first word that is not an option (`ioc`'s own options take no
    value), or None (`ioc --help`, no command)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(command_of(argv)).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"ioc: {err.message}", file=sys.stderr)
        return 2
    except IocError as err:
        print(f"ioc: {err.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
