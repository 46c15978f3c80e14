"""A fake clock and runners with known timings, so the bench's arithmetic can be checked exactly."""

from __future__ import annotations

import time

import numpy as np

from alexnet_deploy.backends.base import Runner


class FakeClock:
    """A clock that only moves when a fake runner says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedRunner(Runner):
    """Each call advances ``clock`` by the next duration of ``script`` (cycling), per image when ``per_image``."""

    backend = "fake"

    def __init__(self, clock: FakeClock, script, per_image: bool = False, name: str = "fake", max_batch=None):
        super().__init__(name)
        self.clock, self.script, self.per_image, self.calls = clock, list(script), per_image, 0
        self._max_batch = max_batch
        self.threads = None

    @property
    def max_batch(self):
        return self._max_batch

    def activate_impl(self) -> None:
        pass

    def infer_impl(self, images: np.ndarray) -> np.ndarray:
        step = self.script[self.calls % len(self.script)]
        self.clock.now += step * (images.shape[0] if self.per_image else 1)
        self.calls += 1
        return np.zeros((images.shape[0], 3), np.float32)


class SleepRunner(Runner):
    """Sleeps ``seconds`` per call (real time), for the concurrency tests."""

    backend = "sleep"

    def __init__(self, seconds: float, name: str = "sleep") -> None:
        super().__init__(name)
        self.seconds, self.calls = seconds, 0
        self.threads = None

    def activate_impl(self) -> None:
        pass

    def infer_impl(self, images: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        self.calls += 1
        return np.zeros((images.shape[0], 3), np.float32)
