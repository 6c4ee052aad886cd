"""PETNet's method contract: ``init(key, config)``, ``train_step(state, batch, key)``, ``evaluate(state, data)``.

The state is one network of a :class:`~jaxlab.methods.petnet.PETNetConfig`: its *headline* variant
(``config.headline``: loss, geometry channel, architecture), with the sizes and initialisation gains of
``config.settings(architecture)``. :func:`run` trains every variant of ``config.variants`` for every seed; to
step another variant, pass ``dataclasses.replace(config, headline=variant)`` (it need not be in
``config.variants`` for these functions). ``model_state`` is ``{}``: the network has no non-trained
variables (each LIF layer's ``beta`` is a trained parameter).

``train_step`` is :func:`run`'s step: the loss and Adam of the same builder (``_train._loss_and_tx``), the
step body of :func:`jaxlab.train.make_train_step`, not jitted here (jit it yourself; :func:`run`'s copy is
jitted with the state donated). ``init(jax.random.key(seed), config)`` gives the parameters that
``run()``'s training of the headline variant with that seed starts from.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from jaxlab.core import PRNGKey, require_config
from jaxlab.train import MethodState, TrainState, make_train_step

from ._experiment import PETNetConfig
from ._simulate import PETData, Preset
from ._train import TrainSettings, Variant, _loss_and_tx, _step_settings, evaluate_params, init_params


def _setup(config: Any) -> tuple[Preset, Variant, TrainSettings]:
    """The preset, headline variant and full training settings of ``config``."""
    require_config(config, PETNetConfig, "PETNet's init/train_step/evaluate")
    variant = Variant(*config.headline)
    return config.get_preset(), variant, config.settings(variant.architecture)


@functools.lru_cache(maxsize=16)
def _plain_step(preset: Preset, variant: Variant, settings: TrainSettings):
    """``(tx, step)`` with the unjitted body of :func:`jaxlab.train.make_train_step` (the caller jits it)."""
    _, tx, loss_fn = _loss_and_tx(preset, variant, settings)
    return tx, make_train_step(loss_fn, tx, jit=False)


def init(key: PRNGKey, config: PETNetConfig) -> MethodState:
    """The headline network of ``config`` at step 0, with Adam's initial state.

    Args:
      key: PRNG key; split as :func:`~jaxlab.methods.petnet.train` splits it (its first half initialises),
        so ``init(jax.random.key(seed), config)`` is where ``run()``'s training with ``seed`` starts.
      config: a :class:`~jaxlab.methods.petnet.PETNetConfig`; the preset fixes the input and output widths
        (``2 C`` or ``C`` inputs with or without the geometry channel, ``C`` outputs, ``T`` steps).

    Returns:
      A :class:`jaxlab.train.MethodState`: ``params`` are the Flax variables ``{"params": {"fc1", "lif1",
      ...}}``, ``model_state`` is ``{}``, ``config`` is ``config``.

    Examples:
      >>> import jax
      >>> from jaxlab.methods import petnet
      >>> config = petnet.PETNetConfig(hidden=8)
      >>> state = petnet.init(jax.random.key(0), config)
      >>> state.params["params"]["fc1"]["kernel"].shape, int(state.step)
      ((120, 8), 0)
    """
    preset, variant, settings = _setup(config)
    k_init, _ = jax.random.split(key)
    _, params = init_params(preset, variant, settings, key=k_init)
    tx, _ = _plain_step(preset, variant, _step_settings(settings))
    return MethodState.wrap(TrainState.create(params=params, tx=tx), config)


def _check_batch(batch: Any, preset: Preset, what: str = "train_step's batch") -> None:
    """Shapes of a batch (static, so the checks run while tracing and cost nothing per step)."""
    if not isinstance(batch, PETData):
        raise TypeError(f"PETNet's {what} must be a PETData (samples as event lists: "
                        f"petnet.simulate(key, preset, n) and then petnet.batches(data, batch_size, key=...) or "
                        f"data.take(indices)), got {type(batch).__name__}")
    k = preset.events_per_sample
    want = {"decay_time": (k,), "valid": (k,), "crystal": (k, 2), "detected": (k, 2), "scattered": (k, 2),
            "hit_time": (k, 2)}
    n = batch.decay_time.shape[0] if batch.decay_time.ndim else None
    for name, tail in want.items():
        a = getattr(batch, name)
        if a.shape != (n, *tail):
            raise ValueError(f"{what}: {name} has shape {a.shape}, but preset {preset.name!r} holds {k} events "
                             f"per sample: expected {(n or 'B', *tail)}; simulate the batch with the config's "
                             f"preset (config.get_preset())")
    if n == 0:
        raise ValueError(f"{what} holds no samples; pass at least one")
    _check_crystals(batch, preset, what)


def _check_crystals(batch: PETData, preset: Preset, what: str) -> None:
    """The valid photons' crystal indices lie in ``[0, num_crystals)`` of ``preset``: data simulated for another
    geometry has the same shapes and would train silently (a gather clips). A check of values, so it runs only
    where they are known: in :func:`evaluate` and an eager :func:`train_step`; skipped while ``train_step`` is
    traced under ``jax.jit``."""
    try:
        crystal, valid = np.asarray(batch.crystal), np.asarray(batch.valid)
    except jax.errors.TracerArrayConversionError:
        return
    used = crystal[valid]
    if used.size and (used.min() < 0 or used.max() >= preset.num_crystals):
        raise ValueError(f"{what}: crystal indices run from {used.min()} to {used.max()}, but preset "
                         f"{preset.name!r} has {preset.num_crystals} crystals ({preset.num_rings} rings x "
                         f"{preset.crystals_per_ring}); simulate the data with the config's preset "
                         "(config.get_preset())")


def train_step(state: MethodState, batch: PETData, key: PRNGKey) -> tuple[MethodState, dict[str, jax.Array]]:
    """One Adam step of the headline network on ``batch``: :func:`run`'s step.

    Pure and jittable (``jax.jit(train_step)`` compiles once per config and batch size).

    Args:
      state: from :func:`init` (or an earlier step).
      batch: a :class:`~jaxlab.methods.petnet.PETData` of ``B`` samples of the config's preset, ``K =
        preset.events_per_sample`` event slots each: ``decay_time`` ``(B, K)`` int32, ``valid`` ``(B, K)``
        bool, ``crystal`` ``(B, K, 2)`` int32, ``detected`` and ``scattered`` ``(B, K, 2)`` bool, ``hit_time``
        ``(B, K, 2)`` int32. Get one as ``run()`` does: ``data = petnet.simulate(key, config.get_preset(), n)``,
        then ``petnet.batches(data, config.batch_size, key=k, epoch=e)`` (a shuffled epoch, what
        :func:`~jaxlab.methods.petnet.train` iterates) or ``data.take(indices)``. The dense inputs and labels
        are encoded inside the step.
      key: unused (the loss is deterministic); kept for the contract's signature.

    Returns:
      ``(state, metrics)``: ``metrics`` holds ``loss``, its unweighted parts ``count`` and ``timing``, and
      ``spikes_per_sample`` of the output layer, all scalars before the update.

    Raises:
      TypeError: the batch is not a ``PETData`` (e.g. a dict or the dense trains).
      ValueError: its arrays do not have the preset's event slots, or (when called eagerly, not under
        ``jax.jit``) its crystal indices lie outside the preset's crystals.
    """
    preset, variant, settings = _setup(state.config)
    _check_batch(batch, preset)
    _, step = _plain_step(preset, variant, _step_settings(settings))
    new, metrics = step(state.train_state(), batch, key)
    return MethodState.wrap(new, state.config), metrics


def evaluate(state: MethodState, data: PETData) -> dict[str, float]:
    """The scores :func:`run` reports for the network on a split (``runs.jsonl``'s per-run figures).

    Strict pair ``f1``, ``precision``, ``recall``, ``trues``, ``false_spikes_per_sample``, ``mean_abs_dt`` at
    the config's tolerance (``config.tol``, default the preset's ``delay_max``) and the reference-compatible
    ``ref_*`` scores, computed batch by batch (``config.eval_batch`` samples) by
    :func:`~jaxlab.methods.petnet.evaluate_params` on the host.

    Args:
      state: a :class:`jaxlab.train.MethodState` from :func:`init` / :func:`train_step`.
      data: the split's samples (e.g. the second part of ``petnet.split(data, preset.num_train)``).
    """
    preset, variant, settings = _setup(state.config)
    _check_batch(data, preset, "evaluate's data")
    net, _, _ = _loss_and_tx(preset, variant, _step_settings(settings))
    config = state.config
    tol = float(preset.delay_max if config.tol is None else config.tol)
    return evaluate_params(net, state.params, preset, data, variant.geometry, tol=tol, batch_size=config.eval_batch)
