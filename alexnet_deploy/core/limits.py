"""Bounds on numbers that come from the user (flags, config files, ``--set``), checked once, here, and called by
the option and config classes' own validation, so that the CLI and library users get the same sentence.

* What is meaningless is refused: NaN or infinity anywhere, a negative gate, zero or negative counts, durations
  and thread counts.
* What would exhaust the machine is bounded, and the sentence says the limit and why: threads
  (:func:`max_threads`) and batch sizes against the memory available (:func:`check_batch_memory`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from alexnet_deploy.core.errors import ConfigError

THREADS_PER_CPU = 4
"""Threads beyond 4 per logical CPU only queue behind each other (ONNX Runtime's and OpenMP's workers spin while
they wait, so 1000 of them on 2 CPUs never finish); more is refused."""

BYTES_PER_INPUT_BYTE = 10
"""Memory an inference takes per image, as a multiple of the image's float32 input: measured with ONNX Runtime at
224 px, 2.1 MB per image for torchvision's AlexNet (3.7x its 0.57 MB input) and 4.9 MB for the paper's network
with its decomposed LRN (8.5x); 10x leaves a margin."""

MEMORY_SHARE = 0.5
"""A batch may take at most half the memory available when it starts: the model, the runtime and the other
processes on the machine need the rest."""


def finite(value: Any, what: str) -> float:
    """``value`` as a finite float.

    Raises:
        ConfigError: NaN, infinity, or not a number.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, not {value!r}.") from None
    if not math.isfinite(number):
        raise ConfigError(f"{what} must be a finite number, not {value!r}.")
    return number


def check_number(value: Any, what: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> float:  # fmt: skip
    """``value`` as a finite float within ``[low, high]`` (``(low, high]`` with ``low_open``).

    Raises:
        ConfigError: NaN, infinity, or out of range; the sentence gives the range.
    """
    number = finite(value, what)
    too_low = low is not None and (number <= low if low_open else number < low)
    if too_low or (high is not None and number > high):
        if low is not None and high is not None:
            bounds = f"{'above' if low_open else 'at least'} {low:g} and at most {high:g}"
        elif low is not None:
            bounds = f"{'more than' if low_open else 'at least'} {low:g}"
        else:
            bounds = f"at most {high:g}"
        raise ConfigError(f"{what} must be {bounds}, not {value!r}.")
    return number


def check_count(value: Any, what: str, low: int = 1) -> int:
    """``value`` as a whole number of at least ``low``.

    Raises:
        ConfigError: not a whole number, or below ``low``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"{what} must be a whole number, not {value!r}.")
    if value < low:
        raise ConfigError(f"{what} must be at least {low}, not {value}.")
    return value


def check_duration(value: Any, what: str, allow_zero: bool = False) -> float:
    """A finite number of seconds (or minutes), positive (or zero with ``allow_zero``)."""
    return check_number(value, what, low=0.0, low_open=not allow_zero)


def check_gate_drop(value: Any, what: str) -> float:
    """An accuracy gate's allowed drop, in points: 0 to 100 (a negative drop would demand a gain)."""
    return check_number(value, what, low=0.0, high=100.0)


def cpu_count() -> int:
    """Logical CPUs of this machine (at least 1)."""
    return os.cpu_count() or 1


def max_threads() -> int:
    """The most threads a CPU backend may be given here: :data:`THREADS_PER_CPU` per logical CPU."""
    return THREADS_PER_CPU * cpu_count()


def check_threads(value: Any, what: str = "--threads", allow_zero: bool = False) -> int | None:
    """A thread count: ``None`` (the runtime's default), or 1 (0 with ``allow_zero``: "the default") to
    :func:`max_threads`.

    Raises:
        ConfigError: below the range, or above it (the sentence says why).
    """
    if value is None:
        return None
    count = check_count(value, what, low=0 if allow_zero else 1)
    if count > max_threads():
        raise ConfigError(
            f"{what} {count} is more than {max_threads()}: this machine has {cpu_count()} logical CPUs, and more "
            f"than {THREADS_PER_CPU} threads per CPU only wait on each other (spinning runtimes can stall for good)."
        )
    return count


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable`` of /proc/meminfo), or ``None`` if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


TRAINING_FACTOR = 3
"""Training keeps every activation for the backward pass and adds their gradients: about 3x inference's memory."""


def check_batch_memory(
    batch: int, image_shape: Sequence[int], what: str = "--batch", streams: int = 1, training: bool = False
) -> None:
    """Refuse a batch whose inference (or ``training`` step) would take more than :data:`MEMORY_SHARE` of the
    memory available now.

    The estimate is :data:`BYTES_PER_INPUT_BYTE` times the float32 input per image (``image_shape``: C, H, W),
    for each of ``streams`` requests in flight, :data:`TRAINING_FACTOR` times that for training.

    Raises:
        ConfigError: the sentence gives the estimate, the memory available and the largest batch that fits.
    """
    available = available_memory()
    if available is None or batch < 1 or not image_shape:
        return
    factor = max(1, streams) * (TRAINING_FACTOR if training else 1)
    per_image = BYTES_PER_INPUT_BYTE * 4 * math.prod(int(d) for d in image_shape) * factor
    need, budget = batch * per_image, MEMORY_SHARE * available
    if need <= budget:
        return
    shape = "x".join(str(int(d)) for d in image_shape)
    how = f", {streams} requests in flight" if streams > 1 else ""
    how += ", activations kept for the backward pass" if training else ""
    raise ConfigError(
        f"{what} {batch} would take about {_size(need)} ({_size(per_image)} per image of {shape}{how}: the "
        f"input and the network's activations), more than half of the {_size(available)} of memory available "
        f"here; the largest batch that fits is {max(0, int(budget // per_image))}."
    )


def check_decoded_memory(images: int, image_shape: Sequence[int], what: str, advice: str) -> None:
    """Refuse holding ``images`` decoded uint8 images of ``image_shape`` when they would take more than
    :data:`MEMORY_SHARE` of the memory available (e.g. ``--num-images`` over a whole ImageNet train folder).

    Raises:
        ConfigError: the sentence gives the size, the memory available, how many fit, and ``advice``.
    """
    available = available_memory()
    if available is None or images < 1:
        return
    per_image = math.prod(int(d) for d in image_shape)
    if images * per_image <= MEMORY_SHARE * available:
        return
    raise ConfigError(
        f"{what}: {images:,} decoded images of {'x'.join(str(int(d)) for d in image_shape)} would take "
        f"{_size(images * per_image)}, more than half of the {_size(available)} of memory available here (at most "
        f"{int(MEMORY_SHARE * available // per_image):,} fit); {advice}."
    )
