"""The five forecasters of the study as ``jaxlab.timeseries`` configs, and what pruning may touch.

``zoo_config(name, sizes, channels=..., horizon=...)`` builds the config of one model from shared
sizes (TSL's defaults in the paper's runs, a narrower width on CPU). Unstructured pruning acts on
every weight matrix of the encoder and decoder bodies (attention projections, FFNs, Informer's
distilling convolutions, FEDformer's Fourier weights, Crossformer's routers and segment merging,
trend and output projections) and leaves the input embeddings (token convolution, time-feature
map, learned positions), biases and norms dense (:func:`prunable`). FEDformer's complex Fourier
weights are ranked by modulus (:func:`pruning_scores`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jaxlab import prune
from jaxlab import timeseries as ts

MODELS: tuple[str, ...] = ("transformer", "informer", "autoformer", "fedformer", "crossformer")


@dataclasses.dataclass(frozen=True)
class ZooSizes:
    """Sizes shared by the five models (Time-Series-Library's defaults)."""

    input_len: int = 96
    label_len: int = 48
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    e_layers: int = 2
    d_layers: int = 1
    dropout: float = 0.1
    time_features: int = ts.NUM_TIME_FEATURES
    factor: int = 3
    moving_avg: int = 25
    modes: int = 32
    seg_len: int = 12


def zoo_config(name: str, sizes: ZooSizes, *, channels: int, horizon: int, d_model: int | None = None,
               d_ff: int | None = None) -> Any:
    """The config of model ``name`` (``d_model``/``d_ff`` override the sizes, for width-matched dense models)."""
    d = sizes.d_model if d_model is None else d_model
    f = sizes.d_ff if d_ff is None else d_ff
    common = dict(input_len=sizes.input_len, horizon=horizon, channels=channels, d_model=d, n_heads=sizes.n_heads,
                  d_ff=f, dropout=sizes.dropout)
    encdec = dict(common, label_len=sizes.label_len, e_layers=sizes.e_layers, d_layers=sizes.d_layers,
                  time_features=sizes.time_features)
    if name == "transformer":
        return ts.TransformerConfig(**encdec)
    if name == "informer":
        return ts.InformerConfig(**encdec, factor=sizes.factor)
    if name == "autoformer":
        return ts.AutoformerConfig(**encdec, factor=sizes.factor, moving_avg=sizes.moving_avg)
    if name == "fedformer":
        return ts.FEDformerConfig(**encdec, modes=sizes.modes, moving_avg=sizes.moving_avg)
    if name == "crossformer":
        return ts.CrossformerConfig(**common, e_layers=sizes.e_layers, seg_len=sizes.seg_len, routers=sizes.factor)
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


_DENSE_ONLY = ("enc_embedding", "dec_embedding", "dec_position")


def prunable(path: tuple[str, ...], leaf) -> bool:
    """Weight matrices (rank >= 2) outside the input embeddings."""
    return prune.default_include(path, leaf) and not any(p in _DENSE_ONLY for p in path)


def _fourier_pair(path: tuple[str, ...]) -> tuple[str, ...] | None:
    if path and path[-1] == "weights_real":
        return path[:-1] + ("weights_imag",)
    if path and path[-1] == "weights_imag":
        return path[:-1] + ("weights_real",)
    return None


def pruning_scores(params) -> Any:
    """``|w|``, with the modulus for both parts of FEDformer's complex Fourier weights."""
    return prune.complex_modulus_scores(params, _fourier_pair)


def magnitude_masks(params, sparsity: float, *, scope: str = "global"):
    """Unstructured magnitude masks over :func:`prunable` weights (complex weights by modulus)."""
    return prune.magnitude_masks(params, sparsity, scope=scope, include=prunable, scores=pruning_scores(params))


def count_params(params, *, include=None) -> int:
    """Number of parameters (of the leaves ``include`` picks, default all)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    total = 0
    for p, leaf in flat:
        keys = tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in p)
        if include is None or include(keys, leaf):
            total += int(np.prod(np.shape(leaf)))
    return total


def count_nonzero(params, *, include=None) -> int:
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    total = 0
    for p, leaf in flat:
        keys = tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in p)
        if include is None or include(keys, leaf):
            total += int(np.count_nonzero(np.asarray(leaf)))
    return total


def structured_keep(config, variables, fraction: float, *, kinds: tuple[str, ...] = ("heads", "ffn")) -> dict:
    """Kept units when ``fraction`` of every head and FFN group is removed (lowest L2 importance first).

    ``kinds`` picks the groups by the end of their name: ``heads`` (attention heads of every block),
    ``ffn`` (FFN and MLP units), ``channels`` (Informer's distilling), ``routers``, ``modes``.
    """
    keep = {}
    for g in config.dependency_groups():
        kind = _kind(g.name)
        if kind in kinds:
            n_keep = max(1, g.size - int(round(fraction * g.size)))
            keep[g.name] = prune.top_units(prune.group_importance(variables, g), n_keep)
    return keep


def _kind(name: str) -> str:
    last = name.split("/")[-1]
    if last.endswith("heads") or last in ("time_attention", "dim_sender", "dim_receiver", "cross_attention"):
        return "heads"
    if last in ("ffn", "mlp", "mlp1", "mlp2"):
        return "ffn"
    return last
