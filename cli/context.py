"""What every `ioc` command resolves first: settings, and the embedded servers' URLs."""

import argparse
import gc
import json
import logging
import os
from pathlib import Path
from typing import Any, TypeVar, overload

from services.errors import ConfigError
from services.settings import IocSettings, load
from services.vault import Vault

T = TypeVar("T", bound=IocSettings)


def data_dir_arg(value: str | None) -> None:
    """`--data-dir` wins over IOC_DATA_DIR."""
    if value:
        os.environ["IOC_DATA_DIR"] = value


@overload
def settings(*, need_db: bool = True, need_mqtt: bool = False) -> IocSettings: ...


@overload
def settings(cls: type[T], *, need_db: bool = True, need_mqtt: bool = False) -> T: ...


def settings(cls: type[Any] = IocSettings, *, need_db: bool = True, need_mqtt: bool = False) -> Any:
    """Settings with URLs of the embedded servers filled in when unset and `ioc up` runs them."""
    s = load(cls)
    d = s.data_dir
    if s.database_url is None and (d / "pg.json").exists():
        meta = json.loads((d / "pg.json").read_text())
        auth = f"ioc:{meta['password']}@" if meta.get("password") else "ioc@"
        s.database_url = f"postgresql://{auth}127.0.0.1:{meta['port']}/ioc"
    # `ioc up` runs its broker in DIR/mqtt; DIR/mosquitto.json is kept for older layouts.
    mqtt_meta = next((f for f in (d / "mqtt" / "mosquitto.json", d / "mosquitto.json") if f.exists()), None)
    if s.mqtt_url is None and mqtt_meta is not None:
        meta = json.loads(mqtt_meta.read_text())
        s.mqtt_url = f"mqtt://{_ioc_mqtt_auth(d)}127.0.0.1:{meta['port']}"
    elif s.mqtt_url and "://ioc@" in s.mqtt_url and (d / "mqtt" / "ioc.password").exists():
        # Production (deploy/): IOC_MQTT_URL names the `ioc` account without its password, which
        # `ioc mqtt-auth` keeps in DATA_DIR/mqtt/ioc.password, so rotating it needs no config edit.
        s.mqtt_url = s.mqtt_url.replace("://ioc@", f"://{_ioc_mqtt_auth(d)}", 1)
    if s.secret_key is None and (d / "secret_key").exists():
        from pydantic import SecretStr

        s.secret_key = SecretStr((d / "secret_key").read_text().strip())
    if need_db and not s.database_url:
        raise ConfigError(
            f"IOC_DATABASE_URL is not set and no embedded database runs in {d} (start `ioc up`)"
        )
    if need_mqtt and not s.mqtt_url:
        raise ConfigError(f"IOC_MQTT_URL is not set and no embedded broker runs in {d} (start `ioc up`)")
    return s


def _ioc_mqtt_auth(d: Path) -> str:
    f = d / "mqtt" / "ioc.password"
    return f"ioc:{f.read_text().strip()}@" if f.exists() else ""


def vault(s: IocSettings, *, required: bool = False) -> Vault | None:
    if s.secret_key is None:
        if required:
            raise ConfigError("IOC_SECRET_KEY is not set")
        return None
    return Vault(s.secret_key.get_secret_value())


def settle_heap() -> None:
    """Hide what a long-running process built at start from the garbage collector.

    Modules, the app, its routes and schemas live as long as the process; without this every
    full collection walks them again (in the gateway that was a pause of 100-300 ms every few
    seconds under load, felt by every live client at once).
    """
    gc.collect()
    gc.freeze()


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request with its whole URL at INFO (httpcore its traffic at DEBUG): a line per
    # HTTP probe, push or notification, tens of thousands a day, and a query string's key or token in
    # the log. Their failures reach the log through the code that made the request.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def common() -> "argparse.ArgumentParser":
    """Options every leaf subcommand takes (give as `parents=[context.common()]`)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data-dir", help="embedded data dir (default .ioc, or IOC_DATA_DIR)")
    return p
