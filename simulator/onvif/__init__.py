"""Simulated ONVIF cameras speaking real SOAP (WS-Security digest auth, PullPoint events,
WS-Discovery) for the demo, the tests and the benchmarks."""

from simulator.onvif.camera import FAULTS
from simulator.onvif.farm import CameraFarm, CameraSpec

__all__ = ["FAULTS", "CameraFarm", "CameraSpec"]
