"""The method contract (see ``jaxlab.methods``) for the forward-gradient experiments: ``init``, ``train_step``,
``evaluate`` and ``run``.

``init`` / ``train_step`` / ``evaluate`` are the MLP experiment's (:class:`MLPConfig`, paper section 4.4): one
run of its sweep, the network trained with SGD and a forward-gradient estimate (``jaxlab.fwdgrad``) in place of
``jax.value_and_grad``. The other experiments (closed-form functions, approximation quality, angles) have no
trained model; they are reached through :func:`run` only.

An :class:`MLPConfig` describes a sweep over datasets, methods, k and learning rates; the state trains one run
of it, fixed by the config alone (:func:`run_settings`):

* the dataset ``config.datasets[0]`` (its name implies the input width: 784 for MNIST-5k and Fashion-MNIST,
  64 for the UCI digits; 10 classes);
* the method: the first forward-gradient method of ``config.methods`` (``"backprop"`` only if it is the sole
  method), with ``k = config.tangents[0]`` and ``config.mode`` for weight perturbation;
* the learning rate: the centre of the method's tuning grid, ``lr_at_k1 * k**exponent`` from
  ``config.lr_centers`` (``lr_grid(config, method, k)[config.lr_grid_size // 2]``).

For another run, pass e.g. ``dataclasses.replace(config, methods=("mean",), tangents=(16,),
lr_centers=(("mean", 0.02, 0.0),))`` (method "mean", k = 16, rate 0.02).

The step is the one ``run_mlp`` scans (``train_mlp`` / ``make_sweep``): the same loss (``mlp_loss_fn``),
the same ``grad_fn`` (``mlp_grad_fn``), ``optax.sgd`` and ``jaxlab.train.make_train_step``. With
``init(jax.random.key(seed), config)`` and the batches and keys of ``batches(jax.random.key(seed), ...)``,
an epoch of ``train_step`` is the epoch of ``train_mlp(..., seed=seed)`` (tested). ``model_state`` is an
empty dict: the MLP has no other variables.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlab.core import PRNGKey
from jaxlab.nn import MLP
from jaxlab.train import MethodState, TrainState, make_train_step

from ._angles import AnglesConfig, run_angles
from ._approximation import ApproximationConfig, run_approximation
from ._functions import FunctionsConfig, run_functions
from ._mlp import MLPConfig, _accuracy_and_loss, _check, lr_grid, mlp_grad_fn, mlp_loss_fn, run_mlp

#: Dataset name -> (input features, classes) of the flattened images ``load_data`` returns.
DATASET_SHAPES: dict[str, tuple[int, int]] = {"mnist5k": (784, 10), "fashion_mnist": (784, 10), "digits": (64, 10)}


class RunSettings(NamedTuple):
    """The run of an :class:`MLPConfig` that ``init`` / ``train_step`` train."""

    dataset: str
    method: str
    k: int
    lr: float
    features: int
    num_classes: int


def run_settings(config: MLPConfig) -> RunSettings:
    """Which run of the sweep ``config`` the contract's state trains (see the module docstring).

    Raises:
      TypeError: ``config`` is not an :class:`MLPConfig`.
      ValueError: the config is invalid (as ``run_mlp`` would say) or names an unknown dataset.
    """
    if not isinstance(config, MLPConfig):
        raise TypeError(f"init/train_step/evaluate take an MLPConfig (the MLP experiment), got "
                        f"{type(config).__name__}; the other experiments have no trained model: use run(config, "
                        "workdir)")
    _check(config)
    dataset = config.datasets[0]
    if dataset not in DATASET_SHAPES:
        raise ValueError(f"unknown dataset {dataset!r} in config.datasets; choose from {sorted(DATASET_SHAPES)}")
    method = next((m for m in config.methods if m != "backprop"), config.methods[0])
    k = 0 if method == "backprop" else config.tangents[0]
    lr = lr_grid(config, method, k)[config.lr_grid_size // 2]
    return RunSettings(dataset, method, k, lr, *DATASET_SHAPES[dataset])


@functools.lru_cache(maxsize=32)
def _parts(config: MLPConfig):
    """``(settings, model, tx, step, init_params)``: ``step`` is ``run_mlp``'s un-jitted ``make_train_step`` for
    this run; ``init_params(key)`` the jitted initialisation (one program instead of an eager op per layer)."""
    s = run_settings(config)
    model = MLP(features=(*config.hidden, s.num_classes))
    tx = optax.sgd(s.lr)
    step = make_train_step(mlp_loss_fn(model), tx, grad_fn=mlp_grad_fn(s.method, s.k, config.mode), jit=False)
    # train_mlp's ``model.init(k_init, x[:1])``: Dense initialisers read only the input's shape.
    init_params = jax.jit(lambda key: model.init(jax.random.split(key)[0],
                                                 jnp.zeros((1, s.features), jnp.float32))["params"])
    return s, model, tx, step, init_params


def _config_of(state: Any) -> MLPConfig:
    if not isinstance(state, MethodState):
        raise TypeError(f"state must be the MethodState that init(key, config) returns, got {type(state).__name__}")
    run_settings(state.config)  # the TypeError for a state of another method's config
    return state.config


def _check_xy(data: Any, name: str, settings: RunSettings) -> tuple[jax.Array, jax.Array]:
    """``data = (x, y)`` with x (B, features) floating and y (B,) integer, or a ValueError saying what to pass."""
    if isinstance(data, dict) or not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{name} must be a pair (x, y) of images (B, {settings.features}) and labels (B,), got "
                         f"{type(data).__name__}; e.g. (splits.x_train[:64], splits.y_train[:64]) with splits = "
                         "load_data(config), or one batch of batches(...)")
    x, y = data
    x_shape, y_shape = jnp.shape(x), jnp.shape(y)
    if len(x_shape) != 2 or x_shape[1] != settings.features:
        raise ValueError(f"{name}'s images must have shape (B, {settings.features}) for dataset "
                         f"{settings.dataset!r}, got {x_shape}; flatten them (x.reshape(len(x), -1), as load_data "
                         "does) or set config.datasets to the dataset they come from")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise ValueError(f"{name}'s images must be floating point (float32 in [0, 1], as load_data gives), got "
                         f"{jnp.result_type(x)}")
    if y_shape != (x_shape[0],):
        raise ValueError(f"{name}'s labels must have shape ({x_shape[0]},), one per image, got {y_shape}")
    if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
        raise ValueError(f"{name}'s labels must be integer class indices 0..{settings.num_classes - 1} (not "
                         f"one-hot or float), got {jnp.result_type(y)}")
    if x_shape[0] == 0:
        raise ValueError(f"{name} is empty; pass at least one image")
    return x, y  # a tuple also where a list was passed (the loss unpacks either)


def init(key: PRNGKey, config: MLPConfig) -> MethodState:
    """The state at step 0 of the run of ``config`` (:func:`run_settings`), as ``train_mlp`` initialises it.

    The MLP's parameters come from the first half of ``jax.random.split(key)``, as in ``train_mlp`` (whose
    second half orders the batches: :func:`batches`); the optimiser is ``optax.sgd`` at the run's rate.

    Args:
      key: the run's PRNG key (``jax.random.key(seed)`` gives ``train_mlp``'s ``seed``).
      config: the MLP experiment's config (hashable: a frozen dataclass of tuples).

    Returns:
      A :class:`jaxlab.train.MethodState` with ``params`` of ``MLP(features=(*config.hidden, 10))``, the SGD
      state, ``model_state = {}`` and ``config``.

    Examples:
      >>> import jax
      >>> from jaxlab.methods.fwdgrad import MLPConfig, init
      >>> state = init(jax.random.key(0), MLPConfig(datasets=("digits",), hidden=(8,), epochs=(1,),
      ...                                           train_size=(None,), validation=(100,)))
      >>> state.params["dense_0"]["kernel"].shape
      (64, 8)
    """
    _, _, tx, _, init_params = _parts(config)
    return MethodState.wrap(TrainState.create(params=init_params(key), tx=tx), config)


def train_step(state: MethodState, batch: tuple[jax.Array, jax.Array],
               key: PRNGKey) -> tuple[MethodState, dict[str, jax.Array]]:
    """One SGD step with the configured gradient estimate (pure; ``jax.jit(train_step)`` compiles once per config).

    The estimate is the run's (:func:`run_settings`): a forward gradient with ``k`` tangents and the method's
    aggregation (weight perturbation, ``config.mode``) or the activity forward gradient, or backprop. The key
    drives the tangents (``jaxlab.fwdgrad.make_grad_fn`` splits it: the tangents come from its second half);
    backprop ignores it.

    Args:
      state: from :func:`init` or a previous step.
      batch: ``(x, y)``: ``x`` (B, features) float32 flattened images in [0, 1] (features 784 for "mnist5k" and
        "fashion_mnist", 64 for "digits"), ``y`` (B,) int32 class indices. ``run_mlp`` uses B =
        ``config.batch_size``; get a run's batches and step keys with :func:`batches` from the splits of
        :func:`load_data`.
      key: this step's PRNG key (``batches`` gives the run's).

    Returns:
      ``(state, metrics)``, ``metrics = {"loss": the batch's mean cross-entropy before the step}``.

    Raises:
      TypeError: ``state`` is not a MethodState of an :class:`MLPConfig`.
      ValueError: ``batch`` is not ``(x, y)`` of the shapes and dtypes above.
    """
    config = _config_of(state)
    s, _, _, step, _ = _parts(config)
    batch = _check_xy(batch, "batch", s)
    new, metrics = step(state.train_state(), batch, key)
    return MethodState.wrap(new, config), metrics


def evaluate(state: MethodState, data: tuple[jax.Array, jax.Array]) -> dict[str, float]:
    """The metrics ``run_mlp`` reports for a split: accuracy and mean cross-entropy of ``state.params``.

    ``run_mlp`` reports the test accuracy of the final parameters (``test_accuracy``) and, per epoch, the
    validation accuracy and loss (``final_val_curves``, ``val_loss_grid``); this is the same computation.

    Args:
      state: a state of :func:`init` / :func:`train_step`.
      data: ``(x, y)`` as in :func:`train_step` (any number of images), e.g. ``(splits.x_test, splits.y_test)``.

    Returns:
      ``{"accuracy": fraction of argmax predictions equal to y, "loss": mean softmax cross-entropy}`` (floats).
    """
    config = _config_of(state)
    x, y = _check_xy(data, "data", _parts(config)[0])
    accuracy, loss = _evaluate_fn(config)(state.params, x, y)
    return {"accuracy": float(accuracy), "loss": float(loss)}


@functools.lru_cache(maxsize=32)
def _evaluate_fn(config: MLPConfig):
    return jax.jit(functools.partial(_accuracy_and_loss, _parts(config)[1]))


def _runners() -> tuple[tuple[type, Any], ...]:
    # Looked up at call time (not frozen at import), so the table always names this module's runners.
    return ((MLPConfig, run_mlp), (FunctionsConfig, run_functions), (ApproximationConfig, run_approximation),
            (AnglesConfig, run_angles))


def run(config: MLPConfig | FunctionsConfig | ApproximationConfig | AnglesConfig, workdir: str | Path,
        **kwargs: Any) -> dict:
    """Runs the experiment ``config`` describes (what ``jaxlab run configs/fwdgrad/<name>.py`` calls).

    Dispatches on the config's type: :class:`MLPConfig` to ``run_mlp``, :class:`FunctionsConfig` to
    ``run_functions``, :class:`ApproximationConfig` to ``run_approximation``, :class:`AnglesConfig` to
    ``run_angles``; ``kwargs`` go to that runner unchanged.

    Returns:
      The runner's summary (also written to ``workdir/summary.json``).

    Raises:
      TypeError: ``config`` is none of the four config types.
    """
    for cls, runner in _runners():
        if isinstance(config, cls):
            return runner(config, workdir, **kwargs)
    names = ", ".join(cls.__name__ for cls, _ in _runners())
    raise TypeError(f"jaxlab.methods.fwdgrad.run needs one of the configs {names}, got {type(config).__name__}; "
                    "build it with get_config() of a file in configs/fwdgrad/")
