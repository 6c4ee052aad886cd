import dataclasses
from typing import Literal

import pytest

from jaxlab.core import ConfigError, apply_overrides, load_config, parse_value


@dataclasses.dataclass(frozen=True)
class Optim:
    lr: float = 0.1
    name: Literal["adam", "sgd"] = "adam"


@dataclasses.dataclass(frozen=True)
class Cfg:
    steps: int = 10
    hidden: tuple[int, ...] = (64,)
    pair: tuple[int, float] = (1, 2.0)
    flag: bool = False
    label: str = "x"
    seed: int | None = None
    optim: Optim = Optim()


def test_overrides_parse_each_type():
    c = apply_overrides(Cfg(), ["steps=20", "hidden=128,64", "pair=3,0.5", "flag=true", "label=hello",
                                "seed=none", "optim.lr=1e-3", "optim.name=sgd"])
    assert c == Cfg(steps=20, hidden=(128, 64), pair=(3, 0.5), flag=True, label="hello", seed=None,
                    optim=Optim(lr=1e-3, name="sgd"))
    assert apply_overrides(Cfg(), ["steps=1e3"]).steps == 1000
    assert apply_overrides(Cfg(), ["seed=7"]).seed == 7


def test_overrides_leave_the_original_untouched():
    c = Cfg()
    apply_overrides(c, ["steps=3"])
    assert c.steps == 10


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        apply_overrides(Cfg(), ["stepz=3"])
    msg = str(e.value)
    assert "'stepz'" in msg
    for key in ("steps", "hidden", "optim.lr", "optim.name"):
        assert key in msg


@pytest.mark.parametrize("override, needle", [
    ("steps=abc", "'abc' is not an integer"),
    ("steps=1.5", "not an integer"),
    ("optim.lr=fast", "not a number"),
    ("flag=maybe", "not a boolean"),
    ("optim.name=rmsprop", "not one of"),
    ("pair=1", "needs 2"),
    ("steps", "key=value"),
    ("=3", "key=value"),
])
def test_bad_values_are_refused(override, needle):
    with pytest.raises(ConfigError, match=needle):
        apply_overrides(Cfg(), [override])


def test_parse_value_any_is_json_or_text():
    from typing import Any
    assert parse_value("[1, 2]", Any) == [1, 2]
    assert parse_value("abc", Any) == "abc"


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.py"))


def test_config_file_without_get_config(tmp_path):
    f = tmp_path / "c.py"
    f.write_text("X = 1\n")
    with pytest.raises(ConfigError, match="get_config"):
        load_config(str(f))


def test_config_file_that_fails_to_import(tmp_path):
    f = tmp_path / "c.py"
    f.write_text("import not_a_module_anywhere\n")
    with pytest.raises(ConfigError, match="failed to import"):
        load_config(str(f))


def test_config_argument_is_passed(tmp_path):
    f = tmp_path / "c.py"
    f.write_text(
        "import dataclasses\n"
        "@dataclasses.dataclass(frozen=True)\nclass C:\n    n: int = 1\n"
        "def get_config(arg=None):\n"
        "    if arg not in (None, 'big'): raise ValueError(f'bad arg {arg}')\n"
        "    return C(n=100 if arg == 'big' else 1)\n"
    )
    assert load_config(str(f))[0].n == 1
    assert load_config(f"{f}:big")[0].n == 100
    with pytest.raises(ConfigError, match="bad arg"):
        load_config(f"{f}:huge")


def test_get_config_must_return_a_dataclass(tmp_path):
    f = tmp_path / "c.py"
    f.write_text("def get_config(arg=None):\n    return {'a': 1}\n")
    with pytest.raises(ConfigError, match="expected a dataclass"):
        load_config(str(f))


def test_require_config_names_the_class_and_what_was_passed():
    import dataclasses

    from jaxlab.core import require_config

    @dataclasses.dataclass(frozen=True)
    class Mine:
        seed: int = 0

    require_config(Mine(), Mine, "m.init")   # the right class passes
    with pytest.raises(TypeError, match=r"m\.init needs a Mine .* got dict"):
        require_config({}, Mine, "m.init")
