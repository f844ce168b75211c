"""The `ioc` command. Each `cli/cmd_*.py` module adds its subcommands with `register()`."""

import argparse
import importlib
import pkgutil
import sys

import cli
from services.errors import ConfigError, IocError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ioc", description="Commune IOC — operations center of a smart commune")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(cli.__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"cli.{info.name}").register(sub)
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
