"""The `ioc` command: every subcommand module is named here and adds its parsers with `register()`."""

import argparse
import sys

from cli import (
    cmd_alerts,
    cmd_cameras,
    cmd_devices,
    cmd_gateway,
    cmd_ingest,
    cmd_keys,
    cmd_migrate,
    cmd_mqtt_auth,
    cmd_simulate,
    cmd_up,
    cmd_users,
)
from services.errors import ConfigError, IocError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ioc", description="Commune IOC — operations center of a smart commune")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = (cmd_alerts, cmd_cameras, cmd_devices, cmd_gateway, cmd_ingest, cmd_keys, cmd_migrate)
    for module in (*commands, cmd_mqtt_auth, cmd_simulate, cmd_up, cmd_users):
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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
