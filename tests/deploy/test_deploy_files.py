"""The production files in deploy/: systemd units, nginx, compose, env examples, scripts.
Docker and nginx are not run here: their files are checked for structure and for the
commands and settings they hand to `ioc`."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cli.main import COMMANDS, command_of, parser
from gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
IOC_BIN = "/opt/ioc/.venv/bin/ioc"


def _unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values]}}."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out[section] = {}
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key, []).append(value)
    return out


def _ioc_args(argv: list[str]) -> None:
    """Parse like `ioc` would; unknown subcommands or options fail (SystemExit)."""
    if argv[0] in ("ioc", IOC_BIN):
        argv = argv[1:]
    assert command_of(argv) in COMMANDS, f"`ioc {argv[0]}` is not a command"
    parser(command_of(argv)).parse_args(argv)  # as `ioc` parses it: with its command's parser alone


def test_systemd_units_pass_systemd_analyze(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    for f in UNITS.iterdir():
        text = f.read_text().replace(IOC_BIN, str(ROOT / ".venv" / "bin" / "ioc"))
        text = text.replace("/opt/ioc/deploy/", f"{DEPLOY}/")
        (tmp_path / f.name).write_text(text)
    names = [f.name for f in UNITS.iterdir() if "@" not in f.name]
    names += ["./ioc-gateway@8001.service", "./ioc-ingest@1.service"]
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


@pytest.mark.parametrize(
    "name",
    [
        "ioc-migrate.service",
        "ioc-ingest@.service",
        "ioc-gateway@.service",
        "ioc-alerts.service",
        "ioc-mqtt-auth.service",
        "ioc-backup.service",
    ],
)
def test_every_ioc_unit_runs_unprivileged_with_the_env_file(name: str) -> None:
    u = _unit(name)["Service"]
    assert u["User"] == ["ioc"] and u["Group"] == ["ioc"]
    assert u["EnvironmentFile"] == ["/etc/ioc/ioc.env"]
    assert u["NoNewPrivileges"] == ["yes"] and u["ProtectSystem"] == ["strict"]
    for cmd in u["ExecStart"]:
        argv = cmd.replace("%i", "8001").replace("%H", "host").split()
        if argv[0] == IOC_BIN:
            _ioc_args(argv)
        else:
            assert (DEPLOY / Path(argv[0]).name).exists()


def test_migrate_is_a_oneshot_the_long_running_units_wait_for() -> None:
    assert _unit("ioc-migrate.service")["Service"]["Type"] == ["oneshot"]
    for name in ("ioc-ingest@.service", "ioc-gateway@.service", "ioc-alerts.service"):
        u = _unit(name)
        assert "ioc-migrate.service" in u["Unit"]["Requires"][0]
        assert "ioc-migrate.service" in u["Unit"]["After"][0]
        assert u["Service"]["Restart"] == ["always"]
        assert u["Unit"]["PartOf"] == ["ioc.target"]
        assert u["Install"]["WantedBy"] == ["ioc.target"]


def test_templated_instances_are_distinct() -> None:
    gw = _unit("ioc-gateway@.service")["Service"]
    assert "--port %i" in gw["ExecStart"][0] and "--host 127.0.0.1" in gw["ExecStart"][0]
    assert "IOC_COOKIE_SECURE=true" in gw["Environment"]
    ingest = _unit("ioc-ingest@.service")["Service"]
    assert re.search(r"--id \S*%H\S*%i", ingest["ExecStart"][0])


def test_nginx_never_logs_query_strings_and_upgrades_websockets() -> None:
    text = (DEPLOY / "nginx" / "ioc.conf").read_text()
    formats = re.findall(r"log_format\s+(\w+)\s+(.*?);", text, re.S)
    assert formats
    for _, fmt in formats:
        for var in (
            "$request ",
            '$request"',
            "$request_uri",
            "$args",
            "$query_string",
            "$http_referer",
            "$arg_",
        ):
            assert var not in fmt
    logs = re.findall(r"^\s*access_log\s+(\S+)\s*(\S*);", text, re.M)
    assert logs and all(fmt == "ioc_noquery" or path == "off" for path, fmt in logs)
    ws = re.search(r"location /ws/ \{(.*?)\}", text, re.S)
    assert ws
    assert "proxy_set_header Upgrade    $http_upgrade" in ws.group(1)
    assert "$ioc_connection_upgrade" in ws.group(1)
    assert "proxy_http_version 1.1" in text
    assert re.search(r"listen 443 ssl", text) and "ssl_certificate_key" in text
    assert "proxy_set_header X-Forwarded-For   $remote_addr" in text
    assert "limit_req zone=ioc_login" in text


def test_nginx_config_is_accepted_by_nginx(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx not installed")
    conf = (DEPLOY / "nginx" / "ioc.conf").read_text().replace("/etc/ssl/ioc/", f"{tmp_path}/")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=t",
            "-keyout",
            str(tmp_path / "privkey.pem"),
            "-out",
            str(tmp_path / "fullchain.pem"),
        ],
        check=True,
        capture_output=True,
    )
    conf = re.sub(r"/var/log/nginx/", f"{tmp_path}/", conf)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; events {{}}\n"
        f"http {{ access_log off; {conf} }}\n"
    )
    r = subprocess.run([nginx, "-t", "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_uses_the_official_images_and_starts_in_order() -> None:
    c = _compose()
    s = c["services"]
    assert s["db"]["image"].startswith("timescale/timescaledb:")
    assert s["mqtt"]["image"].startswith("eclipse-mosquitto:2")
    assert {"db", "mqtt", "migrate", "mqtt-auth", "ingest", "gateway", "alerts"} <= set(s)
    for name in ("migrate", "mqtt-auth", "ingest", "gateway", "alerts"):
        assert s[name]["image"] == "commune-ioc:latest"
        assert s[name]["environment"]["IOC_MQTT_URL"] == "mqtt://ioc@mqtt:1883"
    assert s["migrate"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert s["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert s["mqtt-auth"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert s["mqtt"]["depends_on"]["mqtt-auth"]["condition"] == "service_completed_successfully"
    for name in ("ingest", "gateway", "alerts"):
        assert s[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert s[name]["restart"] == "unless-stopped"
    assert "healthcheck" in s["db"]
    # Only MQTT over TLS and the gateway on loopback leave the compose network.
    assert s["mqtt"]["ports"] == ["8883:8883"]
    assert s["gateway"]["ports"] == ["127.0.0.1:8000:8000"]
    assert "ports" not in s["db"]
    assert set(c["volumes"]) >= {"db-data", "mqtt-data", "mqtt-auth", "ioc-data"}


def test_compose_mounts_what_the_repository_ships_and_the_broker_reads_mqtt_auth_output() -> None:
    s = _compose()["services"]
    mqtt_mounts = dict(v.split(":")[:2] for v in s["mqtt"]["volumes"])
    assert (DEPLOY / mqtt_mounts["./compose/mosquitto.conf"]).name == "mosquitto.conf"
    assert (DEPLOY / "compose" / "mosquitto.conf").exists()
    conf = (DEPLOY / "compose" / "mosquitto.conf").read_text()
    auth_dir = mqtt_mounts["mqtt-auth"]
    assert f"password_file {auth_dir}/passwd" in conf and f"acl_file {auth_dir}/acl" in conf
    out = s["mqtt-auth"]["command"][s["mqtt-auth"]["command"].index("--out") + 1]
    assert f"mqtt-auth:{out}" in s["mqtt-auth"]["volumes"]


@pytest.mark.parametrize("service", ["migrate", "mqtt-auth", "ingest", "gateway", "alerts"])
def test_compose_commands_are_valid_ioc_commands(service: str) -> None:
    _ioc_args(_compose()["services"][service]["command"])


def test_compose_secrets_come_from_the_env_file() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    needed = set(re.findall(r"\$\{(\w+):\?", text))
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / "compose.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert needed == {"POSTGRES_PASSWORD", "IOC_SECRET_KEY"} and needed <= set(example)


def test_dockerfile_copies_what_exists() -> None:
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            src = line.split()[1]
            assert (ROOT / src).exists(), src


def test_env_example_names_only_real_settings() -> None:
    keys = [
        line.split("=", 1)[0]
        for line in (DEPLOY / "ioc.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    fields = {f"IOC_{name.upper()}" for name in GatewaySettings.model_fields}
    assert set(keys) <= fields, set(keys) - fields
    s = GatewaySettings(_env_file=DEPLOY / "ioc.env.example")  # type: ignore[call-arg]
    assert s.cors_origins == [] and s.mqtt_url == "mqtt://ioc@127.0.0.1:1883"


@pytest.mark.parametrize(
    "script", ["install.sh", "ioc-cli.sh", "postgres/setup.sh", "backup.sh", "restore.sh"]
)
def test_shell_scripts_parse_and_are_executable(script: str) -> None:
    path = DEPLOY / script
    assert path.stat().st_mode & 0o111
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
