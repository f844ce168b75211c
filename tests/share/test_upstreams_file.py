"""IOC_UPSTREAMS_FILE is read strictly: every problem with its line, secrets from the environment and
never in a message, and no text at all can make it fail with anything but a clear error."""

import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.errors import InvalidInput
from services.push import upstreams

GOOD = """\
upstreams:
  - id: lgsp-an-giang
    url: "https://lgsp.example.gov.vn/ioc/v1/push"
    oauth2: {token_url: "https://lgsp.example.gov.vn/token", client_id: "ioc", client_secret: "${LGSP_SECRET}", scope: "ioc"}
    headers: {lgspaccesstoken: "${LGSP_HEADER}"}
    communes: [thoai-giang]
    send: [changes, alerts, daily_report]
    daily_at: "16:30"
"""


def errors(text: str) -> list[str]:
    with pytest.raises(InvalidInput) as info:
        upstreams.parse(text, "up.yaml")
    assert isinstance(info.value.detail, list)
    return info.value.detail


def test_the_spec_example_reads_with_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGSP_SECRET", "bí-mật-1")
    monkeypatch.setenv("LGSP_HEADER", "hdr-2")
    (up,) = upstreams.parse(GOOD)
    assert up.id == "lgsp-an-giang" and up.target == "upstream:lgsp-an-giang"
    assert up.oauth2 is not None and up.oauth2.client_secret == "bí-mật-1" and up.oauth2.scope == "ioc"
    assert up.headers == (("lgspaccesstoken", "hdr-2"),)
    assert up.communes == ("thoai-giang",) and up.send == ("changes", "alerts", "daily_report")
    assert up.daily_at == time(16, 30) and not up.insecure and up.batch == 500
    assert "bí-mật-1" not in repr(up) and "hdr-2" not in repr(up)


def test_defaults_and_an_unquoted_time(monkeypatch: pytest.MonkeyPatch) -> None:
    (up,) = upstreams.parse("upstreams:\n  - {id: p, url: 'http://127.0.0.1:9/x', daily_at: 7:05}\n")
    assert up.oauth2 is None and up.communes is None and up.send == upstreams.STREAMS
    assert up.daily_at == time(7, 5)  # YAML 1.1 made 7:05 the number 425


def test_a_file_with_typos_lists_every_error_with_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGSP_SECRET", "s")
    text = """\
upstreams:
  - id: lgsp-an-giang
    url: "https://lgsp.example.gov.vn/push"
    oauth2: {token_url: "https://lgsp.example.gov.vn/token", client_id: ioc, client_secret: "${LGSP_SECRET}", scop: ioc}
    headers: {lgspaccesstoken: "${LGSP_HEADR}", Idempotency-Key: x}
    send: [changes, alert]
    daily_at: "25:00"
    comunes: [thoai-giang]
  - id: lgsp-an-giang
    url: ftp://lgsp.example.gov.vn/
    insecure: "yes"
    batch: 0
    timeout_s: 1000
"""
    assert errors(text) == [
        "up.yaml:4: upstream lgsp-an-giang: oauth2: unknown field 'scop' (allowed: auth, client_id, client_secret, scope, token_url)",
        "up.yaml:5: upstream lgsp-an-giang: header lgspaccesstoken: environment variable LGSP_HEADR is not set",
        "up.yaml:5: upstream lgsp-an-giang: header Idempotency-Key is set by the IOC itself",
        "up.yaml:6: upstream lgsp-an-giang: send 'alert' is not one of changes, alerts, daily_report",
        "up.yaml:7: daily_at '25:00' must be a local time HH:MM, e.g. \"16:30\"",
        "up.yaml:8: upstream lgsp-an-giang: unknown field 'comunes' (allowed: batch, ca_file, communes, daily_at, headers, id, insecure, oauth2, send, timeout_s, url)",
        "up.yaml:10: upstream lgsp-an-giang: url must be an http:// or https:// URL with a host",
        "up.yaml:11: upstream lgsp-an-giang: insecure must be true or false",
        "up.yaml:12: upstream lgsp-an-giang: batch 0 must be a whole number from 1 to 10000",
        "up.yaml:13: upstream lgsp-an-giang: timeout_s 1000 must be a number from 1 to 300",
    ]


def test_duplicates_missing_parts_and_bad_yaml() -> None:
    dup = "upstreams:\n  - {id: a, url: 'https://x/p'}\n  - {id: a, url: 'https://y/p'}\n"
    assert errors(dup) == ["up.yaml:3: upstream a is given twice (first on line 2)"]
    assert errors("upstreams:\n  - id: a\n    url: https://x/p\n    url: https://y/p\n") == [
        "up.yaml:4: url is given twice (first on line 3); keep one"
    ]
    assert errors("upstreams:\n  - {id: a, url: 'https://x', oauth2: {token_url: 'https://x/t'}}\n") == [
        "up.yaml:2: upstream a: oauth2.client_id is required",
        "up.yaml:2: upstream a: oauth2.client_secret is required",
    ]
    assert errors("upstreams: {id: a}\n") == ["up.yaml:1: upstreams must be a list of mappings"]
    assert errors("upstreams:\n  - {id: a, url: 'https://x/p'\n") == [
        "up.yaml:3: not valid YAML: did not find expected ',' or '}'"
    ]
    assert errors("upstream: []\n") == ["up.yaml:1: top level: unknown field 'upstream' (allowed: upstreams)"]


def test_secrets_never_appear_in_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGSP_SECRET", "line1\nline2-secret")
    text = GOOD.replace("${LGSP_HEADER}", "hdr\\0nul-secret")  # YAML's \0 escape: a NUL
    out = "\n".join(errors(text))
    assert "secret" not in out.replace("client_secret", "")
    assert (
        "up.yaml:4: upstream lgsp-an-giang: oauth2.client_secret holds a line break or NUL character" in out
    )


def test_ca_file_and_insecure(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    p = tmp_path / "up.yaml"
    p.write_text(
        "upstreams:\n  - {id: a, url: 'https://x/p', ca_file: ca.pem}\n  - {id: b, url: 'https://x/p', insecure: true}\n"
    )
    a, b = upstreams.load_file(p)
    assert a.ca_file == ca and not a.insecure and b.insecure
    p.write_text("upstreams:\n  - {id: a, url: 'https://x/p', ca_file: missing.pem, insecure: true}\n")
    with pytest.raises(InvalidInput) as info:
        upstreams.load_file(p)
    assert [x.split(": ", 1)[1] for x in info.value.detail] == [  # type: ignore[union-attr]
        f"upstream a: ca_file '{tmp_path / 'missing.pem'}' does not exist",
    ]


def test_ioc_alerts_check_refuses_a_bad_file_with_one_line(tmp_path: Path) -> None:
    p = tmp_path / "up.yaml"
    p.write_text("upstreams:\n  - {id: a, url: 'gopher://x'}\n")
    r = subprocess.run(
        [sys.executable, "-m", "cli.main", "alerts", "--check", "--data-dir", str(tmp_path)],
        env={"PATH": "/usr/bin:/bin", "IOC_UPSTREAMS_FILE": str(p)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (
        f"ioc: IOC_UPSTREAMS_FILE: {p}:2: upstream a: url must be an http:// or https:// URL with a host"
    )
    assert "Traceback" not in r.stderr


_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(
        ["https://x/p", "http://127.0.0.1:1/", "16:30", "${NOPE}", "changes", "thoai-giang", "a"]
    ),
)
_keys = st.sampled_from(sorted(upstreams._KEYS | upstreams._OAUTH2_KEYS | {"x", "1"}))
_value = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.dictionaries(
            st.sampled_from(["upstreams", "x"]),
            st.lists(st.dictionaries(_keys, _value, max_size=8), max_size=3) | _value,
        ),
        _value,
    )
)
def test_any_structure_reads_or_is_refused_with_lines(doc: object) -> None:
    import yaml

    text = yaml.safe_dump(doc, allow_unicode=True)
    try:
        upstreams.parse(text, "f.yaml")
    except InvalidInput as err:
        assert isinstance(err.detail, list) and err.detail
        assert all(line.startswith("f.yaml") and "\n" not in line for line in err.detail)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_reads_or_is_refused(text: str) -> None:
    try:
        upstreams.parse(text, "f.yaml")
    except InvalidInput as err:
        assert isinstance(err.detail, list) and err.detail
