"""Config files, command-line overrides and the constraints config values must meet.

A config file is a Python module with ``get_config(arg: str | None = None)`` returning a frozen
dataclass, and the method's ``run(config, workdir)`` imported into it. ``load_config("file.py:arg")``
loads it; ``apply_overrides(config, ["lr=0.1", "model.width=64"])`` returns a copy with fields
replaced, each value parsed and checked against the field's annotated type, and the result checked
by :func:`validate_config`.

A config dataclass declares what its values may be in a ``CONSTRAINTS`` class variable, field name
to one or more :class:`Constraint` (``positive``, ``nonnegative``, ``finite``, ``at_least(n)``,
``in_range(lo, hi)``, ``one_of(...)``, ``each(...)``, ``nonempty``), and rules between fields in
``RULES`` (a tuple of :class:`Rule`). Besides those, every value must have its annotated type,
every float must be finite, and fields with conventional names (``num_steps``, ``batch_size``,
``learning_rate``, ...: see :data:`CONVENTIONS`) meet the usual constraints unless declared otherwise.

Examples:
  >>> import dataclasses, typing
  >>> @dataclasses.dataclass(frozen=True)
  ... class Train:
  ...     num_steps: int = 100
  ...     learning_rate: float = 1e-3
  ...     CONSTRAINTS: typing.ClassVar[dict] = {"num_steps": positive, "learning_rate": positive}
  >>> apply_overrides(Train(), ["num_steps=5"]).num_steps
  5
  >>> apply_overrides(Train(), ["num_steps=-5"])
  Traceback (most recent call last):
  ...
  jaxlab.core._config.ConfigError: bad config value num_steps=-5: must be an integer > 0 (Train.num_steps, default 100)
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import numbers
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Sequence


class ConfigError(ValueError):
    """A config file or an override is wrong; the message says what to do."""


# ------------------------------------------------------------------------------------------------
# Constraints.


@dataclasses.dataclass(frozen=True)
class Constraint:
    """A condition on one config value: ``test(value) -> bool``, and ``allowed``, what it allows in words.

    Attributes:
      test: returns True when the value is allowed (it is only called on values of the field's type).
      allowed: the allowed values in words, read after "must be": ``"> 0"``, ``"one of ['a', 'b']"``.
    """

    test: Callable[[Any], bool]
    allowed: str

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError, OverflowError):
            return False


@dataclasses.dataclass(frozen=True)
class Rule:
    """A condition between fields of one config: ``test(config) -> bool``.

    Attributes:
      keys: the fields the rule reads (named in the error).
      test: returns True when the config is allowed.
      allowed: what is allowed, in words: ``"one entry of epochs per dataset"``.
    """

    keys: tuple[str, ...]
    test: Callable[[Any], bool]
    allowed: str


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


positive = Constraint(lambda v: _real(v) and v > 0, "> 0")
nonnegative = Constraint(lambda v: _real(v) and v >= 0, ">= 0")
finite = Constraint(lambda v: _real(v) and math.isfinite(v), "finite")
nonempty = Constraint(lambda v: len(v) > 0, "non-empty")


def at_least(low: float) -> Constraint:
    """Values ``>= low``."""
    return Constraint(lambda v: _real(v) and v >= low, f">= {low}")


def at_most(high: float) -> Constraint:
    """Values ``<= high``."""
    return Constraint(lambda v: _real(v) and v <= high, f"<= {high}")


def in_range(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Constraint:
    """Values in the interval from ``low`` to ``high`` (closed unless ``low_open`` / ``high_open``)."""

    def test(v: Any) -> bool:
        return _real(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    return Constraint(test, f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")


def one_of(*values: Any) -> Constraint:
    """Values equal to one of ``values``."""
    return Constraint(lambda v: v in values, f"one of {list(values)}")


def each(*constraints: Constraint) -> Constraint:
    """For tuples and lists: every element meets every one of ``constraints``."""
    words = " and ".join(c.allowed for c in constraints)
    return Constraint(lambda v: all(c(x) for x in v for c in constraints), f"a sequence whose every element is {words}")


def optional(*constraints: Constraint) -> Constraint:
    """None, or a value meeting every one of ``constraints``."""
    words = " and ".join(c.allowed for c in constraints)
    return Constraint(lambda v: v is None or all(c(v) for c in constraints), f"None or {words}")


def _type_noun(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a finite number"
    if tp is str:
        return "text"
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _type_noun(a) for a in args)
    if origin in (tuple, list):
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return f"a comma-separated list of {_plural(args[0])}"
        if origin is tuple and args:
            return f"{len(args)} comma-separated values ({', '.join(_type_noun(a) for a in args)})"
        return f"a comma-separated list of {_plural(args[0]) if args else 'values'}"
    return _type_name(tp)


def _plural(tp: Any) -> str:
    return {int: "integers", float: "finite numbers", str: "words", bool: "booleans"}.get(tp, _type_noun(tp))


def _type_ok(v: Any, tp: Any) -> bool:
    """Whether ``v`` is a value of the annotated type ``tp`` (ints count as floats; floats must be finite)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or isinstance(tp, (str, typing.TypeVar)):
        return True
    if tp is bool:
        return isinstance(v, bool)
    if tp is int:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)
    if tp is float:
        return _real(v) and math.isfinite(v)
    if tp is str:
        return isinstance(v, str)
    if origin is typing.Literal:
        return any(v == a and type(v) is type(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(v, a) for a in args)
    if tp is type(None):
        return v is None
    if origin in (tuple, list):
        if not isinstance(v, (tuple, list)):
            return False
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(x, args[0]) for x in v)
        if origin is tuple and args:
            return len(v) == len(args) and all(_type_ok(x, a) for x, a in zip(v, args))
        return all(_type_ok(x, args[0]) for x in v) if args else True
    if isinstance(tp, type):
        return isinstance(v, tp)
    return True


def _show(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return ",".join(_show(x) for x in v) if v else "(empty)"
    if isinstance(v, str):
        return repr(v)
    return str(v)


#: Constraints for fields with these conventional names (numbers only) where the config class declares none
#: for the field itself, so that every method's config refuses ``--set num_steps=-5``. A class overrides one
#: by declaring the field in its ``CONSTRAINTS``.
CONVENTIONS: dict[str, Constraint] = {
    "num_steps": positive, "steps": positive, "epochs": positive, "batch_size": positive,
    "learning_rate": positive, "lr": positive, "log_every": positive, "keep_checkpoints": positive,
    "eval_every": nonnegative, "checkpoint_every": nonnegative,
}


def _constraints_of(cls: type) -> dict[str, tuple[Constraint, ...]]:
    declared = getattr(cls, "CONSTRAINTS", {})
    return {name: tuple(cs) if isinstance(cs, (tuple, list)) else (cs,) for name, cs in dict(declared).items()}


def validate_config(config: Any, *, prefix: str = "") -> Any:
    """Checks every value of a (nested) config dataclass; returns the config unchanged.

    Each value must have its annotated type (ints where ``int``, finite numbers where ``float``,
    one of the listed values for a ``Literal``, element by element for tuples), meet the
    constraints its class declares in ``CONSTRAINTS``, and the whole config its ``RULES``.

    Raises:
      ConfigError: one line naming the key, the value and what is allowed, for the first bad value.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ConfigError(f"expected a config dataclass instance, got {type(config).__name__}")
    cls = type(config)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: check constraints only
        hints = {}
    names = {f.name for f in dataclasses.fields(config)}
    constraints = _constraints_of(cls)
    unknown = sorted(set(constraints) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}.CONSTRAINTS names fields it does not have: {unknown}")
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate_config(value, prefix=key + ".")
            continue
        tp = hints.get(f.name, Any)
        default = f.default if f.default is not dataclasses.MISSING else None
        where = f"({cls.__name__}.{f.name}" + (f", default {_show(default)})" if default is not None else ")")
        if not _type_ok(value, tp):
            raise ConfigError(f"bad config value {key}={_show(value)}: must be {_type_noun(tp)} {where}")
        checks = constraints.get(f.name)
        if checks is None:
            checks = (CONVENTIONS[f.name],) if f.name in CONVENTIONS and _real(value) else ()
        for c in checks:
            if not c(value):
                noun = _type_noun(tp)
                allowed = f"{noun} {c.allowed}" if noun in ("an integer", "a finite number") else c.allowed
                raise ConfigError(f"bad config value {key}={_show(value)}: must be {allowed} {where}")
    for rule in getattr(cls, "RULES", ()):
        try:
            ok = bool(rule.test(config))
        except (TypeError, ValueError, AttributeError, IndexError, KeyError):
            ok = False
        if not ok:
            shown = ", ".join(f"{prefix + k}={_show(getattr(config, k, None))}" for k in rule.keys)
            raise ConfigError(f"bad config values {shown}: {rule.allowed} ({cls.__name__})")
    return config


def split_spec(spec: str) -> tuple[Path, str | None]:
    """Splits ``"path/to/file.py:arg"`` into the path and the argument (None if absent)."""
    path, sep, arg = spec.partition(".py:")
    if sep:
        return Path(path + ".py"), arg
    return Path(spec), None


def load_config_module(path: str | Path) -> types.ModuleType:
    """Imports a config file as a module. Raises ConfigError if it is missing or broken."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.py") if not p.name.startswith("_"))
        hint = f" such as {', '.join(str(path / n) for n in inside[:3])}" if inside else ""
        raise ConfigError(
            f"config path {str(path)!r} is a folder, not a config file. Give a .py file inside it{hint} "
            "(`jaxlab list` shows them all)."
        )
    if not path.is_file():
        raise ConfigError(
            f"config file {str(path)!r} not found. Give a path to a .py file, e.g. "
            "configs/examples/mlp_digits.py (`jaxlab list` shows them all)."
        )
    if path.suffix != ".py":
        raise ConfigError(f"config file {str(path)!r} is not a Python file; give a .py file with get_config(arg=None)")
    name = f"_jaxlab_config_{abs(hash(str(path.resolve())))}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"config file {str(path)!r} cannot be imported: {e}") from None
    if spec is None or spec.loader is None:
        raise ConfigError(f"config file {str(path)!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # surface the file name with whatever went wrong inside it
        del sys.modules[name]
        raise ConfigError(f"config file {str(path)!r} failed to import: {type(e).__name__}: {e}") from None
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
    except Exception as e:  # noqa: BLE001 - whatever the config file raises, name the file and argument
        raise ConfigError(f"{str(path)!r}: get_config({arg!r}) failed: {type(e).__name__}: {e}") from None
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


def apply_overrides(config: Any, overrides: Sequence[str], *, validate: bool = True) -> Any:
    """Returns ``config`` with ``key=value`` overrides applied, each type-checked, then validated.

    Args:
      config: a (nested) config dataclass.
      overrides: ``"key=value"`` strings; nested fields as ``"model.width=64"``.
      validate: check the result with :func:`validate_config` (every value, not only the overridden).

    Raises:
      ConfigError: for a malformed override, an unknown key (the message lists the valid keys), a
        value that does not parse as the field's type, or a value its constraints do not allow.
    """
    fields = config_fields(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. --set num_steps=100)")
        if key not in fields:
            raise ConfigError(
                f"unknown config key {key!r} for {type(config).__name__}. Valid keys: {', '.join(sorted(fields))}"
            )
        try:
            value = parse_value(text, fields[key])
        except (ValueError, OverflowError, RecursionError) as e:
            noun = _type_noun(fields[key])
            hint = "" if noun in str(e) else f"; it must be {noun}"
            raise ConfigError(f"bad value for {key!r}: {e}{hint}") from None
        try:
            config = _replace_path(config, key.split("."), value)
        except (TypeError, ValueError) as e:  # the dataclass's own __post_init__ checks
            raise ConfigError(f"bad value for {key!r}: {text!r} is refused by {type(config).__name__}: {e}") from None
    if validate:
        validate_config(config)
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


def require_config(config: Any, cls: type, where: str) -> None:
    """Raises a TypeError naming ``cls`` unless ``config`` is one (a method's function given another's config).

    Args:
      config: what the user passed.
      cls: the config class ``where`` takes.
      where: the function, as the user calls it (``"jaxlab.methods.recycle.init"``).
    """
    if not isinstance(config, cls):
        raise TypeError(f"{where} needs a {cls.__name__} (build one, or load a config file of this method with "
                        f"jaxlab.core.load_config), got {type(config).__name__}")
