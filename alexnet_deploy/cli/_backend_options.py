"""Each backend's build options on ``alexnet-deploy build``, assembled from the registry.

A backend declares its options once, as fields of its options class made with
:func:`alexnet_deploy.backends.base.cli_option` (flag, help, default); :func:`with_backend_options` adds one
command-line option per such field (in the backend's help panel; a flag several backends share, like the TensorRT
flavours' batch profile, appears once) and hands the command ``engines``: every backend's options built from
what was given. Adding a backend adds its options here without a line of CLI code.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer

from alexnet_deploy.backends import BackendSpec, backends
from alexnet_deploy.backends.base import CliFlag


@dataclasses.dataclass
class _Option:
    """One command-line option and the backends' fields it fills."""

    param: str
    flag: CliFlag
    default: Any
    kind: Any
    panel: str
    fields: list[tuple[BackendSpec, str]]


def _cli_default(flag: CliFlag, field: dataclasses.Field, kind: Any) -> Any:
    """The field's default as the command line shows and gives it back."""
    default = field.default
    if isinstance(kind, type) and issubclass(kind, Enum) and not isinstance(default, Enum):
        return kind(default)
    if kind is str and isinstance(default, tuple):
        return ",".join(default)
    return default


def _options() -> dict[str, _Option]:
    found: dict[str, _Option] = {}
    for spec in backends():
        if not spec.options:
            continue
        for field in dataclasses.fields(spec.options_class()):
            flag = field.metadata.get("cli")
            if flag is None or flag.shared:
                continue
            param = flag.flag.lstrip("-").replace("-", "_")
            if param in found:  # a flag several backends share: one option fills them all
                found[param].fields.append((spec, field.name))
                continue
            kind = flag.type or type(field.default)
            found[param] = _Option(param, flag, _cli_default(flag, field, kind), kind, spec.panel, [(spec, field.name)])
    return found


def engine_options(options: dict[str, _Option], values: dict[str, Any], shared: dict[str, Any]) -> dict:
    """Every backend's options class filled from the parsed ``values`` (and the command's ``shared`` options).

    Raises:
        ConfigError: a value the backend's options refuse.
    """
    per_backend: dict[BackendSpec, dict[str, Any]] = {}
    for opt in options.values():
        value = values[opt.param]
        value = opt.flag.parse(value) if opt.flag.parse and value is not None else value
        for spec, name in opt.fields:
            per_backend.setdefault(spec, {})[name] = value
    engines = {}
    for spec in backends():
        if not spec.options:
            continue
        cls = spec.options_class()
        given = per_backend.get(spec, {})
        for field in dataclasses.fields(cls):
            flag = field.metadata.get("cli")
            if flag is not None and flag.shared:
                given[field.name] = shared.get(flag.shared, field.default)
        engines[spec.name] = cls(**given)
    return engines


def with_backend_options(command: Callable) -> Callable:
    """Give ``command`` (which takes ``engines`` and ``threads``) every backend's options as command-line options."""
    options = _options()
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "engines"]
    added = [
        inspect.Parameter(
            o.param,
            inspect.Parameter.KEYWORD_ONLY,
            default=o.default,
            annotation=Annotated[o.kind, typer.Option(o.flag.flag, help=o.flag.help, rich_help_panel=o.panel)],
        )
        for o in options.values()
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in options}
        kwargs["engines"] = engine_options(options, values, {"threads": kwargs.get("threads")})
        return command(*args, **kwargs)

    params = sorted(own + added, key=lambda p: p.kind)  # keyword-only parameters after the others
    wrapper.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return wrapper
