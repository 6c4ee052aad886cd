"""The method contract of AB-training: ``init``, ``train_step``, ``evaluate`` (see ``jaxlab.methods``).

The state is a :class:`jaxlab.train.MethodState` holding the arrays of the trainer's full-rank
:class:`FullState`: ``params`` the flat full-form parameters (``{"dense_0/kernel": ..., ...}``, the keys of
``_params.flatten``), ``opt_state`` their per-leaf optimiser states in the ZeRO-1 layout (every array flat, padded
to a multiple of ``config.group_size``), ``model_state`` the BatchNorm statistics (``{"batch_stats": ...}``,
``{}`` for the MLP) and ``step`` the int32 step count.

:func:`train_step` is the **full-rank data-parallel step** of ``ABTrainer`` (``make_full_step``: the batch split
over ``config.num_devices`` devices in groups of ``config.group_size``, gradients reduce-scattered and
all-reduced, clipped, AdamW on each member's slice, params all-gathered), at the learning rate of the
data-parallel schedule (``make_lr(config, baseline=True)``). It is every step of ``run()``'s data-parallel
baseline and the warm-up steps ``t < warmup_steps`` of its AB runs (both schedules agree there). The AB phases
themselves are not one pure step: a decomposition, sync or truncation changes the state's structure and the
factors' shapes (ranks), and the two sides run as separate sub-mesh programs; they are reached through
``ABTrainer`` (``make_trainer(config, seed, baseline=False).fit(...)``, what ``run()`` does), which starts from
the same initialisation as :func:`init` for the same key.

The mesh is the trainer's: the first ``config.num_devices`` devices as ``(num_devices / group_size,
group_size)``; on a single device use ``num_devices=1, group_size=1``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxlab.core import require_config, validate_config
from jaxlab.train import MethodState

from ._experiment import ABTrainConfig, _batches, config_devices, make_lr, make_tx
from ._models import make_model
from ._spmd import FullState, full_specs, global_mesh, init_full_state, make_eval, make_full_step, shardings


@functools.lru_cache(maxsize=16)
def _model(config: ABTrainConfig):
    validate_config(config)
    return make_model(config.model, hidden=config.hidden, width=config.width)


@functools.lru_cache(maxsize=16)
def _lr_table(config: ABTrainConfig) -> np.ndarray:
    """``lr(t)`` for ``t = 0..total_steps`` (the trainer's host-side rates, as one array to index in the step)."""
    lr = make_lr(config, baseline=True)
    return np.asarray([lr(t) for t in range(config.total_steps + 1)], np.float32)


@functools.lru_cache(maxsize=16)
def _mesh(num_devices: int, group_size: int):
    return global_mesh(np.asarray(config_devices(num_devices)), group_size)


def _placement(mesh, full: FullState) -> FullState:
    """The trainer's shardings of ``full`` (params replicated, optimiser states split over ``"member"``), with the
    mesh axes of size one dropped from the specs: XLA hands outputs back in that form (``P()`` for the equivalent
    ``P("member")`` on one member), and inputs placed otherwise would make a jitted ``train_step`` compile a second
    program for its second call."""
    def canonical(spec):
        def entry(e):
            names = e if isinstance(e, tuple) else (e,)
            kept = tuple(n for n in names if n is not None and mesh.shape[n] > 1)
            return None if not kept else kept if isinstance(e, tuple) else kept[0]

        entries = [entry(e) for e in spec]
        while entries and entries[-1] is None:   # P(None) != P() as a jit cache key
            entries.pop()
        return P(*entries)

    specs = jax.tree.map(canonical, full_specs(full), is_leaf=lambda x: isinstance(x, P))
    return shardings(mesh, specs, full)


def init(key: jax.Array, config: ABTrainConfig) -> MethodState:
    """The model of ``config`` at step 0 with fresh optimiser states: the trainer's initial state for ``key``.

    ``run()``'s seed ``s`` is ``key = jax.random.key(s)``. The arrays are placed on the config's mesh as the
    trainer places them (params replicated, optimiser states split over the members of a group).

    Raises:
      ValueError: fewer devices than ``config.num_devices``.

    Examples:
      >>> import jax
      >>> from jaxlab.methods import abtrain
      >>> cfg = abtrain.ABTrainConfig(hidden=(16,), num_devices=1, group_size=1)
      >>> state = abtrain.init(jax.random.key(0), cfg)
      >>> state.params["dense_0/kernel"].shape
      (784, 16)
    """
    require_config(config, ABTrainConfig, "jaxlab.methods.abtrain.init")
    model = _model(config)
    params, model_state = model.init(key)
    full = init_full_state(params, model_state, make_tx(config), config.group_size)
    full = jax.device_put(full, _placement(_mesh(config.num_devices, config.group_size), full))
    return MethodState(step=full.step, params=full.params, opt_state=full.opt, model_state=full.model_state,
                       config=config)


def _check_batch(batch: Any, config: ABTrainConfig, shape: tuple[int, ...], fn: str):
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"{fn}: batch must be a pair (x, y) of images (B, {', '.join(map(str, shape))}) and "
                         f"labels (B,), e.g. batches(config, x_train, y_train, seed=0)(t); got "
                         f"{type(batch).__name__}")
    x, y = batch
    if tuple(np.shape(x)[1:]) != shape or np.ndim(y) != 1 or np.shape(y)[0] != np.shape(x)[0]:
        raise ValueError(f"{fn}: batch must be x of shape (B, {', '.join(map(str, shape))}) (the model's input; "
                         f"load_data pads the images to it) and y of shape (B,); got {np.shape(x)} and {np.shape(y)}")
    if np.shape(x)[0] % config.num_devices:
        raise ValueError(f"{fn}: the batch of {np.shape(x)[0]} samples does not split over num_devices="
                         f"{config.num_devices}; use a multiple of it (config.global_batch)")
    if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
        raise ValueError(f"{fn}: y must hold integer class labels, got dtype {jnp.result_type(y)}")
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)


def train_step(state: MethodState, batch: tuple[jax.Array, jax.Array], key: jax.Array) -> tuple[MethodState, dict]:
    """One full-rank data-parallel step of ``ABTrainer`` (see the module docstring), at ``lr(state.step)``.

    The rate is the data-parallel schedule's at ``state.step`` (the last one, ``min_lr``, past
    ``total_steps``). Pure and jittable; the config is static, so ``jax.jit(train_step)`` compiles once per config
    and batch shape.

    Args:
      state: from :func:`init` (or a previous step).
      batch: ``(x, y)``: float32 images ``(B, H, W, C)`` of the model's input shape and int32 labels ``(B,)``,
        ``B`` a multiple of ``num_devices``; ``run()``'s batch of step ``t`` is ``batches(config, x_train,
        y_train, seed=seed)(t)`` with ``load_data(config)``'s training split.
      key: dropout (``vgg16_timm``; the other models are deterministic); device ``i`` uses ``fold_in(key, i)``.
        ``run()`` passes ``fold_in(jax.random.key(10_000 + seed), t)``.

    Returns:
      ``(state, metrics)`` with the scalar mean training ``loss`` (label-smoothed cross-entropy) and ``accuracy``
      over the batch.

    Raises:
      ValueError: a batch that is not ``(x, y)`` of the shapes above, or too few devices for the config.
    """
    config = state.config
    model = _model(config)
    x, y = _check_batch(batch, config, tuple(model.input_shape), "train_step")
    mesh = _mesh(config.num_devices, config.group_size)
    step = make_full_step(model, model.layout(state.params), make_tx(config), mesh, clip_norm=config.clip_norm,
                          label_smoothing=config.label_smoothing)
    rates = _lr_table(config)
    lr = jnp.asarray(rates)[jnp.minimum(state.step, len(rates) - 1)]
    full = FullState(state.step, state.params, state.opt_state, state.model_state)
    new, metrics = step(full, x, y, key, lr)
    new = jax.lax.with_sharding_constraint(new, _placement(mesh, new))
    return MethodState(step=new.step, params=new.params, opt_state=new.opt, model_state=new.model_state,
                       config=config), metrics


@functools.lru_cache(maxsize=16)
def _eval_program(config: ABTrainConfig) -> Callable:
    """The trainer's evaluation program (``make_eval``) of one batch, jitted once per config."""
    model = _model(config)
    return jax.jit(lambda params, model_state, x, y: make_eval(model, model.layout(params))(params, model_state, x, y))


def evaluate(state: MethodState, data: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Test accuracy and mean loss of the state's model, as ``ABTrainer.evaluate`` reports them for ``run()``.

    Batches of ``config.eval_batch`` samples (a last partial batch is dropped, as the trainer does); the loss has
    no label smoothing.

    Args:
      data: ``(x, y)``: images ``(N, H, W, C)`` and labels ``(N,)``, e.g. ``load_data(config)[2:]``.

    Returns:
      ``{"test_accuracy", "test_loss", "eval_size"}``.
    """
    config = state.config
    shape = tuple(_model(config).input_shape)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"evaluate: data must be a pair (x, y), e.g. load_data(config)[2:]; got {type(data).__name__}")
    x, y = np.asarray(data[0], np.float32), np.asarray(data[1])
    if x.shape[1:] != shape or y.shape != x.shape[:1]:
        raise ValueError(f"evaluate: data must be x of shape (N, {', '.join(map(str, shape))}) and y of shape (N,); "
                         f"got {x.shape} and {y.shape}")
    b = config.eval_batch
    n = (len(x) // b) * b
    if n == 0:
        raise ValueError(f"evaluate: need at least eval_batch={b} samples, got {len(x)}; lower config.eval_batch")
    fn = _eval_program(config)
    sums = [fn(state.params, state.model_state, x[i:i + b], y[i:i + b].astype(np.int32)) for i in range(0, n, b)]
    host = np.asarray(jax.device_get(sums), np.float64)
    return {"test_accuracy": float(host[:, 0].sum()) / n, "test_loss": float(host[:, 1].sum()) / n, "eval_size": n}


def batches(config: ABTrainConfig, x_train: np.ndarray, y_train: np.ndarray, *,
            seed: int) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """``get(t) -> (x, y)``: ``run()``'s global batch of step ``t`` for seed ``seed`` (``config.global_batch``
    samples of one epoch's permutation, drawn from ``(seed, epoch)``)."""
    return _batches(x_train, y_train, config.global_batch, seed)
