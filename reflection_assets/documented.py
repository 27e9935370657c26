"""Each setting's meaning, written once: on the settings dataclass's own field.

A field declared with `documented(default, "what it means")` carries its help text in the field's
metadata, as TRL and transformers do for their argument dataclasses. The command line
(`reflection_assets.dataclass_args`) and the `dg.Config` fields that mirror a setting (`mirrored`)
read the text, the default and the type from there instead of repeating them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

HELP_KEY = "help"


def documented(default: Any = dataclasses.MISSING, what: str = "", *, default_factory: Any = dataclasses.MISSING):  # noqa: ANN201 - a dataclasses.Field
    """A dataclass field whose help text travels with it (`what` must say something)."""
    if not what:
        raise ValueError("a documented field needs its help text")
    return dataclasses.field(default=default, default_factory=default_factory, metadata={HELP_KEY: what})


def help_text(cls: type, name: str) -> str:
    """The help text of one field of a settings dataclass; a field without one is an error, not ''."""
    spec = _field(cls, name)
    if HELP_KEY not in spec.metadata:
        raise KeyError(f"{cls.__name__}.{name} has no help text (declare it with documented(...))")
    return spec.metadata[HELP_KEY]


def help_texts(cls: type) -> dict[str, str]:
    """{field: help text} for every documented field, in declaration order."""
    return {f.name: f.metadata[HELP_KEY] for f in dataclasses.fields(cls) if HELP_KEY in f.metadata}


def default_of(cls: type, name: str) -> Any:
    """The field's default (a fresh one from its factory); no default is an error."""
    spec = _field(cls, name)
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


def mirrored(cls: type, name: str, **overrides: Any):  # noqa: ANN201 - a pydantic FieldInfo
    """A pydantic field (a `dg.Config` knob) with the setting's default and help text.

    `overrides` are for a knob that differs on purpose (a `None` that defers to a resource, a list for
    a tuple); its description then says how, usually by extending `help_text(cls, name)`.
    """
    from pydantic import Field

    options = dict(overrides)
    if "default" not in options:
        options["default"] = default_of(cls, name)
    options.setdefault("description", help_text(cls, name))
    return Field(**options)


def _field(cls: type, name: str) -> dataclasses.Field:
    for spec in dataclasses.fields(cls):
        if spec.name == name:
            return spec
    raise KeyError(f"{cls.__name__} has no field {name!r}")
