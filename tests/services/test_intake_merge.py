"""A batch's statuses of one device merge field by field (services.intake.latest_per_device), within
the bound the stored row keeps too."""

import os
from datetime import UTC, datetime, timedelta

import orjson

from services import intake
from services.models import Device
from services.payloads import Status

SPK = Device("spk-1", "xa-test", "speaker")
T0 = datetime(2026, 12, 3, 8, tzinfo=UTC)


def _batch(*metrics: dict[str, object]) -> intake.Batch:
    batch = intake.Batch()
    for i, m in enumerate(metrics):
        at = T0 + timedelta(seconds=i)
        batch.statuses.append((SPK, Status(at, True, m), at))
    return batch


def test_fields_merge_in_ts_order_each_keeping_its_newest_value() -> None:
    status, received = intake.latest_per_device(_batch({"volume": 4, "firmware": "1.0"}, {"volume": 7}))[
        "spk-1"
    ]["status"]
    assert status.metrics == {"volume": 7, "firmware": "1.0"} and status.ts == T0 + timedelta(seconds=1)
    assert received == T0 + timedelta(seconds=1)


def test_a_batch_naming_new_fields_in_every_status_starts_again_from_the_newest() -> None:
    statuses = [{"volume": n, **{f"f{n}_{k}": os.urandom(450).hex() for k in range(20)}} for n in range(50)]
    status, _ = intake.latest_per_device(_batch(*statuses))["spk-1"]["status"]
    assert status.metrics == statuses[-1]
    assert len(orjson.dumps(status.metrics)) <= intake.MERGED_METRICS_MAX
