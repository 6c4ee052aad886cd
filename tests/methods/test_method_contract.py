"""The method contract (``jaxlab.methods``): every trained method exposes ``init(key, config)``, ``train_step(state, batch,
key) -> (state, metrics)``, ``evaluate(state, data) -> metrics`` and ``run(config, workdir)``, with these
parameter names (users call them by keyword too)."""

import dataclasses
import importlib
import inspect

import jax
import pytest

METHODS = ("abtrain", "autopq", "energy_scaling", "fwdgrad", "petnet", "recycle", "transplant", "tsprune",
           "weathermixer")
CONTRACT = {"init": ("key", "config"), "train_step": ("state", "batch", "key"), "evaluate": ("state", "data"),
            "run": ("config", "workdir")}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_exposes_the_contract(method):
    module = importlib.import_module(f"jaxlab.methods.{method}")
    for name, params in CONTRACT.items():
        fn = getattr(module, name, None)
        assert callable(fn), f"jaxlab.methods.{method}.{name} is missing"
        sig = inspect.signature(fn)
        positional = [p.name for p in sig.parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        assert tuple(positional[:len(params)]) == params, f"{method}.{name}{sig}: expected {params} first"
        extra = [p for p in sig.parameters.values() if p.name not in params and p.kind not in (p.VAR_KEYWORD,
                                                                                                 p.VAR_POSITIONAL)]
        assert all(p.default is not p.empty for p in extra), f"{method}.{name}{sig}: extra parameters need defaults"
        assert fn.__doc__, f"{method}.{name} has no docstring"


@dataclasses.dataclass(frozen=True)
class AnotherMethodsConfig:
    seed: int = 0


@pytest.mark.parametrize("method", METHODS)
def test_init_names_the_config_it_needs(method):
    module = importlib.import_module(f"jaxlab.methods.{method}")
    with pytest.raises(TypeError, match=r"(?s)Config.*AnotherMethodsConfig"):
        module.init(jax.random.key(0), AnotherMethodsConfig())
