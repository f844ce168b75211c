"""NGSI-LD subscriptions (ETSI GS CIM 009 §5.8) and their notifications (§5.11), pushed through the
outbox of services/push: the store (validation, the routes' reads and writes), the producer
(`run_producer`, the push worker's `ngsi.produce` task) and the push interface
(`notification_target`, `record_delivery`) that services/push/senders.py calls."""

from services.ngsi_subscriptions.delivery import notification_target, record_delivery
from services.ngsi_subscriptions.producer import run_producer

__all__ = ["notification_target", "record_delivery", "run_producer"]
