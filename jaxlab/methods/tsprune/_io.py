"""Saving and reloading a (pruned) forecaster: its config as JSON, its variables through orbax.

A structurally pruned model is an ordinary config (per-layer heads and widths, kept modes and
channels), so reloading needs nothing but the config: :func:`load_forecaster` rebuilds the module,
takes the variables' shapes from ``jax.eval_shape`` of its ``init``, restores into them and checks
every restored shape against them (orbax itself restores mismatched arrays silently), so a config
that disagrees with its arrays fails loudly (Torch-Pruning's issue #436).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jaxlab import timeseries as ts

CONFIG_CLASSES = {cls.__name__: cls for cls in (ts.TransformerConfig, ts.InformerConfig, ts.AutoformerConfig,
                                                 ts.FEDformerConfig, ts.CrossformerConfig, ts.DLinearConfig)}


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def config_to_json(config: Any) -> str:
    return json.dumps({"class": type(config).__name__, "fields": dataclasses.asdict(config)}, indent=1)


def config_from_json(text: str) -> Any:
    """Inverse of :func:`config_to_json` (lists become tuples)."""
    payload = json.loads(text)
    name = payload.get("class")
    if name not in CONFIG_CLASSES:
        raise ValueError(f"unknown forecaster config class {name!r}; known: {sorted(CONFIG_CLASSES)}")
    return CONFIG_CLASSES[name](**{k: _tuples(v) for k, v in payload["fields"].items()})


def save_forecaster(path: str | Path, config: Any, variables: Any) -> Path:
    """Writes ``config.json`` and an orbax checkpoint of ``variables`` into the folder ``path``."""
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(config_to_json(config), encoding="utf-8")
    for name in ("absl", "orbax", "orbax.checkpoint"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path / "variables", jax.device_get(variables), force=True)
    return path


def load_forecaster(path: str | Path, *, dtype=jnp.float32) -> tuple[Any, Any, Any]:
    """Reloads what :func:`save_forecaster` wrote: ``(config, model, variables)``."""
    path = Path(path).resolve()
    config = config_from_json((path / "config.json").read_text(encoding="utf-8"))
    model = config.module()
    x = jnp.zeros((1, config.input_len, config.channels), dtype)
    abstract = jax.eval_shape(model.init, jax.random.key(0), x)
    with ocp.StandardCheckpointer() as ckpt:
        variables = ckpt.restore(path / "variables", abstract)
    # orbax restores the saved arrays even where their shapes differ from the target's: check them
    want = dict(jax.tree_util.tree_flatten_with_path(abstract)[0])
    for p, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
        if p not in want or tuple(want[p].shape) != tuple(jnp.shape(leaf)):
            name = "/".join(str(getattr(k, "key", k)) for k in p)
            expected = tuple(want[p].shape) if p in want else "nothing"
            raise ValueError(f"{path}: variable {name} has shape {tuple(jnp.shape(leaf))} but the saved config "
                             f"{type(config).__name__} builds {expected}; the config and the arrays do not match")
    return config, model, variables
