"""`ioc mqtt-auth`: Mosquitto password and ACL files, and device credentials."""

import argparse
from pathlib import Path

from cli import context
from services import mqtt_accounts
from services.db import connect
from services.settings import IocSettings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "mqtt-auth",
        parents=[context.common()],
        help="write Mosquitto passwd/acl and device credentials",
        description="Write Mosquitto's `passwd` and `acl` files and `credentials.csv` "
        "(device_id,username,password) to DIR. Usernames are device ids; each device may "
        "publish only its own ioc/v1/{commune}/{kind}/{device}/status, availability, event and "
        "cmd_result, and read only its own .../cmd. "
        "The IOC's own account `ioc` reads every device topic, publishes devices' cmd topics and "
        "uses ioc/internal/#. The shipped broker configs set use_username_as_clientid on the "
        "devices' listener: a device's client id is its id, so no device can take over an IOC "
        "process's session (their ids begin with ioc-, which device ids may not). The ioc "
        "account's password is also written, mode 0600, "
        "to DATA_DIR/mqtt/ioc.password. Passwords are created once and kept hashed: "
        "credentials.csv lists only those created by this run. Reload Mosquitto afterwards "
        "(SIGHUP, or `systemctl reload mosquitto`).",
    )
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="directory for passwd, acl, credentials.csv"
    )
    p.add_argument(
        "--rotate",
        action="append",
        default=[],
        metavar="ID",
        help="give this device (or `ioc`) a new password; may be repeated",
    )
    p.add_argument(
        "--ioc-password-file",
        type=Path,
        metavar="FILE",
        help="where the ioc account's password is kept (default DATA_DIR/mqtt/ioc.password)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    context.data_dir_arg(args.data_dir)
    s: IocSettings = context.settings()
    assert s.database_url
    pw_file = args.ioc_password_file or s.data_dir / "mqtt" / "ioc.password"
    with connect(s.database_url) as conn:
        r = mqtt_accounts.provision(conn, args.out, pw_file, args.rotate)
    print(f"wrote {r.out_dir / 'passwd'} ({r.accounts} accounts) and {r.out_dir / 'acl'}")
    print(f"wrote {r.out_dir / 'credentials.csv'}: {len(r.created)} new password(s)")
    if any(c.username == mqtt_accounts.IOC_USERNAME for c in r.created):
        print(f"the ioc account's new password is in {r.ioc_password_file}")
    print("reload Mosquitto to apply: kill -HUP <pid> or systemctl reload mosquitto")
    return 0
