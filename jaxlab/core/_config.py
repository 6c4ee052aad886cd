"""Config files and command-line overrides.

A config file is a Python module with ``get_config(arg: str | None = None)`` returning a frozen
dataclass, and the method's ``run(config, workdir)`` imported into it. ``load_config("file.py:arg")``
loads it; ``apply_overrides(config, ["lr=0.1", "model.width=64"])`` returns a copy with fields
replaced, each value parsed and checked against the field's annotated type.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence


class ConfigError(ValueError):
    """A config file or an override is wrong; the message says what to do."""


def split_spec(spec: str) -> tuple[Path, str | None]:
    """Splits ``"path/to/file.py:arg"`` into the path and the argument (None if absent)."""
    path, sep, arg = spec.partition(".py:")
    if sep:
        return Path(path + ".py"), arg
    return Path(spec), None


def load_config_module(path: str | Path) -> types.ModuleType:
    """Imports a config file as a module. Raises ConfigError if it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {str(path)!r} not found. Give a path to a .py file, e.g. "
            "configs/examples/mlp_digits.py (`jaxlab list` shows them all)."
        )
    name = f"_jaxlab_config_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"config file {str(path)!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # surface the file name with whatever went wrong inside it
        del sys.modules[name]
        raise ConfigError(f"config file {str(path)!r} failed to import: {type(e).__name__}: {e}") from e
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(
            f"config file {str(path)!r} defines no get_config(arg=None) function; every config file must "
            "define one returning a frozen dataclass"
        )
    return module


def load_config(spec: str) -> tuple[Any, types.ModuleType]:
    """Loads ``"file.py[:arg]"``: returns ``(config, module)``."""
    path, arg = split_spec(spec)
    module = load_config_module(path)
    try:
        config = module.get_config(arg) if arg is not None else module.get_config()
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{str(path)!r}: get_config({arg!r}) failed: {e}") from e
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ConfigError(
            f"{str(path)!r}: get_config returned {type(config).__name__}, expected a dataclass instance"
        )
    return config, module


def config_fields(config: Any, prefix: str = "") -> dict[str, Any]:
    """Flattens a (nested) dataclass into ``{"a.b": type}`` for every leaf field."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(config_fields(value, key + "."))
        else:
            out[key] = hints.get(f.name, Any)
    return out


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def parse_value(text: str, tp: Any) -> Any:
    """Parses ``text`` as a value of type ``tp`` (int, float, bool, str, Literal, Optional, tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in ("none", "null"):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return parse_value(text, a)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors))
    if origin is typing.Literal:
        for a in args:
            if str(a) == text:
                return a
        raise ValueError(f"{text!r} is not one of {list(args)}")
    if origin in (tuple, list):
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            vals = [parse_value(p.strip(), args[0]) for p in parts]
        elif origin is tuple and args:
            if len(parts) != len(args):
                raise ValueError(f"{text!r} needs {len(args)} comma-separated values")
            vals = [parse_value(p.strip(), a) for p, a in zip(parts, args)]
        else:
            elem = args[0] if args else Any
            vals = [parse_value(p.strip(), elem) for p in parts]
        return tuple(vals) if origin is tuple else vals
    if tp is bool:
        return _parse_bool(text)
    if tp is int:
        try:
            return int(text)
        except ValueError:
            try:
                f = float(text)  # allow 1e4
            except ValueError:
                raise ValueError(f"{text!r} is not an integer") from None
            if not f.is_integer():
                raise ValueError(f"{text!r} is not an integer") from None
            return int(f)
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if tp is str:
        return text
    raise ValueError(f"fields of type {tp!r} cannot be set from the command line")


def _replace_path(config: Any, path: list[str], value: Any) -> Any:
    if len(path) == 1:
        return dataclasses.replace(config, **{path[0]: value})
    inner = getattr(config, path[0])
    return dataclasses.replace(config, **{path[0]: _replace_path(inner, path[1:], value)})


def apply_overrides(config: Any, overrides: Sequence[str]) -> Any:
    """Returns ``config`` with ``key=value`` overrides applied, each type-checked.

    Raises:
      ConfigError: for a malformed override, an unknown key (the message lists the valid keys) or a
        value that does not parse as the field's type.
    """
    fields = config_fields(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        if key not in fields:
            raise ConfigError(
                f"unknown config key {key!r} for {type(config).__name__}. Valid keys: {', '.join(sorted(fields))}"
            )
        try:
            value = parse_value(text, fields[key])
        except ValueError as e:
            raise ConfigError(f"bad value for {key!r} (type {_type_name(fields[key])}): {e}") from None
        config = _replace_path(config, key.split("."), value)
    return config


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a (nested) config dataclass, with its class name."""
    d = dataclasses.asdict(config)
    d["__class__"] = type(config).__qualname__
    return d
