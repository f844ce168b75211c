"""Settings of the gateway process."""

from services.settings import IocSettings


class GatewaySettings(IocSettings):
    """The gateway: HTTP API, live feed, dashboard."""

    # Set when the gateway is served over HTTPS (behind the reverse proxy): cookies are then
    # sent only over TLS.
    cookie_secure: bool = False
    # Origins allowed to call the API from a browser; empty keeps CORS closed.
    cors_origins: list[str] = []
    # Public base URL, used in alert links and NGSI-LD @context; defaults to the request's.
    public_url: str | None = None
