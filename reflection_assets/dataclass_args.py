"""Command-line options from a settings dataclass, and the dataclass back from the parsed options.

Like TRL's `TrlParser` over `SFTConfig`: one option per field, named after it (`lr_scheduler` ->
`--lr-scheduler`), typed from its annotation, defaulting to its default, explained by its help text
(`reflection_assets.documented`). A field added to the dataclass is an option without touching the
command, and `dataclass_argv` writes the options that rebuild an instance (what a launcher passes on).

Annotations understood: int, float, str, bool (`--x` / `--no-x`), a Literal (its values are the
choices), a tuple of str (comma-separated), and any of these or None.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Collection
from typing import Any, Literal, Union

from reflection_assets.documented import default_of, help_text

SCALARS = (int, float, str)
# Python 3.10's BooleanOptionalAction appends "(default: ...)" to the help itself; later ones do not.
BOOL_ACTION_SHOWS_DEFAULT = "%(default)" in (argparse.BooleanOptionalAction(["--x"], "x", False, help="").help or "")


def option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None was allowed)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(members) < len(typing.get_args(annotation)):
            return members[0], True
    return annotation, False


def _comma_separated(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return ",".join(value) if isinstance(value, tuple) else str(value)


def option_kwargs(cls: type, spec: dataclasses.Field, annotation: Any) -> dict[str, Any]:
    """`add_argument` keywords for one field; a type this module cannot parse raises TypeError."""
    inner, _ = _strip_optional(annotation)
    default = default_of(cls, spec.name)
    what = help_text(cls, spec.name).replace("%", "%%")  # argparse %-formats help texts
    kwargs: dict[str, Any] = {"dest": spec.name, "default": default, "help": what}
    if default is not None and not (inner is bool and BOOL_ACTION_SHOWS_DEFAULT):
        kwargs["help"] = f"{what} (default: {_shown(default).replace('%', '%%')})"
    if inner is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(inner) is Literal:
        choices = typing.get_args(inner)
        kwargs.update(choices=choices, type=type(choices[0]))
    elif typing.get_origin(inner) is tuple and typing.get_args(inner) == (str, ...):
        kwargs.update(type=_comma_separated, metavar="A,B,...")
    elif inner in SCALARS:
        kwargs.update(type=inner, metavar={int: "N", float: "X"}.get(inner, "TEXT"))
    else:
        raise TypeError(f"{cls.__name__}.{spec.name}: no command-line form for {annotation!r}")
    return kwargs


def _option_fields(cls: type, exclude: Collection[str]) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)  # resolves string annotations (`from __future__ import annotations`)
    return [(spec, hints[spec.name]) for spec in dataclasses.fields(cls) if spec.init and spec.name not in exclude]


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, exclude: Collection[str] = ()
) -> list[str]:
    """One option per field of `cls` (but `exclude`); returns the option names in field order."""
    names = []
    for spec, annotation in _option_fields(cls, exclude):
        parser.add_argument(option_name(spec.name), **option_kwargs(cls, spec, annotation))
        names.append(option_name(spec.name))
    return names


def dataclass_from_args(cls: type, args: argparse.Namespace, exclude: Collection[str] = ()) -> Any:
    """The dataclass from parsed options (its own `__post_init__` checks the values)."""
    return cls(**{spec.name: getattr(args, spec.name) for spec, _ in _option_fields(cls, exclude)})


def dataclass_argv(instance: Any, exclude: Collection[str] = ()) -> list[str]:
    """Options that `add_dataclass_arguments` parses back into exactly `instance`."""
    cls = type(instance)
    argv: list[str] = []
    for spec, annotation in _option_fields(cls, exclude):
        value, flag = getattr(instance, spec.name), option_name(spec.name)
        if value is None:
            if default_of(cls, spec.name) is not None:
                raise ValueError(f"{cls.__name__}.{spec.name}=None cannot be written as an option")
            continue  # None is the default: leaving the option out parses back to it
        inner, _ = _strip_optional(annotation)
        if inner is bool:
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple):
            argv += [flag, ",".join(value)]
        elif isinstance(value, float):
            argv += [flag, repr(value)]  # repr: the shortest text that reads back as the same float
        else:
            argv += [flag, str(value)]
    return argv
