"""Training and prediction of PETNet on simulated samples (encoded to dense trains inside jit)."""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.train import TrainState, make_train_step

from ._encode import encode_inputs, encode_labels
from ._losses import petnet_loss
from ._metrics import Scorer
from ._model import ARCHITECTURES, PETNet
from ._simulate import PETData, Preset


@dataclasses.dataclass(frozen=True)
class Variant:
    """One PETNet set-up: loss (``mse``, ``l1``, ``l1_vr``), geometry channel on/off, architecture."""

    loss: str = "l1_vr"
    geometry: bool = True
    architecture: str = "three_layer"

    @property
    def label(self) -> str:
        return f"{self.loss}/{'geo' if self.geometry else 'nogeo'}/{self.architecture}"


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (the paper's: Adam 5e-4, betas (0.9, 0.999), batch 64, H = 240)."""

    hidden: int = 240
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 5e-4
    timing_weight: float = 0.1
    tau: float = 5.0
    unroll: int = 1
    max_train_s: float | None = None
    max_train_cpu_s: float | None = None
    weight_gain: float | tuple[float, ...] = 1.0
    bias_gain: float = 1.0


def make_net(preset: Preset, variant: Variant, settings: TrainSettings) -> PETNet:
    if variant.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {variant.architecture!r}; choose one of {sorted(ARCHITECTURES)}")
    return PETNet(num_outputs=preset.num_crystals, hidden=settings.hidden,
                  num_layers=ARCHITECTURES[variant.architecture], unroll=settings.unroll,
                  weight_gain=settings.weight_gain, bias_gain=settings.bias_gain)


@functools.lru_cache(maxsize=16)
def _jitted_init(net: PETNet) -> Callable:
    """``jax.jit(net.init)``, one per network (equal networks are equal modules): a new ``jax.jit`` of a new
    bound method per call would miss jit's cache and compile the init again for every seed and variant."""
    return jax.jit(net.init)


def init_params(preset: Preset, variant: Variant, settings: TrainSettings, *, key):
    """The network and its initial parameters (``net.init`` as one jitted program, compiled once per network
    and input width)."""
    net = make_net(preset, variant, settings)
    c_in = preset.num_crystals * (2 if variant.geometry else 1)
    return net, _jitted_init(net)(key, jnp.zeros((1, preset.num_steps, c_in), jnp.float32))


@jax.jit
def _take(data: PETData, index: jax.Array) -> PETData:
    return data.take(index)


def _step_settings(settings: TrainSettings) -> TrainSettings:
    """``settings`` less the fields the training step does not depend on (its cache key)."""
    return dataclasses.replace(settings, epochs=0, batch_size=0, max_train_s=None, max_train_cpu_s=None)


@functools.lru_cache(maxsize=16)
def _loss_and_tx(preset: Preset, variant: Variant, settings: TrainSettings):
    """``(net, tx, loss_fn)`` of one set-up, made once: the network, Adam at ``settings.learning_rate`` and
    ``loss_fn(params, model_state, batch, key) -> (loss, (metrics, model_state))`` on a :class:`PETData`
    batch (the inputs and labels are encoded inside, so the loss is a function of event lists). The key is
    unused: the loss is deterministic. :func:`train` (through :func:`_train_step`) and the public
    ``train_step`` (``_contract.py``) both step with these."""
    net = make_net(preset, variant, settings)
    tx = optax.adam(settings.learning_rate, b1=0.9, b2=0.999)

    def loss_fn(params, model_state, batch, key):
        del key
        x = encode_inputs(batch, preset, variant.geometry)
        y = encode_labels(batch, preset)
        s = net.apply(params, x)
        loss, parts = petnet_loss(s, y, variant.loss, timing_weight=settings.timing_weight, tau=settings.tau)
        return loss, ({**parts, "spikes_per_sample": s.sum() / s.shape[0]}, model_state)

    return net, tx, loss_fn


@functools.lru_cache(maxsize=16)
def _train_step(preset: Preset, variant: Variant, settings: TrainSettings):
    """``(tx, step)`` for one set-up, made once: training runs that differ only in seed, epochs or time
    budget (the seeds of an experiment) share one compiled step."""
    _, tx, loss_fn = _loss_and_tx(preset, variant, settings)
    return tx, make_train_step(loss_fn, tx)


def batches(data: PETData, batch_size: int, *, key, epoch: int = 0) -> Iterator[PETData]:
    """The training batches of one epoch, as :func:`train` draws them.

    A permutation of the samples from ``fold_in(key, epoch)``, cut into ``min(batch_size, N)``-sample
    batches; the last partial batch is dropped (the reference's ``drop_last=True``).

    Args:
      data: the training samples (put them on the device once, ``jax.device_put(data)``, for speed).
      batch_size: samples per batch.
      key: the shuffling key (:func:`train` uses the second half of ``split(key)``).
      epoch: which epoch's permutation.

    Yields:
      :class:`PETData` batches of ``min(batch_size, N)`` samples.
    """
    n = data.num_samples
    bs = min(batch_size, n)
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    for i in range(n // bs):
        yield _take(data, perm[i * bs:(i + 1) * bs])


def train(preset: Preset, train_data: PETData, variant: Variant, settings: TrainSettings, *, key,
          progress: bool = False, on_epoch: Callable[[int, dict], None] | None = None) -> dict[str, Any]:
    """Trains one PETNet; returns ``params``, per-epoch ``history`` and wall/CPU seconds.

    Every epoch is a fresh permutation of the training samples in batches of ``batch_size`` (the last
    partial batch dropped, as the reference's ``drop_last=True``). ``max_train_s`` (wall clock) and
    ``max_train_cpu_s`` (process CPU time, which other jobs on a shared machine inflate less) stop
    training after the epoch in which the budget ran out. Timings include compilation.
    """
    k_init, k_perm = jax.random.split(key)
    net, params = init_params(preset, variant, settings, key=k_init)
    tx, step = _train_step(preset, variant, _step_settings(settings))
    state = TrainState.create(params=params, tx=tx)
    steps_per_epoch = train_data.num_samples // min(settings.batch_size, train_data.num_samples)
    device_data = jax.device_put(train_data)
    history: list[dict] = []
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=settings.epochs * steps_per_epoch, desc=variant.label, leave=False)
    t0, c0 = time.perf_counter(), time.process_time()
    for epoch in range(settings.epochs):
        sums: dict[str, float] = {}
        for batch in batches(device_data, settings.batch_size, key=k_perm, epoch=epoch):
            state, metrics = step(state, batch, k_perm)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            if bar is not None:
                bar.update(1)
        rec = {"epoch": epoch + 1, **{k: float(v) / steps_per_epoch for k, v in sums.items()},
               "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
        history.append(rec)
        if on_epoch is not None:
            on_epoch(epoch + 1, rec)
        if settings.max_train_s is not None and rec["wall_s"] >= settings.max_train_s:
            break
        if settings.max_train_cpu_s is not None and rec["cpu_s"] >= settings.max_train_cpu_s:
            break
    jax.block_until_ready(state.params)
    if bar is not None:
        bar.close()
    return {"net": net, "params": state.params, "history": history, "epochs": len(history),
            "train_wall_s": time.perf_counter() - t0, "train_cpu_s": time.process_time() - c0}


@functools.lru_cache(maxsize=16)
def make_predict(net: PETNet, preset: Preset, geometry: bool) -> Callable:
    """``predict(params, data) -> (B, T, C)`` output spikes, jitted (encodes the inputs inside); one per
    (network, preset, geometry), so equal networks share the compiled program."""

    @jax.jit
    def predict(params, data: PETData):
        return net.apply(params, encode_inputs(data, preset, geometry)) > 0

    return predict


def evaluate_params(net: PETNet, params, preset: Preset, data: PETData, geometry: bool, *, tol: float,
                    batch_size: int = 250) -> dict[str, float]:
    """Strict and reference-compatible scores of the network on ``data``, batch by batch.

    What :func:`run` reports per trained network (this was ``petnet.evaluate`` before that name became the
    method contract's ``evaluate(state, data)``, which calls this).

    Every batch has ``min(batch_size, N)`` samples, so the prediction compiles once: a short last batch is
    filled up with copies of its last sample, whose predictions are dropped (samples are independent).
    """
    predict = make_predict(net, preset, geometry)
    scorer = Scorer(tol)
    data = jax.device_get(data)
    n = data.num_samples
    bs = min(batch_size, n)
    for start in range(0, n, bs):
        stop = min(start + bs, n)
        part = data.take(slice(start, stop))
        full = part if stop - start == bs else data.take(np.minimum(np.arange(start, start + bs), n - 1))
        scorer.add_dense(np.asarray(predict(params, full))[:stop - start], part)
    return scorer.scores()
