"""Typed dataclasses from JSON-like dicts, with errors that name the failing field's path.

``from_dict(TrainConfig, data)`` refuses what is not an object, unknown fields, values of the wrong kind
and malformed nested parts, raising ``FieldError`` whose ``path`` is e.g. ``blocks[1].filters``.
``failing_path`` finds the field to blame when a value passes those checks but a later validation fails.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable

_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


class FieldError(ValueError):
    """A ValueError about one field; ``path`` is where it is (``""`` for the whole object)."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path


def from_dict(cls: type, data, path: str = "", title: str = ""):
    """An instance of dataclass ``cls`` from ``data``; missing fields take their defaults.

    Args:
        path: where ``data`` sits in a bigger document (``""`` at the top), prefixed to nested paths.
        title: how messages name the top-level object (e.g. "model spec"); the class name by default.
    """
    where = _where(path, title or cls.__name__)
    if not isinstance(data, dict):
        raise FieldError(path, f"{_quoted(path, where)} must be a JSON object.")
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise FieldError(_join(path, unknown[0]), f"Unknown field(s) in {where}: {', '.join(unknown)}.")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _value(hints[name], value, _join(path, name)) for name, value in data.items()})


def failing_path(build: Callable, data) -> str:
    """The path of the first field of ``data`` that makes ``build(data)`` raise ValueError ("" if none).

    Fields are added one by one, from an empty object; the first one whose addition fails is to blame
    (fields wrong only together, like early stopping with no validation split, blame the later one), and
    the search goes on inside it. A container that fails even when empty is blamed itself.
    """
    if isinstance(data, dict):
        return _blame_dict(build, data)
    if isinstance(data, list):
        return _blame_list(build, data)
    return ""


def _blame_dict(build: Callable, data: dict) -> str:
    trial: dict = {}
    for key, value in data.items():
        before = dict(trial)
        trial[key] = value
        if _fails(build, trial):
            inner_build = lambda inner, before=before, key=key: build({**before, key: inner})  # noqa: E731
            if isinstance(value, (dict, list)) and _fails(inner_build, type(value)()):
                return str(key)
            inner = failing_path(inner_build, value)
            return _join(str(key), inner) if inner else str(key)
    return ""


def _blame_list(build: Callable, data: list) -> str:
    for index, item in enumerate(data):
        if _fails(build, data[: index + 1]):
            inner_build = lambda inner, index=index: build(data[:index] + [inner])  # noqa: E731
            if isinstance(item, (dict, list)) and _fails(inner_build, type(item)()):
                return ""  # the list itself (e.g. too many items)
            inner = failing_path(inner_build, item)
            return _join(f"[{index}]", inner) if inner else f"[{index}]"
    return ""


def _fails(build: Callable, data) -> bool:
    try:
        build(data)
    except ValueError:
        return True
    return False


def _value(kind, value, path: str):
    """``value`` checked against the annotation ``kind``; nested dataclasses and lists are built."""
    if dataclasses.is_dataclass(kind):
        return from_dict(kind, value, path)
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        options = [argument for argument in arguments if argument is not type(None)]
        return _value(options[0], value, path) if len(options) == 1 else value
    if origin is list:
        if not isinstance(value, list):
            raise FieldError(path, f"'{path}' must be a list (got {value!r}).")
        item_kind = arguments[0] if arguments else typing.Any
        return [_value(item_kind, item, f"{path}[{index}]") for index, item in enumerate(value)]
    if kind in _KINDS:
        if not _same_kind(value, kind):
            raise FieldError(path, f"'{path}' must be {_KINDS[kind]} (got {value!r}).")
        return float(value) if kind is float else value
    return value


def _same_kind(value, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _join(path: str, name: str) -> str:
    if not path:
        return name
    return f"{path}{name}" if name.startswith("[") else f"{path}.{name}"


def _where(path: str, title: str) -> str:
    """A path in words for messages: ``blocks[0]`` → "block 1", ``head`` → "head"."""
    if not path:
        return title
    last = path.rsplit(".", 1)[-1]
    if last.endswith("]"):
        name, _, index = last[:-1].partition("[")
        return f"{name.removesuffix('s').replace('_', ' ')} {int(index) + 1}"
    return last.replace("_", " ")


def _quoted(path: str, where: str) -> str:
    return f"'{path}'" if path else f"A {where}"
