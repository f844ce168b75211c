"""The one exception family of Commune IOC; the gateway maps each to an HTTP status."""


class IocError(Exception):
    """Base of every error the IOC raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, detail: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ConfigError(IocError):
    """A setting is missing or wrong; the process cannot start."""

    code = "config"


class InvalidInput(IocError):
    """Input that does not follow the contract (bad file row, parameter, payload)."""

    code = "invalid"


class NotFound(IocError):
    """The thing asked for does not exist (or is outside the caller's scope to know of)."""

    code = "not_found"


class Conflict(IocError):
    """The request clashes with the current state (duplicate, wrong transition)."""

    code = "conflict"


class Unauthorized(IocError):
    """No valid credentials were given."""

    code = "unauthorized"


class LockedOut(Unauthorized):
    """The account is locked for a while after too many failed sign-ins."""

    code = "locked_out"


class Forbidden(IocError):
    """Valid credentials, but outside their role or scope."""

    code = "forbidden"


class RateLimited(IocError):
    """Too many requests; retry after `retry_after_s`."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(IocError):
    """A backing service (database, broker, device) cannot be reached."""

    code = "unavailable"


class Busy(Unavailable):
    """Too much at once (no database connection or request slot came free); retry after `retry_after_s`."""

    code = "busy"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
