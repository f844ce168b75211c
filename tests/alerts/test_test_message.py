"""`ioc alerts --test CHANNEL` sends the catalogue's test message, in IOC_LANG."""

from pathlib import Path

import pytest

from cli.main import main as ioc
from tests.alerts.conftest import Receiver, base_config, write_config


@pytest.mark.parametrize(
    ("lang", "title"),
    [("vi", "[THỬ] Kênh cảnh báo của trung tâm hoạt động"), ("en", "[TEST] The IOC's alert channel works")],
)
def test_the_test_message_is_in_the_deployment_s_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver, lang: str, title: str
) -> None:
    monkeypatch.setenv("IOC_ALERTS_FILE", str(write_config(tmp_path, base_config(receiver))))
    monkeypatch.setenv("IOC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IOC_LANG", lang)
    assert ioc(["alerts", "--test", "ops"]) == 0
    (sent,) = receiver.json()
    assert sent["title"] == title
    assert "IOC" not in sent["message"] if lang == "vi" else "operations center" in sent["message"]
