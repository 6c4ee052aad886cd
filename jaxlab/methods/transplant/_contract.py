"""The method contract of Neuron Transplantation: ``init``, ``train_step``, ``evaluate`` (see ``jaxlab.methods``).

The state is a :class:`jaxlab.train.MethodState` of the ``k = max(config.ks)`` members of one seed of the
config's first experiment (``config.experiments[0]``, ``"<model>/<dataset>"``), stacked on a leading axis of
size ``k`` as :func:`init_stack` and :func:`train_stack` hold them:

* ``params``: the members' ``params``, every leaf ``(k, ...)``;
* ``opt_state``: their SGD-with-momentum states, stacked the same way;
* ``model_state``: ``{"batch_stats": ...}`` stacked for BatchNorm models (ResNet18, VGG11), else ``{}``;
* ``step``: an int32 scalar, the updates applied so far (one per :func:`train_step` for all members).

:func:`train_step` trains the **members** (the main model of the method: what is fused), one SGD step of every
member on its own batch, with ``config.lr``; it is the step of :func:`train_stack` (the same loss, optimiser and
per-member map), so a loop over :func:`member_batches` reproduces ``run()``'s member training epoch by epoch.

Fusion and fine-tuning: :func:`transplant_state` fuses the members with :func:`transplant_stacked` (and, for
BatchNorm models, recalibrates the statistics as ``run()`` does), giving a state of ``k = 1`` with a fresh
optimiser at step 0; :func:`finetune_step` is then its step: the same code as :func:`train_step` with
``config.finetune_lr``, the rate of ``run()``'s fine-tuning. (``train_step`` on a fused state would train it with
the members' rate.) Distillation students and the baselines (``avg``, ``ot``, ``wm``) stay with ``run()``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import require_config
from jaxlab.train import MethodState, TrainState, make_train_step

from ._experiment import TransplantConfig, check_config, experiment_splits, make_model, padded_size, \
    resolve_vectorize
from ._train import (Splits, _over_models, accuracies, epoch_order, init_stack, make_logits_fn, make_loss_fn,
                     make_tx, recalibrate_bn, seed_keys, takes_train)
from ._transplant import transplant_stacked

#: One image's shape ``(H, W, C)`` and the number of classes of each dataset, before any padding.
DATASET_SHAPES = {"fashion_mnist": ((28, 28, 1), 10), "mnist5k": ((28, 28, 1), 10), "digits": ((8, 8, 1), 10)}


@functools.lru_cache(maxsize=32)
def _setup(config: TransplantConfig):
    """``(model, image shape, num_classes, k, vectorize, has_batch_norm)`` of the config's first experiment."""
    check_config(config)
    model_name, _, dataset = config.experiments[0].partition("/")
    shape, num_classes = DATASET_SHAPES[dataset]
    size = padded_size(model_name)
    if size is not None and shape[0] < size:
        shape = (size, size, shape[2])
    model = make_model(model_name, config, num_classes)
    bn = takes_train(model) and model_name != "mlp"
    return model, shape, num_classes, max(config.ks), resolve_vectorize(model_name, config), bn


def load_data(config: TransplantConfig) -> Splits:
    """The train / validation / test splits of ``config.experiments[0]``, loaded as ``run()`` loads them."""
    return experiment_splits(config.experiments[0], config)


def init(key: jax.Array, config: TransplantConfig) -> MethodState:
    """The ``k = max(config.ks)`` members of ``config.experiments[0]``, freshly initialised and stacked.

    Member ``i`` is initialised from ``jax.random.split(key, k)[i]`` (``run()`` seeds member ``i`` of seed
    ``s`` with ``jax.random.key(1000 s + i)``); the model and its input shape come from the config.

    Examples:
      >>> import jax
      >>> from jaxlab.methods import transplant as nt
      >>> cfg = nt.TransplantConfig(experiments=("mlp/digits",), ks=(2,), mlp_hidden=(16,))
      >>> state = nt.init(jax.random.key(0), cfg)
      >>> state.params["dense_0"]["kernel"].shape   # (k, 8 * 8, 16)
      (2, 64, 16)
    """
    require_config(config, TransplantConfig, "jaxlab.methods.transplant.init")
    model, shape, _, k, _, _ = _setup(config)
    variables = init_stack(model, jax.random.split(key, k), jnp.zeros((1, *shape), jnp.float32))
    return _fresh(config, variables, lr=config.lr)


def _fresh(config: TransplantConfig, variables, *, lr: float) -> MethodState:
    """A state at step 0 of stacked ``variables`` with fresh optimiser states of rate ``lr``."""
    tx = make_tx(lr, config.momentum, config.weight_decay)
    params = variables["params"]
    model_state = {name: v for name, v in variables.items() if name != "params"}
    return MethodState(step=jnp.zeros((), jnp.int32), params=params, opt_state=jax.jit(jax.vmap(tx.init))(params),
                       model_state=model_state, config=config)


def _check_batch(batch: Any, k: int, shape: tuple[int, ...], num_classes: int, fn: str):
    if not isinstance(batch, Mapping) or set(batch) != {"x", "y"}:
        got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise ValueError(f"{fn}: batch must be a dict with keys 'x' and 'y' (one batch per member, from "
                         f"member_batches(...)), got {got}")
    x, y = batch["x"], batch["y"]
    if np.ndim(x) != 2 + len(shape) or tuple(np.shape(x)[0:1]) != (k,) or tuple(np.shape(x)[2:]) != shape:
        raise ValueError(f"{fn}: batch['x'] must be float32 (k={k}, B, {', '.join(map(str, shape))}): one batch of "
                         f"images per member; got shape {np.shape(x)} (a single batch? stack one per member, "
                         f"e.g. x[None].repeat({k}, 0))")
    if tuple(np.shape(y)) != tuple(np.shape(x)[:2]):
        raise ValueError(f"{fn}: batch['y'] must be int32 labels of shape {tuple(np.shape(x)[:2])} (k, B) in "
                         f"[0, {num_classes}), matching batch['x']; got shape {np.shape(y)}")
    if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
        raise ValueError(f"{fn}: batch['y'] must hold integer class labels, got dtype {jnp.result_type(y)}")
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)


def _step(state: MethodState, batch, key: jax.Array, *, lr: float, fn: str) -> tuple[MethodState, dict]:
    config = state.config
    model, shape, num_classes, _, vectorize, _ = _setup(config)
    k = jax.tree.leaves(state.params)[0].shape[0]
    x, y = _check_batch(batch, k, shape, num_classes, fn)
    # the step of train_stack's epoch program: make_train_step over make_loss_fn and make_tx, per member
    step = make_train_step(make_loss_fn(model, use_teacher=False, temperature=config.temperature),
                           make_tx(lr, config.momentum, config.weight_decay), jit=False)
    # the loss has no teacher: its slots in the batch tuple are placeholders (train_stack passes zeros there)
    no_teacher = jnp.zeros((), jnp.float32)
    states = TrainState(step=jnp.broadcast_to(state.step, (k,)), params=state.params, opt_state=state.opt_state,
                        model_state=state.model_state)

    def one(s, xb, yb):
        return step(s, (xb, yb, no_teacher, no_teacher), key)

    new, metrics = _over_models(one, vectorize)(states, x, y)
    out = MethodState(step=state.step + 1, params=new.params, opt_state=new.opt_state, model_state=new.model_state,
                      config=config)
    return out, {"loss": jnp.mean(metrics["loss"]), "member_loss": metrics["loss"]}


def train_step(state: MethodState, batch: Mapping[str, jax.Array], key: jax.Array) -> tuple[MethodState, dict]:
    """One SGD step (``config.lr``, ``momentum``, ``weight_decay``) of every member on its own batch.

    The step of :func:`train_stack` (``run()``'s member training): cross-entropy, :func:`jaxlab.train.make_train_step`,
    members ``jax.vmap``-ed, ``lax.map``-ped or unrolled as ``config.vectorize`` says. Pure and jittable; the config is
    static, so ``jax.jit(train_step)`` compiles once per config and batch shape.

    Args:
      state: from :func:`init` (or a previous step).
      batch: ``{"x": float32 (k, B, H, W, C), "y": int32 (k, B)}``: member ``i`` trains on ``x[i], y[i]``
        (normalised, padded images as :func:`load_data` gives them). :func:`member_batches` yields the
        batches of ``run()``'s epochs.
      key: unused (the models have no dropout and the loss is deterministic); kept for the contract.

    Returns:
      ``(state, metrics)``: ``metrics["loss"]`` is the members' mean training loss (scalar) and
      ``metrics["member_loss"]`` each member's, shape ``(k,)``.

    Raises:
      ValueError: a batch that is not ``{"x", "y"}`` of the shapes above.
    """
    return _step(state, batch, key, lr=state.config.lr, fn="train_step")


def finetune_step(state: MethodState, batch: Mapping[str, jax.Array], key: jax.Array) -> tuple[MethodState, dict]:
    """:func:`train_step` at ``config.finetune_lr``: the fine-tuning of a fused state (:func:`transplant_state`).

    ``batch`` is as for :func:`train_step` with ``k = 1`` (``x`` of shape ``(1, B, H, W, C)``).
    """
    return _step(state, batch, key, lr=state.config.finetune_lr, fn="finetune_step")


def transplant_state(state: MethodState, *, x_train: np.ndarray | None = None) -> MethodState:
    """The members of ``state`` fused by Neuron Transplantation into a state of one model, ready to fine-tune.

    :func:`transplant_stacked` of the stacked members (equal widths: the same model as :func:`transplant` of
    the list, ``run()``'s ``nt``), then for BatchNorm models :func:`recalibrate_bn` on ``x_train`` with
    ``config.bn_batches`` batches of ``config.batch_size``, as ``run()``. The result has ``k = 1`` (a leading
    axis of size one), step 0 and a fresh optimiser at ``config.finetune_lr``; train it with
    :func:`finetune_step`.

    Raises:
      ValueError: a BatchNorm model without ``x_train``.
    """
    config = state.config
    model, _, _, _, _, bn = _setup(config)
    if bn and x_train is None:
        raise ValueError(f"transplant_state: {config.experiments[0]} has BatchNorm, whose statistics are "
                         "recalibrated after fusion; pass x_train= (the training images, load_data(config).x_train)")
    _, fused, _ = transplant_stacked(model, {"params": state.params, **state.model_state})
    fused = jax.tree.map(lambda a: jnp.asarray(a)[None], fused)
    if bn:
        assert x_train is not None
        fused = recalibrate_bn(model, fused, x_train, num_batches=config.bn_batches, batch_size=config.batch_size)
    return _fresh(config, fused, lr=config.finetune_lr)


def member_batches(splits: Splits, config: TransplantConfig, *, seeds: Sequence[int],
                   epoch: int) -> Iterator[dict[str, jax.Array]]:
    """The batches of epoch ``epoch`` of :func:`train_stack` with batch-order ``seeds`` (one per member).

    Member ``m`` sees its own permutation of the training images (:func:`epoch_order`, the order ``run()``
    draws inside its jitted epoch), ``len(x_train) // config.batch_size`` batches, the last partial one
    dropped. Yields ``{"x": (k, B, H, W, C) float32, "y": (k, B) int32}`` for :func:`train_step`.
    """
    n, size = len(splits.x_train), config.batch_size
    nb = n // size
    if nb < 1:
        raise ValueError(f"member_batches: batch_size {size} exceeds the {n} training images; lower "
                         "config.batch_size")
    perms = np.asarray(epoch_order(seed_keys(seeds), epoch, n=n, num_batches=nb, batch_size=size))
    x, y = np.asarray(splits.x_train), np.asarray(splits.y_train)
    for idx in perms:   # (k, B)
        yield {"x": jax.device_put(x[idx]), "y": jax.device_put(y[idx])}


def evaluate(state: MethodState, data: Mapping[str, Any]) -> dict[str, Any]:
    """Test (or validation) accuracy of every model of ``state`` and of their output-averaged ensemble.

    The metrics ``run()`` reports for a split: each member's accuracy (``train_stack``'s curves, the best
    member's row) and the ensemble's, whose logits are the members' mean (``run()``'s ``ensemble`` row).

    Args:
      state: members (:func:`init`, :func:`train_step`) or a fused state (:func:`transplant_state`).
      data: ``{"x": float32 (N, H, W, C), "y": int (N,)}``, e.g. ``{"x": splits.x_test, "y": splits.y_test}``.

    Returns:
      ``{"accuracy": float64 (k,), "ensemble_accuracy": float}``.
    """
    model, shape, _, _, vectorize, _ = _setup(state.config)
    if not isinstance(data, Mapping) or not {"x", "y"} <= set(data):
        raise ValueError("evaluate: data must be a dict with keys 'x' (N, H, W, C) and 'y' (N,), e.g. "
                         "{'x': splits.x_test, 'y': splits.y_test}")
    x, y = np.asarray(data["x"], np.float32), np.asarray(data["y"])
    if x.shape[1:] != shape or y.shape != x.shape[:1]:
        raise ValueError(f"evaluate: data['x'] must be (N, {', '.join(map(str, shape))}) and data['y'] (N,), got "
                         f"{x.shape} and {y.shape}")
    logits = make_logits_fn(model, vectorize=vectorize)({"params": state.params, **state.model_state}, x)
    return {"accuracy": accuracies(logits, y),
            "ensemble_accuracy": float(accuracies(jnp.mean(logits, 0, keepdims=True), y)[0])}
