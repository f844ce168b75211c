"""Shared test settings. Fixtures that start real servers live in fix_pg.py and fix_mqtt.py."""

import os

# Tests must never pick up a developer's .env or embedded data dir.
os.environ.pop("IOC_DATABASE_URL", None)
os.environ.pop("IOC_MQTT_URL", None)
