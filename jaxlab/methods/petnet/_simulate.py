"""Toy PET detector simulator, vectorised and keyed (a JAX port of the reference ``simulatePET.py``).

Per sample (all samples drawn at once, as arrays):

* ``max(1, Poisson(activity))`` decays at uniform integer times in ``[max delay, T)``;
* each decay emits two photons: photon 1 lands on a uniform crystal ``(x1, y1)`` (position in the ring,
  ring); photon 2 lands at the reference's *mirror* position ``x2 = (Nc - x1 + u) mod Nc`` with
  ``u`` uniform in ``[-spread, spread - 1]`` and a ring ``y2`` uniform in
  ``[max(NR - y1 - spread, 0), min(NR - y1 + spread, NR - 1))`` (NumPy ``randint``'s half-open range, as
  in the reference; a ring window that is empty there, which happens for a single ring, where the
  reference would raise, gives ring ``max(NR - y1 - spread, 0)``). ``antipodal=True`` puts the anchor at
  the point across the ring, ``x1 + Nc/2``, instead;
* each photon is detected with probability ``detection_efficiency`` (0.141);
* each crystal has a fixed delay ``~ Binomial(delay_max, delay_mean / delay_max)``, drawn once per
  detector from its own key (:func:`detector_delays`), and a hit is recorded at ``decay time - delay``;
* the label keeps the decays whose two photons were both detected, at the *undelayed* decay time, with
  the decay's index as its ID.

Options the reference does not have, off by default: ``scatter_prob`` (a photon is scattered onto a
uniform random crystal; such a decay is then not a true coincidence and leaves the label) and
``time_jitter`` (Gaussian noise of that standard deviation, in steps, rounded and added to each hit
time, which is then clipped to ``[0, T)``).

Crystal IDs are ``ring * Nc + x``. The reference numbers crystals module by module
(``position_to_crystalID``), a fixed relabelling that changes neither a coincidence sorter, a fully
connected network nor any metric, so it is not reproduced. Two hits on one crystal at one time step add
up (value 2) when encoded as a dense array, as SciPy's ``coo_array`` does in the reference.

The samples are kept as event lists (:class:`PETData`); :mod:`._encode` turns a batch into the dense
``(B, T, C)`` spike trains inside jit, so a data set of the clinical size never exists densely.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Preset:
    """Detector, acquisition and data-set size of one use case.

    Attributes:
      name: short name.
      num_rings, crystals_per_ring: the geometry (``C = num_rings * crystals_per_ring`` channels).
      num_steps: time steps ``T`` per sample.
      activity: mean number of decays per sample.
      num_train, num_test: samples in each split.
      detection_efficiency: probability that a photon is detected.
      spread: half-width of the partner window (reference ``Spread``).
      delay_max, delay_mean: crystal delays ``~ Binomial(delay_max, delay_mean / delay_max)``.
      delay_seed: seed of the detector's delays (the reference uses 0 for every sample).
      antipodal: partner anchored across the ring (``x1 + Nc/2``) instead of the mirror ``Nc - x1``.
      fix_geometry_wrap: give the geometry channel its full window also where the window wraps around
        the ring (the reference loses it at ``x`` in ``{Nc-1, 0, 1, 2}`` for spread 2).
      geometry_value: value of a geometry-channel event (0.1).
      scatter_prob: probability that a photon is scattered onto a random crystal (0: reference).
      time_jitter: standard deviation of Gaussian hit-time noise in steps (0: reference).
      max_events: events per sample held in the arrays; ``None`` picks ``activity + 10 sqrt(activity)
        + 10`` (the chance that a Poisson count exceeds it is below 1e-12); counts above it are clipped.
    """

    name: str
    num_rings: int
    crystals_per_ring: int
    num_steps: int
    activity: float
    num_train: int
    num_test: int
    detection_efficiency: float = 0.141
    spread: int = 2
    delay_max: int = 20
    delay_mean: float = 10.0
    delay_seed: int = 0
    antipodal: bool = False
    fix_geometry_wrap: bool = False
    geometry_value: float = 0.1
    scatter_prob: float = 0.0
    time_jitter: float = 0.0
    max_events: int | None = None

    @property
    def num_crystals(self) -> int:
        return self.num_rings * self.crystals_per_ring

    @property
    def events_per_sample(self) -> int:
        if self.max_events is not None:
            return int(self.max_events)
        return int(math.ceil(self.activity + 10.0 * math.sqrt(self.activity) + 10.0))

    @property
    def pairs_per_sample(self) -> float:
        """Expected true coincidences per sample, ``E[max(1, N)] p^2 (1 - scatter)^2``, N ~ Poisson."""
        e_n = self.activity + math.exp(-self.activity)  # E[max(1, N)] = E[N] + P(N = 0)
        return e_n * self.detection_efficiency**2 * (1.0 - self.scatter_prob) ** 2


PRESETS: dict[str, Preset] = {
    # the paper's "clinical" set (petsim): 240 input neurons, T = 1000, 40k samples split 0.9/0.1
    "clinical": Preset("clinical", num_rings=1, crystals_per_ring=240, num_steps=1000, activity=20.0,
                       num_train=36_000, num_test=4_000),
    # parameters.py's geometry (16 rings x 180 crystals), the SAFIR_Style job's T = 2000 and activity = 1
    "safir": Preset("safir", num_rings=16, crystals_per_ring=180, num_steps=2000, activity=1.0,
                    num_train=92_160, num_test=10_240),
    # a CPU-sized set with the clinical rate of about 0.4 true coincidences per sample
    "reduced": Preset("reduced", num_rings=1, crystals_per_ring=60, num_steps=250, activity=20.0,
                      num_train=4_000, num_test=1_000),
}


def get_preset(preset: str | Preset, **overrides) -> Preset:
    """A :class:`Preset` by name (``clinical``, ``safir``, ``reduced``) or as given, with field overrides."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown PET preset {preset!r}; choose one of {sorted(PRESETS)}")
        preset = PRESETS[preset]
    return dataclasses.replace(preset, **overrides) if overrides else preset


class PETData(NamedTuple):
    """Simulated samples as event lists; the leading axis is the sample, ``K`` the event slot.

    Attributes:
      decay_time: ``(N, K)`` int32 decay time (undelayed) of each event.
      valid: ``(N, K)`` bool, the slot holds a decay of this sample.
      crystal: ``(N, K, 2)`` int32 crystal of each photon.
      detected: ``(N, K, 2)`` bool, the photon was detected (always false in an invalid slot).
      scattered: ``(N, K, 2)`` bool, the photon was scattered (only with ``scatter_prob > 0``).
      hit_time: ``(N, K, 2)`` int32 recorded time ``decay - delay[crystal]`` (+ jitter).
    """

    decay_time: jax.Array
    valid: jax.Array
    crystal: jax.Array
    detected: jax.Array
    scattered: jax.Array
    hit_time: jax.Array

    @property
    def num_samples(self) -> int:
        return int(self.decay_time.shape[0])

    @property
    def true_pair(self) -> jax.Array:
        """``(N, K)`` bool: the event is a true coincidence (both photons detected, none scattered)."""
        return self.detected.all(-1) & ~self.scattered.any(-1)

    def take(self, index) -> "PETData":
        """The samples at ``index`` (an integer array or slice), as a new :class:`PETData`."""
        return PETData(*(a[index] for a in self))


def detector_delays(preset: str | Preset) -> jax.Array:
    """Per-crystal delays ``~ Binomial(delay_max, delay_mean / delay_max)``, int32 ``(C,)``, fixed per detector.

    Drawn from ``jax.random.key(preset.delay_seed)`` as a sum of Bernoulli trials (an exact binomial
    draw that does not depend on the version of ``jax.random.binomial``).
    """
    return _detector_delays(get_preset(preset))


@functools.partial(jax.jit, static_argnums=(0,))
def _detector_delays(p: Preset) -> jax.Array:
    prob = p.delay_mean / p.delay_max
    trials = jax.random.bernoulli(jax.random.key(p.delay_seed), prob, (p.num_crystals, p.delay_max))
    return trials.sum(-1).astype(jnp.int32)


def partner_anchor(x: jax.Array, preset: Preset) -> jax.Array:
    """Unwrapped centre position of photon 2 in the ring: ``Nc - x`` (mirror) or ``x + Nc // 2``."""
    nc = preset.crystals_per_ring
    return x + nc // 2 if preset.antipodal else nc - x


def partner_rings(y: jax.Array, preset: Preset) -> tuple[jax.Array, jax.Array]:
    """The reference's ring window ``[lo, hi)`` for photon 2 (``hi <= lo``: empty, see the module notes)."""
    nr, s = preset.num_rings, preset.spread
    xp = np if isinstance(y, np.ndarray) else jnp
    return xp.maximum(nr - y - s, 0), xp.minimum(nr - y + s, nr - 1)


def simulate(key: jax.Array, preset: str | Preset, num_samples: int | None = None) -> PETData:
    """Simulates ``num_samples`` samples (default ``num_train + num_test``) of ``preset``.

    Args:
      key: PRNG key of the samples (the crystal delays come from ``preset.delay_seed``).
      preset: a :class:`Preset` or its name (``"clinical"``, ``"safir"``, ``"reduced"``).
      num_samples: how many samples.

    Returns:
      The samples as a :class:`PETData` of event lists.

    Examples:
      >>> import jax
      >>> data = simulate(jax.random.key(0), "reduced", num_samples=8)
      >>> data.crystal.shape
      (8, 75, 2)
    """
    p = get_preset(preset)
    n = p.num_train + p.num_test if num_samples is None else int(num_samples)
    if n <= 0:
        raise ValueError(f"num_samples must be positive, got {n}")
    return _simulate(key, p, n)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _simulate(key: jax.Array, p: Preset, n: int) -> PETData:
    k, nc, nr, s = p.events_per_sample, p.crystals_per_ring, p.num_rings, p.spread
    keys = jax.random.split(key, 10)
    delays = detector_delays(p)
    count = jnp.maximum(1, jax.random.poisson(keys[0], p.activity, (n,)))
    valid = jnp.arange(k)[None, :] < jnp.minimum(count, k)[:, None]
    decay_time = jax.random.randint(keys[1], (n, k), jnp.max(delays), p.num_steps).astype(jnp.int32)
    x1 = jax.random.randint(keys[2], (n, k), 0, nc)
    y1 = jax.random.randint(keys[3], (n, k), 0, nr)
    u = jax.random.randint(keys[4], (n, k), -s, s)  # randint(a - S, a + S): high end exclusive
    x2 = jnp.mod(partner_anchor(x1, p) + u, nc)
    lo, hi = partner_rings(y1, p)
    width = jnp.maximum(hi - lo, 1)
    y2 = jnp.minimum(lo + jnp.floor(jax.random.uniform(keys[5], (n, k)) * width).astype(lo.dtype), nr - 1)
    x = jnp.stack([x1, x2], -1)
    y = jnp.stack([y1, y2], -1)
    if p.scatter_prob > 0:
        scattered = jax.random.bernoulli(keys[6], p.scatter_prob, (n, k, 2)) & valid[..., None]
        x = jnp.where(scattered, jax.random.randint(keys[7], (n, k, 2), 0, nc), x)
        y = jnp.where(scattered, jax.random.randint(keys[8], (n, k, 2), 0, nr), y)
    else:
        scattered = jnp.zeros((n, k, 2), bool)
    crystal = (y * nc + x).astype(jnp.int32)
    detected = jax.random.bernoulli(keys[9], p.detection_efficiency, (n, k, 2)) & valid[..., None]
    hit_time = decay_time[..., None] - delays[crystal]
    if p.time_jitter > 0:
        noise = jax.random.normal(jax.random.fold_in(keys[9], 1), (n, k, 2)) * p.time_jitter
        hit_time = jnp.clip(hit_time + jnp.round(noise).astype(hit_time.dtype), 0, p.num_steps - 1)
    return PETData(decay_time=decay_time, valid=valid, crystal=crystal, detected=detected,
                   scattered=scattered, hit_time=hit_time.astype(jnp.int32))


def split(data: PETData, num_train: int) -> tuple[PETData, PETData]:
    """The first ``num_train`` samples and the rest (samples are i.i.d., so a prefix is a random split)."""
    return data.take(slice(0, num_train)), data.take(slice(num_train, None))


def partner_support(preset: str | Preset) -> np.ndarray:
    """``(C, C)`` bool: crystal ``b`` can receive photon 2 when photon 1 hits crystal ``a`` (NumPy, host)."""
    p = get_preset(preset)
    nc, nr, s = p.crystals_per_ring, p.num_rings, p.spread
    c = np.arange(p.num_crystals)
    y, x = np.divmod(c, nc)
    lo, hi = partner_rings(y, p)
    hi = np.maximum(hi, lo + 1) - 1  # inclusive upper ring
    anchor = partner_anchor(x, p)
    yb, xb = np.divmod(c, nc)
    dx = np.mod(xb[None, :] - anchor[:, None] + s, nc)  # in [0, 2s) <=> offset in [-s, s - 1]
    ok_x = dx < 2 * s
    ok_y = (yb[None, :] >= lo[:, None]) & (yb[None, :] <= hi[:, None])
    return ok_x & ok_y


def compatible_pairs(preset: str | Preset) -> np.ndarray:
    """``(C, C)`` symmetric bool: two crystals can hold the two photons of one decay (either order)."""
    sup = partner_support(preset)
    return sup | sup.T


def geometry_window(preset: str | Preset) -> tuple[np.ndarray, np.ndarray]:
    """Crystals that receive the geometry channel for a hit on each crystal (reference ``k_furthest_neighbours``).

    The window is ``anchor(x) + [-spread, spread]`` in the ring (inclusive) times the rings
    ``[max(NR - y - spread, 0), min(NR - y + spread, NR - 1)]``. Without ``fix_geometry_wrap`` a window that
    wraps around the ring is empty, as Python's ``range(Xmin, Xmax + 1)`` is in the reference.

    Returns:
      ``(ids, mask)``, both ``(C, W)``: crystal IDs of each window and which entries are used.
    """
    p = get_preset(preset)
    nc, nr, s = p.crystals_per_ring, p.num_rings, p.spread
    c = np.arange(p.num_crystals)
    y, x = np.divmod(c, nc)
    anchor = partner_anchor(x, p)
    lo = np.maximum(nr - y - s, 0)
    hi = np.minimum(nr - y + s, nr - 1)
    ox = np.arange(-s, s + 1)
    oy = np.arange(0, 2 * s + 1)
    xs = anchor[:, None, None] + ox[None, :, None]  # (C, 2s+1, 1), unwrapped
    ys = lo[:, None, None] + oy[None, None, :]  # (C, 1, 2s+1)
    mask = np.broadcast_to(ys <= hi[:, None, None], (c.size, ox.size, oy.size))
    if not p.fix_geometry_wrap:
        wraps = (anchor - s < 0) | (anchor + s > nc - 1)
        mask = mask & ~wraps[:, None, None]
    ids = np.minimum(ys, nr - 1) * nc + np.mod(xs, nc)
    ids = np.broadcast_to(ids, mask.shape).reshape(c.size, -1)
    return ids.astype(np.int32), mask.reshape(c.size, -1)
