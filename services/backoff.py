"""One backoff for retries: exponential from `base_s`, capped at `cap_s`, with jitter.

Jitter spreads retries of many targets (or many processes) that failed together, so a receiver
that comes back is not hit by all of them in the same second.
"""

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_s: float = 1.0
    cap_s: float = 300.0
    # each delay is drawn from [1 - jitter, 1] of the exponential step
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the `attempt`-th failure in a row (1 for the first)."""
        step = min(self.cap_s, self.base_s * 2 ** min(max(attempt, 1) - 1, 32))
        r = (rng or _RNG).random()
        return step * (1 - self.jitter * r)


_RNG = random.Random()
