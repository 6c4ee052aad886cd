"""Config constraints, and fuzzing of the ``--set`` parser: a clear ConfigError or a correct value, never a crash."""

import dataclasses
import math
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxlab.core import (ConfigError, Rule, apply_overrides, each, finite, in_range, load_config, nonempty,
                         nonnegative, one_of, optional, parse_value, positive, validate_config)

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Inner:
    width: int = 8
    CONSTRAINTS: ClassVar[dict] = {"width": positive}


@dataclasses.dataclass(frozen=True)
class Cfg:
    num_steps: int = 10
    learning_rate: float = 1e-3
    fraction: float = 0.5
    name: Literal["adam", "sgd"] = "adam"
    sizes: tuple[int, ...] = (4, 8)
    pair: tuple[int, float] = (1, 2.0)
    limit: int | None = None
    flag: bool = False
    label: str = "x"
    inner: Inner = Inner()
    CONSTRAINTS: ClassVar[dict] = {
        "num_steps": positive, "learning_rate": (positive, finite), "fraction": in_range(0.0, 1.0, high_open=True),
        "sizes": (nonempty, each(positive)), "limit": optional(nonnegative), "label": one_of("x", "y"),
    }
    RULES: ClassVar[tuple] = (Rule(("num_steps", "limit"), lambda c: c.limit is None or c.limit <= c.num_steps,
                                   "limit must not exceed num_steps"),)


@pytest.mark.parametrize("override, needle", [
    ("num_steps=-5", "bad config value num_steps=-5: must be an integer > 0 (Cfg.num_steps, default 10)"),
    ("num_steps=0", "num_steps=0: must be an integer > 0"),
    ("learning_rate=nan", "learning_rate=nan: must be a finite number"),
    ("learning_rate=inf", "learning_rate=inf: must be a finite number"),
    ("learning_rate=-1e-3", "learning_rate=-0.001: must be a finite number > 0"),
    ("fraction=1", "fraction=1.0: must be a finite number in [0.0, 1.0)"),
    ("sizes=", "sizes=(empty): must be non-empty"),
    ("sizes=4,0", "sizes=4,0: must be a sequence whose every element is > 0"),
    ("limit=-1", "limit=-1: must be None or >= 0"),
    ("label=z", "label='z': must be one of ['x', 'y']"),
    ("inner.width=0", "inner.width=0: must be an integer > 0 (Inner.width, default 8)"),
    ("limit=20", "bad config values num_steps=10, limit=20: limit must not exceed num_steps (Cfg)"),
    ("num_steps=", "'' is not an integer"),
    ("num_steps=1.5", "'1.5' is not an integer"),
    ("name=", "'' is not one of ['adam', 'sgd']"),
    ("flag=maybe", "not a boolean"),
])
def test_each_bad_value_is_one_line_naming_key_value_and_what_is_allowed(override, needle):
    with pytest.raises(ConfigError) as e:
        apply_overrides(Cfg(), [override])
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_good_values_pass_and_types_are_checked_for_values_from_code():
    c = apply_overrides(Cfg(), ["num_steps=20", "limit=20", "learning_rate=1", "sizes=1", "inner.width=3"])
    assert (c.num_steps, c.limit, c.learning_rate, c.sizes, c.inner.width) == (20, 20, 1.0, (1,), 3)
    with pytest.raises(ConfigError, match="num_steps=True: must be an integer"):
        validate_config(Cfg(num_steps=True))
    with pytest.raises(ConfigError, match="pair=1,.x.: must be 2 comma-separated values"):
        validate_config(Cfg(pair=(1, "x")))
    with pytest.raises(ConfigError, match="learning_rate=nan"):
        validate_config(Cfg(learning_rate=float("nan")))


def test_constraints_naming_missing_fields_are_a_bug_in_the_config():
    @dataclasses.dataclass(frozen=True)
    class Broken:
        a: int = 1
        CONSTRAINTS: ClassVar[dict] = {"b": positive}

    with pytest.raises(ConfigError, match="names fields it does not have"):
        validate_config(Broken())


def _shipped():
    """Every config file under configs/, with no argument and with the registry's arguments for it."""
    from jaxlab._registry import EXPERIMENTS

    args: dict[str, set] = {}
    for e in EXPERIMENTS:
        args.setdefault(e.config, set()).update(a for a in (e.quick_arg, e.full_arg) if a)
    out = []
    for path in sorted((ROOT / "configs").rglob("*.py")):
        rel = path.relative_to(ROOT / "configs").as_posix()
        if not path.name.startswith("_"):
            out += [rel] + [f"{rel}:{a}" for a in sorted(args.get(rel, ()))]
    return out


@pytest.mark.parametrize("spec", _shipped())
def test_shipped_configs_meet_their_constraints(spec):
    config, _ = load_config(str(ROOT / "configs" / spec))
    validate_config(config)


def test_conventional_fields_are_checked_without_declarations():
    @dataclasses.dataclass(frozen=True)
    class Undeclared:
        num_steps: int = 10
        batch_size: int = 4
        eval_every: int = 0
        epochs: tuple[int, ...] = (1, 2)  # not a number: conventions do not apply
        CONSTRAINTS: ClassVar[dict] = {}

    for bad, needle in (("num_steps=-5", "num_steps=-5: must be an integer > 0"),
                        ("batch_size=0", "batch_size=0"), ("eval_every=-1", "eval_every=-1: must be an integer >= 0")):
        with pytest.raises(ConfigError, match=needle):
            apply_overrides(Undeclared(), [bad])
    assert apply_overrides(Undeclared(), ["epochs=3"]).epochs == (3,)

    @dataclasses.dataclass(frozen=True)
    class Overridden:
        num_steps: int = 0
        CONSTRAINTS: ClassVar[dict] = {"num_steps": nonnegative}

    assert validate_config(Overridden()).num_steps == 0


def test_config_path_that_is_a_folder(tmp_path):
    (tmp_path / "a.py").write_text("")
    with pytest.raises(ConfigError, match="is a folder, not a config file.*a.py"):
        load_config(str(tmp_path))


# ----------------------------------------------------------------------------- fuzzing

FIELDS = list(dataclasses.fields(Cfg))


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from([f.name for f in FIELDS] + ["inner.width", "nope", "", "inner", "inner.nope"]),
       text=st.one_of(st.text(max_size=30), st.sampled_from(["nan", "inf", "-inf", "1e400", "-0", "1_0", "0x10",
                                                             "None", "none", "()", ",", "1,,2", "9" * 5000, " 3 "])),
       sep=st.sampled_from(["=", "", " = "]))
def test_set_parser_fuzz_gives_a_config_error_or_a_valid_config(key, text, sep):
    try:
        c = apply_overrides(Cfg(), [f"{key}{sep}{text}"])
    except ConfigError as e:
        msg = str(e)
        assert msg and "\n" not in msg.strip()
        return
    validate_config(c)  # whatever was accepted meets every constraint
    assert math.isfinite(c.learning_rate) and c.num_steps > 0 and all(s > 0 for s in c.sizes)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40),
       tp=st.sampled_from([int, float, bool, str, Literal["a", "b"], tuple[int, ...], tuple[int, float],
                           int | None, tuple[int | None, ...], tuple[tuple[str, float], ...]]))
def test_parse_value_fuzz_raises_value_error_or_returns_the_type(text, tp):
    try:
        v = parse_value(text, tp)
    except ValueError:
        return
    if tp is int:
        assert isinstance(v, int) and not isinstance(v, bool)
    elif tp is float:
        assert isinstance(v, float)
    elif tp is bool:
        assert isinstance(v, bool)
    elif tp is str:
        assert v == text
