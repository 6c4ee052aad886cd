"""Single coincidence window (SCW) sorters: plain, with a geometry check, with delay calibration.

SCW (the reference's ``evaluate_SCW.do_scw_sorting``): sort a sample's hits by time, link consecutive hits
whose gap is at most ``window`` steps into chains, and accept a chain as a coincidence iff it holds exactly
two hits; singles and multiples are dropped. Differences from the reference: the time sort is *stable*
(hits at one step keep their list order; the reference's NumPy ``argsort`` is not stable, although the
result does not depend on the order of equal times), and it works on hit lists, so two hits on one
crystal at one step are two hits (the reference's dense ``nonzero`` sees one).

:func:`scw` is vectorised (sort, then a comparison of each position with its neighbours' chain starts;
no loop), for jit; :func:`scw_reference` is the per-sample Python loop it is tested against.

The geometry check (:func:`scw_geometry`) accepts a pair only if its crystals can hold the two photons of
one decay (:func:`~jaxlab.methods.petnet.compatible_pairs`). ``multiples="kill"`` applies it to SCW's
chains of exactly two; ``multiples="single_good"`` also keeps, from a longer chain, the one compatible pair
within ``window`` when the chain holds exactly one (GATE's "killAllIfMultipleGoods" policy).

Delay calibration (:func:`calibrate_delays`, :func:`scw_calibrated`) adds an estimate of each crystal's
delay to its hit times before sorting, so the hits of one decay line up and a narrower window suffices;
the output is then at the estimated decay time.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ._encode import Hits

_BIG = np.iinfo(np.int32).max


def _sorted(hits: Hits, time: jax.Array | None = None):
    t = jnp.where(hits.valid, hits.time if time is None else time, _BIG)
    order = jnp.argsort(t, axis=-1, stable=True)
    ts = jnp.take_along_axis(t, order, -1)
    vs = jnp.take_along_axis(hits.valid, order, -1)
    return order, ts, vs


def _chains(ts: jax.Array, vs: jax.Array, window):
    """``link[i]``: sorted hit i joins hit i-1's chain; ``start = ~link``."""
    gap_ok = (ts[..., 1:] - ts[..., :-1] <= window) & vs[..., 1:]
    link = jnp.concatenate([jnp.zeros_like(gap_ok[..., :1]), gap_ok], -1)
    return link, ~link


def _shift(a: jax.Array, k: int, fill) -> jax.Array:
    """``out[i] = a[i + k]`` (``fill`` beyond the ends)."""
    pad = jnp.full(a.shape[:-1] + (abs(k),), fill, a.dtype)
    return jnp.concatenate([a[..., k:], pad], -1) if k > 0 else jnp.concatenate([pad, a[..., :k]], -1)


def _unsort(order: jax.Array, values: jax.Array) -> jax.Array:
    rows = jnp.arange(order.shape[0])[:, None]
    return jnp.zeros_like(values).at[rows, order].set(values)


def _pairs_of_two(link, start, vs):
    first = vs & start & _shift(link, 1, False) & _shift(start, 2, True)
    second = vs & link & _shift(start, -1, True) & _shift(start, 1, True)
    return first, second


def _flat(hits: Hits) -> tuple[Hits, tuple[int, ...]]:
    lead = hits.time.shape[:-1]
    return Hits(*(a.reshape((-1, a.shape[-1])) for a in hits)), lead


@jax.jit
def scw(hits: Hits, window=8) -> jax.Array:
    """Single coincidence window sorting of padded hit lists.

    Args:
      hits: :class:`Hits` with ``(..., M)`` lists (only ``time`` and ``valid`` are read).
      window: largest gap in steps between consecutive hits of one chain (8 in the reference).

    Returns:
      ``(..., M)`` bool: the hits accepted as coincidences (members of chains of exactly two).

    Examples:
      >>> import jax.numpy as jnp
      >>> t = jnp.array([[0, 5, 30, 100, 104, 109]])   # chains {0, 5}, {30}, {100, 104, 109}
      >>> h = Hits(t, jnp.zeros_like(t), t >= 0, -jnp.ones_like(t), t < 0)
      >>> scw(h, window=8)
      Array([[ True,  True, False, False, False, False]], dtype=bool)
    """
    flat, lead = _flat(hits)
    order, ts, vs = _sorted(flat)
    link, start = _chains(ts, vs, window)
    first, second = _pairs_of_two(link, start, vs)
    return _unsort(order, first | second).reshape(lead + (flat.time.shape[-1],))


def scw_geometry(hits: Hits, compatible: jax.Array, window=8, multiples: str = "kill") -> jax.Array:
    """SCW with a geometry check: a pair is kept only if ``compatible[c_a, c_b]``.

    Args:
      hits: :class:`Hits` ``(..., M)`` (``time``, ``crystal``, ``valid`` are read).
      compatible: ``(C, C)`` bool, e.g. :func:`~jaxlab.methods.petnet.compatible_pairs` of the preset.
      window: SCW window in steps.
      multiples: ``"kill"`` (only chains of exactly two, as SCW) or ``"single_good"`` (also the single
        compatible pair, within ``window``, of a longer chain that holds exactly one).

    Returns:
      ``(..., M)`` bool: accepted hits.

    Each policy is one jitted program (:data:`SCW_GEOMETRY_JIT`, ``window`` traced).
    """
    if multiples not in SCW_GEOMETRY_JIT:
        raise ValueError(f"multiples must be 'kill' or 'single_good', got {multiples!r}")
    return SCW_GEOMETRY_JIT[multiples](hits, compatible, window)


def _scw_geometry(hits: Hits, compatible: jax.Array, window, multiples: str) -> jax.Array:
    flat, lead = _flat(hits)
    order, ts, vs = _sorted(flat)
    cs = jnp.take_along_axis(flat.crystal, order, -1)
    link, start = _chains(ts, vs, window)
    compatible = jnp.asarray(compatible, bool)
    if multiples == "kill":
        first, second = _pairs_of_two(link, start, vs)
        good_next = compatible[cs, _shift(cs, 1, 0)]  # sorted hit i with hit i + 1
        keep = (first & good_next) | (second & _shift(good_next, -1, False))
    else:
        chain = jnp.cumsum(start.astype(jnp.int32), -1)
        same = chain[..., :, None] == chain[..., None, :]
        close = jnp.abs(ts[..., :, None] - ts[..., None, :]) <= window
        m = ts.shape[-1]
        upper = jnp.arange(m)[:, None] < jnp.arange(m)[None, :]
        good = same & close & upper & vs[..., :, None] & vs[..., None, :] & compatible[cs[..., :, None], cs[..., None, :]]
        row_good = good.sum(-1)  # good pairs whose first hit is i
        in_chain = jnp.einsum("bij,bj->bi", same.astype(jnp.int32), row_good)
        degree = good.sum(-1) + good.sum(-2)
        keep = vs & (in_chain == 1) & (degree == 1)
    return _unsort(order, keep).reshape(lead + (flat.time.shape[-1],))


#: ``{multiples: jitted (hits, compatible, window) -> keep}``, the programs behind :func:`scw_geometry`.
SCW_GEOMETRY_JIT = {m: jax.jit(functools.partial(_scw_geometry, multiples=m)) for m in ("kill", "single_good")}


def calibrate_delays(hits: Hits, label_time: jax.Array, num_crystals: int) -> np.ndarray:
    """Per-crystal delay estimates from labelled data: the median of ``label time - hit time`` over the
    hits of true coincidences on each crystal (crystals without any take the overall median).

    Args:
      hits: :class:`Hits` of a training set (``true`` marks the hits of true coincidences).
      label_time: ``(..., M)`` the decay time of each hit's decay (``data.decay_time`` repeated per photon).
      num_crystals: ``C``.

    Returns:
      ``(C,)`` int32 NumPy array of delays.
    """
    m = (np.asarray(hits.true) & np.asarray(hits.valid)).reshape(-1)
    c = np.asarray(hits.crystal).reshape(-1)[m]
    d = (np.asarray(label_time) - np.asarray(hits.time)).reshape(-1)[m]
    if d.size == 0:
        raise ValueError("no hits of true coincidences to calibrate the delays with; simulate more samples")
    out = np.full(num_crystals, np.round(np.median(d)), np.int64)
    order = np.argsort(c, kind="stable")
    c, d = c[order], d[order]
    bounds = np.searchsorted(c, np.arange(num_crystals + 1))
    for k in range(num_crystals):
        if bounds[k + 1] > bounds[k]:
            out[k] = np.round(np.median(d[bounds[k]:bounds[k + 1]]))
    return out.astype(np.int32)


@jax.jit
def calibrated_time(hits: Hits, delays: jax.Array) -> jax.Array:
    """Hit times corrected by the crystal delays (estimated decay times)."""
    return hits.time + jnp.asarray(delays, hits.time.dtype)[hits.crystal]


@jax.jit
def scw_calibrated(hits: Hits, delays: jax.Array, window=1) -> jax.Array:
    """SCW on delay-corrected hit times (:func:`calibrated_time`); returns the accepted hits ``(..., M)``."""
    return scw(hits._replace(time=calibrated_time(hits, delays)), window)


# ----------------------------------------------------------------------------- loop oracles


def _chains_reference(times: np.ndarray, window: int) -> list[list[int]]:
    order = np.argsort(times, kind="stable")
    chains: list[list[int]] = []
    for i in order:
        if chains and times[i] - times[chains[-1][-1]] <= window:
            chains[-1].append(int(i))
        else:
            chains.append([int(i)])
    return chains


def scw_reference(hits: Hits, window: int = 8) -> np.ndarray:
    """Per-sample Python loop in the reference's style (stable sort); the oracle of :func:`scw`."""
    t, v = np.asarray(hits.time), np.asarray(hits.valid)
    flat_t, flat_v = t.reshape(-1, t.shape[-1]), v.reshape(-1, v.shape[-1])
    keep = np.zeros(flat_t.shape, bool)
    for b in range(flat_t.shape[0]):
        idx = np.flatnonzero(flat_v[b])
        for chain in _chains_reference(flat_t[b, idx], window):
            if len(chain) == 2:
                keep[b, idx[chain]] = True
    return keep.reshape(t.shape)


def scw_geometry_reference(hits: Hits, compatible: np.ndarray, window: int = 8,
                           multiples: str = "kill") -> np.ndarray:
    """Per-sample Python loop of :func:`scw_geometry` (its oracle)."""
    t, v, c = (np.asarray(a) for a in (hits.time, hits.valid, hits.crystal))
    shape = t.shape
    t, v, c = (a.reshape(-1, shape[-1]) for a in (t, v, c))
    compatible = np.asarray(compatible, bool)
    keep = np.zeros(t.shape, bool)
    for b in range(t.shape[0]):
        idx = np.flatnonzero(v[b])
        for chain in _chains_reference(t[b, idx], window):
            members = idx[chain]
            good = [(i, j) for a, i in enumerate(members) for j in members[a + 1:]
                    if compatible[c[b, i], c[b, j]] and abs(int(t[b, i]) - int(t[b, j])) <= window]
            if multiples == "kill":
                if len(members) == 2 and len(good) == 1:
                    keep[b, members] = True
            elif len(good) == 1:
                keep[b, list(good[0])] = True
    return keep.reshape(shape)
