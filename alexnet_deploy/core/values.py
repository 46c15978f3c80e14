"""Values the user types that are not choices: the one parser of batch-size lists.

Every command that takes batch sizes (``bench --batch``, ``build --probe-batch``, ``quickstart --bench-batch``,
``triton --preferred-batch``) reads them here, so they accept and refuse the same text with the same sentence.
"""

from __future__ import annotations

from collections.abc import Iterable

from alexnet_deploy.core.errors import ConfigError


def parse_batch_sizes(
    text: str | Iterable[int] | None, *, flag: str = "--batch", allow_empty: bool = False
) -> tuple[int, ...]:
    """``"16, 8,8"`` -> ``(8, 16)``: positive whole numbers, sorted, each once.

    Args:
        text: the user's text (or batch sizes already as numbers, checked the same way).
        flag: the option's name, for the sentence.
        allow_empty: ``None`` or ``""`` means "none" (``()``) instead of an error.

    Raises:
        ConfigError: an entry that is not a positive whole number, or nothing where something is needed.
    """
    if text is None:
        parts: list[str] = []
    elif isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
    else:
        parts = [str(p) for p in text]
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = [0]
    if any(s < 1 for s in sizes) or (not sizes and not allow_empty):
        raise ConfigError(
            f"{flag} takes positive integers: whole numbers separated by commas, like 1,8,32; got {_shown(text)}."
        )
    return tuple(sorted(set(sizes)))


def _shown(text: object) -> str:
    return repr(text) if isinstance(text, str) else repr(list(text)) if text is not None else "nothing"
