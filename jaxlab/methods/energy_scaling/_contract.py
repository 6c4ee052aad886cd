"""The method contract of the energy study: ``init(key, config)``, ``train_step(state, batch, key)``, ``evaluate``.

A :class:`ScalingConfig` describes a grid of runs over two models; these functions train one of them at one
grid point: the first model of ``config.models`` at ``config.grid[0]``, with its global batch, its accumulation
(``global / (devices x local)`` micro-batches per update) and its optimiser (:func:`make_optimizer`, schedule
over the point's ``epochs x (num_train // global)`` updates). Choose another with
``dataclasses.replace(config, models=("afno",), grid=("2g64G16l",))``; :func:`run` measures the whole grid.

The step is :func:`make_data_parallel_step`'s body run unsharded: the update does not depend on the number of
devices (micro-batch ``a`` takes rows ``a, a + accum, ...`` of the global batch on any mesh; BatchNorm is
synchronised), so on one device it is the update ``run_point`` applies at that point. Arrays already laid out
on a ``"data"`` mesh (:func:`shard_batch`, :func:`replicate`) run under GSPMD.

``state.model_state`` is the model's non-trained variables: ``{"batch_stats": ...}`` (BatchNorm running
statistics) for the ResNet, ``{}`` for AFNO.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import PRNGKey, require_config
from jaxlab.train import MethodState

from ._data_parallel import _accumulated_update, _default_unroll, accumulation_steps
from ._scaling import (
    ScalingConfig,
    _evaluate_arrays,
    _input_shape,
    _model_kwargs,
    _num_steps,
    make_optimizer,
    parse_run,
)
from ._tasks import _afno_parts, _init_variables, _resnet_parts


@dataclasses.dataclass(frozen=True)
class _Parts:
    """What a config's train_step and evaluate need, built once per config."""

    name: str
    input_shape: tuple[int, ...]
    global_batch: int
    accum: int
    tx: optax.GradientTransformation
    loss_fn: Callable
    init_fn: Callable  # jitted: key -> (params, model_state, opt_state)
    eval_fn: Callable  # jitted: (params, model_state, x, y) -> summed metrics


@functools.lru_cache(maxsize=16)
def _parts(config: ScalingConfig) -> _Parts:
    name = config.models[0]
    devices, global_batch, local_batch = parse_run(config.grid[0])
    accum = accumulation_steps(global_batch, local_batch, devices)
    num_steps = _num_steps(config, config.num_train, global_batch, point=config.grid[0])   # checks the batch
    tx = make_optimizer(name, config, global_batch, num_steps)
    model, loss_fn, eval_fn = (_resnet_parts if name == "resnet" else _afno_parts)(**_model_kwargs(name, config))
    shape = _input_shape(name, config)

    @jax.jit
    def init_fn(key):
        params, model_state = _init_variables(model, jnp.zeros((1, *shape), jnp.float32), key)
        return params, model_state, tx.init(params)

    return _Parts(name, shape, global_batch, accum, tx, loss_fn, init_fn, jax.jit(eval_fn))


def _check_arrays(data: Any, p: _Parts, what: str, rows: int | None) -> None:
    hint = (f"take rows of `make_task({p.name!r}, config).{'train' if what == 'batch' else 'test'}` "
            "(a dict of 'x' and 'y' arrays)")
    if not isinstance(data, dict) or set(data) != {"x", "y"}:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{what} must be a dict with exactly the keys ['x', 'y'], got {got}; {hint}")
    n = np.shape(data["x"])[0] if np.ndim(data["x"]) else 0
    want_x = (n, *p.input_shape)
    want_y = (n,) if p.name == "resnet" else want_x
    for k, want, kind in (("x", want_x, "floating"), ("y", want_y, "integer" if p.name == "resnet" else "floating")):
        shape, dtype = tuple(np.shape(data[k])), np.dtype(getattr(data[k], "dtype", None))
        if shape != want or (rows is not None and shape[0] != rows):
            expect = (rows if rows is not None else "samples", *want[1:])
            rows_are = f"the global batch of grid[0] = {rows} rows" if rows is not None else "any number of rows"
            raise ValueError(f"{what}[{k!r}] has shape {shape}; expected {expect} ({rows_are}, the inputs of this "
                             f"config's {p.name} model); {hint}")
        ok = np.issubdtype(dtype, np.integer) if kind == "integer" else dtype == np.float32
        if not ok:
            need = "integer class labels" if kind == "integer" else "float32"
            raise ValueError(f"{what}[{k!r}] has dtype {dtype}; expected {need}: {hint}")


def init(key: PRNGKey, config: ScalingConfig) -> MethodState:
    """The state at step 0 of the first model of ``config.models`` at grid point ``config.grid[0]``.

    Shapes come from the config (``image_size`` for the ResNet, ``field_shape`` and ``field_channels`` for
    AFNO); no data is generated. With ``key = jax.random.key(config.seed, impl="rbg")`` the parameters are those
    every grid point of ``run`` starts from.

    Args:
      key: the parameters' PRNG key.
      config: a :class:`ScalingConfig`.

    Returns:
      A :class:`jaxlab.train.MethodState`: parameters, the optimiser's state, and ``model_state`` =
      ``{"batch_stats": ...}`` (ResNet) or ``{}`` (AFNO).

    Raises:
      ValueError: when ``grid[0]``'s global batch is not a multiple of devices x local batch, or exceeds
        ``num_train``.
    """
    require_config(config, ScalingConfig, "jaxlab.methods.energy_scaling.init")
    p = _parts(config)
    params, model_state, opt_state = p.init_fn(key)
    return MethodState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, model_state=model_state,
                       config=config)


def train_step(state: MethodState, batch: dict, key: PRNGKey) -> tuple[MethodState, dict]:
    """One update of ``run_point``'s data-parallel step: gradients averaged over the micro-batches, then SGD
    with momentum and weight decay (ResNet) or Adam (AFNO) on the warm-up cosine schedule of the grid point.
    The warm-up starts at a rate of 0 (``run_point``'s schedule), so the first step leaves the parameters as
    they are (it still updates the optimiser state and, for the ResNet, the BatchNorm statistics).

    Pure; ``jax.jit(train_step)`` compiles once per config.

    Args:
      state: from :func:`init` (or a previous step).
      batch: ``{"x": inputs, "y": targets}`` with ``G`` rows, the global batch of ``config.grid[0]``
        (``parse_run(config.grid[0])[1]``): for the
        ResNet ``x`` float32 ``(G, image_size, image_size, 3)`` and ``y`` integer labels ``(G,)``; for AFNO
        ``x`` and ``y`` float32 ``(G, *field_shape, field_channels)``. Get one from the generated data:
        ``task = make_task(config.models[0], config)``, then ``{k: v[idx] for k, v in task.train.items()}`` for
        ``G`` row indices ``idx`` (``run_point`` takes consecutive slices of a per-epoch permutation).
      key: split over the micro-batches (``fold_in(key, a)``); these models use no randomness.

    Returns:
      ``(new_state, metrics)``: ``loss`` (mean over micro-batches) and, for the ResNet, ``accuracy``.

    Raises:
      ValueError: when ``batch`` lacks a key or its arrays have the wrong shape or dtype.
    """
    p = _parts(state.config)
    _check_arrays(batch, p, "batch", p.global_batch)
    new, metrics = _accumulated_update(p.loss_fn, p.tx, state.train_state(), batch, key, global_batch=p.global_batch,
                                       accum=p.accum, unroll=_default_unroll(p.accum))
    return MethodState.wrap(new, state.config), metrics


def evaluate(state: MethodState, data: dict) -> dict:
    """``run_point``'s evaluation metrics on a split, in batches of 256 samples (the model in eval mode).

    Args:
      state: a trained state.
      data: ``{"x", "y"}`` as in :func:`train_step` with any number of samples (``run`` uses
        ``make_task(name, config).test``).

    Returns:
      ``eval_loss`` (mean cross-entropy, or mean squared error for AFNO) and, for the ResNet, ``eval_accuracy``
      (floats).

    Raises:
      ValueError: for the wrong keys, shapes or dtypes, or an empty split.
    """
    p = _parts(state.config)
    _check_arrays(data, p, "data", None)
    if np.shape(data["x"])[0] == 0:
        raise ValueError("data holds no samples; pass at least one (e.g. make_task(name, config).test)")
    return _evaluate_arrays(p.eval_fn, state.params, state.model_state, data)
