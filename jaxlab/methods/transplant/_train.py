"""Training many models of one architecture at once: members, fine-tuning and distillation, vmapped.

Every model of a stack has its own initialisation, batch order, learning-rate-free hyperparameters and
(optionally) its own teacher; one jitted epoch runs them all (``jax.vmap`` over the stack inside a
``lax.scan`` over batches), so seeds and members share one compiled program. Steps are
``jaxlab.train.make_train_step`` with SGD + momentum (and torch-style coupled weight decay), the
reference's optimiser.

Distillation (the reference's ``train_distill_ensemble``, after the PyTorch tutorial): with temperature
``T`` and weight ``alpha``, ``loss = alpha * T^2 * CE(softmax(t / T), log_softmax(s / T)) + (1 - alpha) * CE(s, y)``
for teacher logits ``t`` (the ensemble's mean logits) and student logits ``s``; the reference's
comparison uses ``alpha = 1`` (soft targets only) and ``T = 2``.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.train import Checkpointer, TrainState, make_train_step


class Splits(NamedTuple):
    """Float32 images ``(N, H, W, C)`` and int32 labels: train, validation (carved from train), test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


def takes_train(model) -> bool:
    """Whether ``model.__call__`` has a ``train`` argument (BatchNorm models)."""
    return "train" in inspect.signature(type(model).__call__).parameters


def apply_model(model, variables, x, *, train: bool = False):
    """Logits of ``model``; in training mode also the updated ``batch_stats`` (``{}`` without BatchNorm)."""
    if not takes_train(model):
        return (model.apply(variables, x), {}) if train else model.apply(variables, x)
    if train:
        if "batch_stats" in variables:
            logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
            return logits, {"batch_stats": updates["batch_stats"]}
        return model.apply(variables, x, train=True), {}
    return model.apply(variables, x, train=False)


def distill_loss(student, teacher, labels, *, temperature: float = 2.0, alpha=1.0):
    """``alpha * T^2 * soft cross-entropy + (1 - alpha) * cross-entropy`` (mean over the batch)."""
    t = temperature
    soft = -jnp.sum(jax.nn.softmax(teacher / t) * jax.nn.log_softmax(student / t), axis=-1).mean() * t**2
    hard = optax.softmax_cross_entropy_with_integer_labels(student, labels).mean()
    return alpha * soft + (1.0 - alpha) * hard


def init_stack(model, keys: jax.Array, example: jax.Array):
    """Variables of ``len(keys)`` fresh models, stacked on a leading axis."""
    kw = {"train": False} if takes_train(model) else {}
    return jax.jit(jax.vmap(lambda k: model.init(k, example, **kw)))(keys)   # one program (eagerly: one per op)


# stack and unstack copy on the host: eagerly, jnp.stack and the indexing compiled a program per leaf shape
def stack(trees: Sequence[Any]):
    """The trees' leaves stacked on a new leading axis (``jax.Array`` leaves)."""
    return jax.tree.map(lambda *a: jax.device_put(np.stack([np.asarray(x) for x in a])), *trees)


def unstack(tree, n: int) -> list:
    """The ``n`` trees of a stack (inverse of :func:`stack`; ``jax.Array`` leaves)."""
    host = jax.tree.map(np.asarray, tree)  # one transfer per leaf
    return [jax.tree.map(lambda a: jax.device_put(a[i]), host) for i in range(n)]


def _chunks(x: np.ndarray, size: int):
    n = -(-len(x) // size) * size
    pad = n - len(x)
    xp = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    return xp.reshape(n // size, size, *x.shape[1:]), len(x)


VECTORIZE = ("vmap", "map", "unroll")


def _over_models(fn: Callable, vectorize: str) -> Callable:
    """``fn`` applied to every model of a stack: ``jax.vmap``, ``lax.map``, or an unrolled loop over the models.

    On CPUs a vmapped convolution becomes a grouped convolution, which XLA runs several times slower per
    image than the plain one. ``"map"`` keeps plain convolutions, but inside a while loop, where XLA:CPU ran a
    SmallCNN's gradient (4 members, batch 256) 3.5x slower still than the vmapped one (9.0 s against 2.6 s, idle
    2-core host). ``"unroll"`` writes one plain program per model into the same jitted function: 0.83 s there,
    3.1x faster than vmap and 10.8x faster than map (``scripts/bench_transplant_vectorize.py``,
    bench/results/transplant-vectorize-cpu-s15.json); its compile time grows with the number of models. In
    whole training epochs (``train_stack``) the gap to ``"map"`` nearly closes (1.19x with 4 members, 1.02x with 8;
    ``transplant-vectorize-epochs-cpu-k{4,8}-s16.json``), while vmap stays 3.1x slower than unroll there (4 members).
    Dense layers vectorise well either way. The results agree to float rounding (tested).
    """
    if vectorize == "vmap":
        return jax.vmap(fn)
    if vectorize == "map":
        return lambda *args: jax.lax.map(lambda a: fn(*a), args)
    if vectorize == "unroll":
        def unrolled(*args):
            n = jax.tree.leaves(args)[0].shape[0]
            outs = [fn(*jax.tree.map(lambda a, i=i: a[i], args)) for i in range(n)]
            return jax.tree.map(lambda *o: jnp.stack(o), *outs)
        return unrolled
    raise ValueError(f"vectorize must be one of {VECTORIZE}, got {vectorize!r}")


@functools.lru_cache(maxsize=32)
def _chunk_program(model, vectorize: str):
    """One compiled program per model and chunk shape, called chunk by chunk: validation, test and training images
    of any count, and every call of :func:`make_logits_fn` for this model, share it (a program over all chunks at
    once would compile again for every count)."""

    @jax.jit
    def chunk(stacked, xb):
        return _over_models(lambda v: apply_model(model, v, xb), vectorize)(stacked)   # (M, B, C)

    return chunk


def make_logits_fn(model, *, batch_size: int = 1000, vectorize: str = "vmap") -> Callable:
    """``logits(stacked_variables, x) -> (M, N, C)`` in evaluation mode, in chunks of ``batch_size`` images."""
    if vectorize not in VECTORIZE:
        raise ValueError(f"vectorize must be one of {VECTORIZE}, got {vectorize!r}")

    chunk = _chunk_program(model, vectorize)

    def logits(stacked, x):
        xc, n = _chunks(np.asarray(x), batch_size)
        outs = [chunk(stacked, xb) for xb in xc]  # dispatched back to back, then joined on the host
        return jax.device_put(np.concatenate([np.asarray(o) for o in outs], axis=1)[:, :n])

    return logits


def accuracies(logits: jax.Array, y) -> np.ndarray:
    """Accuracy of each model of a ``(M, N, C)`` stack of logits (on the host: nothing compiles; exact in
    float64, where jnp's mean was float32 without x64)."""
    return np.asarray(np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(y)[None], axis=-1, dtype=np.float64))


def recalibrate_bn(model, stacked, x: np.ndarray, *, batch_size: int = 256, num_batches: int = 20, seed: int = 0):
    """BatchNorm statistics recomputed on training data: the mean over batches of the batch statistics.

    This is torch's recalibration with ``momentum=None`` (a cumulative average over ``num_batches`` batches
    in training mode, every model of the stack on the same batches). Flax's BatchNorm only exposes its
    running averages, ``m * old + (1 - m) * batch``: one pass from zero statistics gives ``(1 - m) * batch``
    and a probe from ones gives ``m``, which works for any momentum. Models without ``batch_stats`` are
    returned as they are.
    """
    if "batch_stats" not in stacked:
        return stacked
    n = min(num_batches, len(x) // batch_size)
    if n < 1:
        raise ValueError(f"BatchNorm recalibration needs at least one batch of {batch_size} images, got {len(x)}")
    idx = np.random.default_rng(seed).permutation(len(x))[: n * batch_size].reshape(n, batch_size)
    batches = jnp.asarray(np.asarray(x)[idx])

    @jax.jit
    def run(stacked, batches):
        def one(v, xb, fill):
            start = {**v, "batch_stats": jax.tree.map(lambda s: jnp.full_like(s, fill), v["batch_stats"])}
            return apply_model(model, start, xb, train=True)[1]["batch_stats"]

        probe = jax.vmap(lambda v: one(v, batches[0], 1.0))(stacked)
        first = jax.vmap(lambda v: one(v, batches[0], 0.0))(stacked)
        momentum = jax.tree.map(lambda a, b: a - b, probe, first)
        total = jax.lax.fori_loop(
            1, batches.shape[0],
            lambda i, acc: jax.tree.map(jnp.add, acc, jax.vmap(lambda v: one(v, batches[i], 0.0))(stacked)), first)
        stats = jax.tree.map(lambda t, m: t / batches.shape[0] / (1.0 - m), total, momentum)
        return {**stacked, "batch_stats": stats}

    return run(stacked, batches)


def make_tx(lr: float, momentum: float, weight_decay: float) -> optax.GradientTransformation:
    """The reference's optimiser: SGD with momentum, with torch-style coupled weight decay when ``weight_decay``."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum=momentum)) if weight_decay \
        else optax.sgd(lr, momentum=momentum)


def make_loss_fn(model, *, use_teacher: bool, temperature: float) -> Callable:
    """``loss_fn(params, model_state, (x, y, t, a), key)`` of :func:`jaxlab.train.make_train_step` for one model.

    Cross-entropy of the logits of ``x`` against the labels ``y``, or with ``use_teacher`` the
    :func:`distill_loss` against teacher logits ``t`` with weight ``a`` (``t`` and ``a`` are ignored without
    it). BatchNorm models train in training mode and return their updated ``batch_stats``. The key is unused:
    the models have no dropout.
    """

    def loss_fn(params, model_state, batch, key):
        del key
        x, y, t, a = batch
        logits, new_state = apply_model(model, {"params": params, **model_state}, x, train=True)
        loss = distill_loss(logits, t, y, temperature=temperature, alpha=a) if use_teacher else \
            optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, ({}, new_state if new_state else model_state)

    return loss_fn


def epoch_order(keys: jax.Array, epoch, *, n: int, num_batches: int, batch_size: int) -> jax.Array:
    """The batch indices of one epoch of every model of a stack, ``(num_batches, M, batch_size)`` int.

    Model ``m`` draws a permutation of its ``n`` training images from ``fold_in(key_m, epoch)``, for the raw
    key data ``keys[m]`` (``jax.random.key_data`` of ``jax.random.key(seed_m)``), and keeps its first
    ``num_batches * batch_size`` entries (the last partial batch is dropped).
    """

    def order(k):
        k = jax.random.fold_in(jax.random.wrap_key_data(k), epoch)
        return jax.random.permutation(k, n)[: num_batches * batch_size].reshape(num_batches, batch_size)

    return jnp.swapaxes(jax.vmap(order)(keys), 0, 1)


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    """The raw key data ``(M, 2)`` of ``jax.random.key(seed)`` per model (what :func:`epoch_order` takes)."""
    return jax.device_put(np.stack([np.asarray(jax.random.key_data(jax.random.key(int(s)))) for s in seeds]))


class Curves(NamedTuple):
    """Per-epoch records of a stack: ``val``/``test`` accuracy ``(epochs + 1, M)`` (row 0: before training),
    ``loss`` mean training loss ``(epochs, M)``."""

    val: np.ndarray
    test: np.ndarray
    loss: np.ndarray


@functools.lru_cache(maxsize=32)
def _epoch_program(model, lr, momentum, weight_decay, n, nb, batch_size, use_teacher, temperature, num_classes,
                   vectorize):
    """The jitted epoch of :func:`train_stack` and its optimiser, cached: calls with the same model and settings
    (the stack of every seed, a resumed run, the fine-tunings of one experiment) share one compilation."""
    tx = make_tx(lr, momentum, weight_decay)
    step = make_train_step(make_loss_fn(model, use_teacher=use_teacher, temperature=temperature), tx, jit=False)

    # The data are arguments, not constants captured by the jitted function (that would copy them into the program).
    @jax.jit
    def epoch_fn(states, epoch, x_train, y_train, teachers, keys, t_idx, a_arr):
        perms = epoch_order(keys, epoch, n=n, num_batches=nb, batch_size=batch_size)   # (nb, M, B)

        def body(states, idx):
            def one(state, i, ti, a):
                t = teachers[ti, i] if use_teacher else jnp.zeros((batch_size, num_classes), jnp.float32)
                return step(state, (x_train[i], y_train[i], t, a), jax.random.key(0))

            states, metrics = _over_models(one, vectorize)(states, idx, t_idx, a_arr)
            return states, metrics["loss"]

        states, losses = jax.lax.scan(body, states, perms)
        return states, losses.mean(0)

    return epoch_fn, tx


def train_stack(model, stacked, splits: Splits, *, epochs: int, lr: float, momentum: float = 0.9,
                batch_size: int = 256, weight_decay: float = 0.0, seeds: Sequence[int],
                teachers: jax.Array | None = None, teacher_index: Sequence[int] | None = None,
                alpha: Sequence[float] | None = None, temperature: float = 2.0,
                checkpoint_dir: str | Path | None = None, progress: Callable[[int, Curves], None] | None = None,
                vectorize: str = "vmap"):
    """Trains every model of ``stacked`` (variables with a leading model axis) for ``epochs`` epochs.

    Args:
      stacked: ``{"params": ..., ["batch_stats": ...]}`` stacked over M models.
      splits: the data; validation and test accuracy are recorded after every epoch (and before the first).
      seeds: per model, the seed of its batch order (epoch ``e`` draws a permutation from ``(seed, e)``).
      teachers: ``(T, N_train, C)`` teacher logits of the training images; model ``m`` distils from
        ``teachers[teacher_index[m]]`` with weight ``alpha[m]`` (0: plain cross-entropy).
      checkpoint_dir: orbax checkpoints after every epoch; a rerun with the same directory resumes.
      progress: called as ``progress(epoch, curves_so_far)`` after every epoch.
      vectorize: how the models of the stack share a step (see ``_over_models``): ``"vmap"`` (one vectorised
        step), ``"map"`` (one after the other in a ``lax.map`` loop) or ``"unroll"`` (one plain program per
        model in the same jitted step; its compile time grows with the number of models).

    Returns:
      ``(stacked, curves)`` after the last epoch.
    """
    m = jax.tree.leaves(stacked)[0].shape[0]
    if len(seeds) != m:
        raise ValueError(f"seeds needs one entry per model ({m}), got {len(seeds)}")
    n = len(splits.x_train)
    nb = n // batch_size
    if nb < 1:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training images")
    alpha = np.zeros(m) if alpha is None else np.asarray(alpha, np.float64)
    if teachers is None:
        if np.any(alpha != 0):
            raise ValueError("alpha > 0 (distillation) needs teacher logits")
        teachers = jax.device_put(np.zeros((1, 1, splits.num_classes), np.float32))
        teacher_index = np.zeros(m, np.int32)
        use_teacher = False
    else:
        teacher_index = np.asarray(teacher_index if teacher_index is not None else np.zeros(m), np.int32)
        use_teacher = True
    epoch_fn, tx = _epoch_program(model, float(lr), float(momentum), float(weight_decay), n, nb, batch_size,
                                  use_teacher, float(temperature), splits.num_classes, vectorize)
    # transfers, not programs (jnp.asarray of a NumPy array compiles a copy per shape)
    x_train, y_train = jax.device_put(np.asarray(splits.x_train)), jax.device_put(np.asarray(splits.y_train))
    keys = seed_keys(seeds)
    t_idx, a_arr = jax.device_put(teacher_index), jax.device_put(np.asarray(alpha, np.float32))

    params = stacked["params"]
    model_state = {k: v for k, v in stacked.items() if k != "params"}
    states = jax.jit(jax.vmap(lambda p, s: TrainState.create(params=p, tx=tx, model_state=s)))(params, model_state)
    logits_fn = make_logits_fn(model, vectorize=vectorize)

    def evaluate(states):
        v = {"params": states.params, **states.model_state}
        return accuracies(logits_fn(v, splits.x_val), splits.y_val), accuracies(logits_fn(v, splits.x_test),
                                                                                 splits.y_test)

    val = np.full((epochs + 1, m), np.nan)
    test = np.full((epochs + 1, m), np.nan)
    loss = np.full((max(epochs, 0), m), np.nan)
    start = 0
    ckpt = Checkpointer(checkpoint_dir, keep=2) if checkpoint_dir is not None else None
    if ckpt is not None and ckpt.latest_step() is not None:
        start = ckpt.latest_step()
        restored = ckpt.restore(start, {"states": states, "val": val, "test": test, "loss": loss})
        states = restored["states"]
        val, test, loss = (np.asarray(restored[k]) for k in ("val", "test", "loss"))
    try:
        if start == 0:
            val[0], test[0] = evaluate(states)
        for e in range(start, epochs):
            states, ep_loss = epoch_fn(states, e, x_train, y_train, teachers, keys, t_idx, a_arr)
            loss[e] = np.asarray(ep_loss)
            val[e + 1], test[e + 1] = evaluate(states)
            if ckpt is not None:
                ckpt.save(e + 1, {"states": states, "val": val, "test": test, "loss": loss})
            if progress is not None:
                progress(e + 1, Curves(val, test, loss))
    finally:
        # also when interrupted: the last save is committed before anyone (a rerun) opens the folder again
        if ckpt is not None:
            ckpt.wait()
            ckpt.close()
    out = {"params": states.params, **states.model_state}
    return jax.block_until_ready(out), Curves(val, test, loss)
