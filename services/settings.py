"""Settings shared by every IOC process: environment (`IOC_` prefix) or a `.env` file."""

from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.errors import ConfigError


class IocSettings(BaseSettings):
    """What every process needs; processes subclass it for their own settings."""

    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore")

    database_url: str | None = None
    mqtt_url: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    secret_key: SecretStr | None = None
    data_dir: Path = Path(".ioc")
    lang: str = "vi"
    tz: str = "Asia/Ho_Chi_Minh"
    alerts_file: Path | None = None
    # The `source` values a speaker may play from without a broadcast of ours (comma-separated,
    # e.g. "vov1,fm-xa"): the default of the unscheduled_broadcast rule's allowed_sources (SPEC §9);
    # the alert evaluator judges by it, the gateway shows it among the rules in force.
    broadcast_allowed_sources: str = ""
    # the smart-commune criteria (services/criteria); unset: the shipped default
    criteria_file: Path | None = None
    retention_samples_days: int = 90
    retention_events_days: int = 365
    retention_dead_letters_days: int = 30

    @field_validator("lang")
    @classmethod
    def _lang(cls, v: str) -> str:
        if v not in ("vi", "en"):
            raise ValueError("must be vi or en")
        return v

    @field_validator("tz")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {v!r}") from err
        return v

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return v

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must be mqtt://[user:pass@]host:port")
        return v

    def require(self, *names: str) -> None:
        """Fail with one clear line naming the first required setting that is unset."""
        for name in names:
            if getattr(self, name) in (None, ""):
                raise ConfigError(f"IOC_{name.upper()} is not set")

    def secret(self) -> str:
        self.require("secret_key")
        assert self.secret_key is not None
        return self.secret_key.get_secret_value()


T = TypeVar("T", bound=IocSettings)


def load(cls: type[T], **overrides: object) -> T:
    """Build settings, turning pydantic's multi-line report into one line naming the setting."""
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        first = err.errors()[0]
        name = "IOC_" + str(first["loc"][0]).upper() if first["loc"] else "IOC settings"
        raise ConfigError(f"{name}: {first['msg']}") from err
