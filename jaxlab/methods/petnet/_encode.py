"""Hit lists and dense spike-train encodings of simulated samples (each one jitted program).

A :class:`Hits` is a padded list of detector hits per sample; the dense encodings are the network's
inputs ``X`` (1 at ``(t, crystal)`` of every hit), the geometry channel ``G`` (``geometry_value`` on the
partner window of every hit, at the hit time) and the label ``Y`` (1 at ``(decay time, crystal)`` of the
two photons of every true coincidence), each ``(B, T, C)``; entries add up where hits coincide, as the
reference's sparse COO arrays do when made dense.

Every function here (but the host-side :func:`max_valid_hits`) is one ``jax.jit`` program, with the sizes
(``max_hits``, ``num_steps``, ``num_crystals``, the preset, ``dtype``) as static arguments: called eagerly
it compiles once per input shape, not once per array operation, and inside another jit it is inlined.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._simulate import PETData, Preset, geometry_window, get_preset


class Hits(NamedTuple):
    """Padded hit lists, ``(..., M)`` each.

    Attributes:
      time: int32 hit time.
      crystal: int32 crystal ID.
      valid: bool, the slot holds a hit.
      decay: int32 index of the decay (event slot) the hit came from (-1 where unknown).
      true: bool, the hit belongs to a true coincidence.
    """

    time: jax.Array
    crystal: jax.Array
    valid: jax.Array
    decay: jax.Array
    true: jax.Array


@jax.jit
def hits_from_data(data: PETData) -> Hits:
    """All detected photons of each sample as a :class:`Hits` of length ``2K`` (slot ``2k + j``: photon j of decay k)."""
    n, k = data.decay_time.shape
    decay = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32)[None, :, None], (n, k, 2))
    true = jnp.broadcast_to(data.true_pair[..., None], (n, k, 2)) & data.detected
    return Hits(time=data.hit_time.reshape(n, 2 * k), crystal=data.crystal.reshape(n, 2 * k),
                valid=data.detected.reshape(n, 2 * k), decay=decay.reshape(n, 2 * k),
                true=true.reshape(n, 2 * k))


@jax.jit
def label_hits(data: PETData) -> Hits:
    """The label as hits: both photons of each true coincidence at the undelayed decay time."""
    n, k = data.decay_time.shape
    decay = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32)[None, :, None], (n, k, 2))
    on = jnp.broadcast_to(data.true_pair[..., None], (n, k, 2))
    t = jnp.broadcast_to(data.decay_time[..., None], (n, k, 2))
    return Hits(time=t.reshape(n, 2 * k), crystal=data.crystal.reshape(n, 2 * k), valid=on.reshape(n, 2 * k),
                decay=decay.reshape(n, 2 * k), true=on.reshape(n, 2 * k))


@functools.partial(jax.jit, static_argnames=("max_hits",))
def compact_hits(hits: Hits, max_hits: int) -> Hits:
    """Moves the valid hits to the front (keeping their order) and cuts the lists to ``max_hits``.

    Hits beyond ``max_hits`` are dropped: pick ``max_hits >= max_valid_hits(hits)`` to lose none.
    """
    order = jnp.argsort(~hits.valid, axis=-1, stable=True)[..., :max_hits]
    return Hits(*(jnp.take_along_axis(a, order, axis=-1) for a in hits))


def max_valid_hits(hits: Hits) -> int:
    """The largest number of valid hits in any sample (host value, for :func:`compact_hits`)."""
    return int(np.max(np.asarray(hits.valid).sum(-1), initial=0))


def _scatter(shape: tuple[int, int, int], time, crystal, values) -> jax.Array:
    b = jnp.broadcast_to(jnp.arange(shape[0]).reshape((-1,) + (1,) * (time.ndim - 1)), time.shape)
    t = jnp.clip(time, 0, shape[1] - 1)
    return jnp.zeros(shape, values.dtype).at[b, t, crystal].add(values)


@functools.partial(jax.jit, static_argnames=("num_steps", "num_crystals", "dtype"))
def encode_hits(hits: Hits, num_steps: int, num_crystals: int, dtype=jnp.float32,
                time: jax.Array | None = None) -> jax.Array:
    """Dense ``(B, T, C)`` train with 1 per valid hit (at ``time`` if given, else ``hits.time``)."""
    t = hits.time if time is None else time
    return _scatter((hits.time.shape[0], num_steps, num_crystals), t, hits.crystal, hits.valid.astype(dtype))


@functools.partial(jax.jit, static_argnames=("preset", "dtype"))
def encode_geometry(hits: Hits, preset: str | Preset, dtype=jnp.float32) -> jax.Array:
    """The geometry channel ``(B, T, C)``: ``geometry_value`` on each hit's partner window at the hit time."""
    p = get_preset(preset)
    ids, mask = geometry_window(p)
    win = jnp.asarray(ids)[hits.crystal]  # (B, M, W)
    on = jnp.asarray(mask)[hits.crystal] & hits.valid[..., None]
    t = jnp.broadcast_to(hits.time[..., None], win.shape)
    vals = on.astype(dtype) * jnp.asarray(p.geometry_value, dtype)
    return _scatter((hits.time.shape[0], p.num_steps, p.num_crystals), t, win, vals)


@functools.partial(jax.jit, static_argnames=("preset", "geometry", "dtype"))
def encode_inputs(data: PETData, preset: str | Preset, geometry: bool, dtype=jnp.float32) -> jax.Array:
    """Network input ``(B, T, C)`` (hits) or ``(B, T, 2C)`` (hits, then the geometry channel)."""
    p = get_preset(preset)
    hits = hits_from_data(data)
    x = encode_hits(hits, p.num_steps, p.num_crystals, dtype)
    if geometry:
        x = jnp.concatenate([x, encode_geometry(hits, p, dtype)], axis=-1)
    return x


@functools.partial(jax.jit, static_argnames=("preset", "dtype"))
def encode_labels(data: PETData, preset: str | Preset, dtype=jnp.float32) -> jax.Array:
    """The label ``Y`` ``(B, T, C)``: 1 at (decay time, crystal) of both photons of each true coincidence."""
    p = get_preset(preset)
    return encode_hits(label_hits(data), p.num_steps, p.num_crystals, dtype)


@functools.partial(jax.jit, static_argnames=("max_hits",))
def hits_from_dense(x: jax.Array, max_hits: int) -> Hits:
    """The nonzero entries of dense trains ``(B, T, C)`` as :class:`Hits` (time-major order, as the
    reference's ``nonzero``); an entry above 1 is one hit. At most ``max_hits`` per sample are kept."""
    b, t, c = x.shape

    def one(xs):
        (idx,) = jnp.nonzero(xs.reshape(-1) > 0, size=max_hits, fill_value=-1)
        return idx

    idx = jax.vmap(one)(x)
    valid = idx >= 0
    idx = jnp.maximum(idx, 0)
    return Hits(time=(idx // c).astype(jnp.int32), crystal=(idx % c).astype(jnp.int32), valid=valid,
                decay=jnp.full(idx.shape, -1, jnp.int32), true=jnp.zeros(idx.shape, bool))
