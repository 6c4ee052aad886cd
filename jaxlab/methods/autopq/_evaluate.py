"""Scoring the cINN's samples and any quantile forecast: the search objective and the test metrics.

:class:`SampleScorer` compiles the whole rule (latent map, perturbation, inverse map, unscaling,
clipping, CRPS of the samples, quantiles) once per series and runs it in chunks of windows, so a search
over ``lambda_q`` compiles it once however many trials and forecasters it scores.

Sample CRPS: scoringrules ``crps_ensemble`` (its default quantile-decomposition estimator, the CRPS of
the samples' empirical distribution). Quantile CRPS: scoringrules ``crps_quantile`` (2 x the mean
pinball loss over the levels) on its NumPy backend, outside jit: scoringrules checks the levels with a
Python ``if``, so even its JAX backend (and :func:`jaxlab.timeseries.crps_quantile`) cannot be traced.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scoringrules as sr

from jaxlab import timeseries as ts

from ._cinn import CINN
from ._sampling import MODES, QUANTILES, Mode, latent, perturb, sample_quantiles, samples_from_latent, to_units

#: The central intervals reported: nominal coverage -> (lower level, upper level).
INTERVALS: dict[float, tuple[float, float]] = {0.8: (0.10, 0.90), 0.98: (0.01, 0.99)}


def _sorted_quantile_weights(levels, m: int):
    """Gather indices and weights of ``jnp.quantile(..., method="linear")`` on ``m`` sorted samples.

    The same float32 arithmetic as ``jnp.quantile`` (position ``q (m - 1)``, its floor and ceiling, the
    weights ``1 - w`` and ``w``), so quantiles read off pre-sorted samples equal ``jnp.quantile``'s.
    """
    q = np.asarray(levels, np.float32) * np.float32(m - 1)
    low, high = np.floor(q), np.ceil(q)
    w_high = (q - low).astype(np.float32)
    w_low = (np.float32(1) - w_high).astype(np.float32)
    clip = lambda i: np.clip(i, 0, m - 1).astype(np.int32)
    return clip(low), clip(high), w_low, w_high


class SampleScorer:
    """The cINN sampling rule scored against targets, jitted once.

    The windows go through in chunks of ``chunk`` (the last one padded), and the sampling mode is an
    argument of the compiled function rather than a static one, so one series needs one compilation
    for its searches and its test scores (``lambda_q`` is an argument too: no trial recompiles).

    Both the sample CRPS (scoringrules' quantile-decomposition estimator) and the quantiles need the
    samples sorted. XLA's CPU sort is slow (on ``(256, 48, 100)`` samples about 30x NumPy's, and it
    took half a trial's time when it ran twice inside the jitted rule), so the compiled rule returns
    the samples, NumPy sorts them once, and two small jitted programs take the CRPS
    (``crps_ensemble(..., sorted_ensemble=True)``) and the quantiles (``jnp.quantile``'s linear
    interpolation as gathers, :func:`_sorted_quantile_weights`) from the sorted samples; the search
    objective (:meth:`crps`) skips the quantiles. Sorting is exact, so the figures are those of
    scoring the unsorted samples in one program.

    Args:
      model: the cINN.
      offset, scale: the target scaler (samples are scored in the series' units).
      limits: physical limits the samples are clipped to.
      levels: quantile levels returned by :meth:`evaluate`.
      chunk: windows per jitted call.
    """

    def __init__(self, model: CINN, offset: float, scale: float, limits=(None, None), levels=QUANTILES,
                 chunk: int = 256):
        self.model, self.offset, self.scale, self.limits = model, float(offset), float(scale), tuple(limits)
        self.levels, self.chunk = tuple(levels), int(chunk)
        self._samples = jax.jit(self._sample)
        self._crps_sorted = jax.jit(self._crps_of_sorted)
        self._quantiles_sorted = jax.jit(self._quantiles_of_sorted)

    def _sample(self, params, forecast, cond, noise, lambda_q, mode_index):
        z = latent(self.model, params, forecast, cond)
        zs = jax.lax.switch(mode_index, [lambda m=m: perturb(z, noise, lambda_q, m) for m in MODES])
        s = samples_from_latent(self.model, params, zs, cond)
        return to_units(s, self.offset, self.scale, self.limits)

    def _crps_of_sorted(self, sorted_samples, target):
        y = target * self.scale + self.offset
        return sr.crps_ensemble(y, sorted_samples, m_axis=-1, sorted_ensemble=True, backend="jax")

    def _quantiles_of_sorted(self, sorted_samples):
        low, high, w_low, w_high = _sorted_quantile_weights(self.levels, sorted_samples.shape[-1])
        return sorted_samples[..., low] * w_low + sorted_samples[..., high] * w_high

    def _chunks(self, forecast, cond, noise, target):
        forecast, cond, target = np.asarray(forecast), np.asarray(cond), np.asarray(target)
        noise = np.asarray(noise)
        n, c = forecast.shape[0], self.chunk
        for a in range(0, n, c):
            b = min(a + c, n)
            pad = c - (b - a)
            chunk = [forecast[a:b], cond[a:b], target[a:b]]
            chunk = [np.concatenate([x, np.repeat(x[-1:], pad, 0)]) if pad else x for x in chunk]
            nz = noise[:, a:b]
            nz = np.concatenate([nz, np.repeat(nz[:, -1:], pad, 1)], 1) if pad else nz
            yield b - a, chunk[0], chunk[1], nz, chunk[2]

    def _run(self, params, forecast, cond, noise, target, lambda_q, mode, quantiles: bool):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        total, out = 0.0, []
        for k, f, c, nz, y in self._chunks(forecast, cond, noise, target):
            s = np.sort(np.asarray(self._samples(params, f, c, nz, np.float32(lambda_q), MODES.index(mode))), -1)
            total += float(np.sum(np.asarray(self._crps_sorted(s, y))[:k], dtype=np.float64))
            if quantiles:
                out.append(np.asarray(self._quantiles_sorted(s))[:k])
        forecast = np.asarray(forecast)
        return total / (forecast.shape[0] * forecast.shape[1]), (np.concatenate(out) if quantiles else None)

    def evaluate(self, params, forecast, cond, noise, target, lambda_q: float,
                 mode: Mode = "multiplicative") -> tuple[float, np.ndarray]:
        """Mean sample CRPS and the quantiles ``(B, H, Q)`` (series units) of the rule on these windows.

        Args:
          forecast, cond, target: scaled point forecasts ``(B, H)``, conditions, scaled targets ``(B, H)``.
          noise: standard-normal draws ``(M, B, H)``.
        """
        return self._run(params, forecast, cond, noise, target, lambda_q, mode, True)

    def crps(self, params, forecast, cond, noise, target, lambda_q: float, mode: Mode = "multiplicative") -> float:
        """Mean sample CRPS only (the search objective; no quantiles are computed)."""
        return self._run(params, forecast, cond, noise, target, lambda_q, mode, False)[0]


def sample_scores_reference(model: CINN, params, forecast, cond, noise, target, lambda_q: float, offset: float,
                            scale: float, limits=(None, None), levels=QUANTILES,
                            mode: Mode = "multiplicative") -> tuple[float, np.ndarray]:
    """Oracle of :meth:`SampleScorer.evaluate`: all windows at once, unsorted samples into scoringrules'
    ``crps_ensemble`` (which sorts them itself) and ``jnp.quantile``; no chunks, no NumPy sort."""
    def one_pass(params, forecast, cond, noise, target, lambda_q):
        z = latent(model, params, forecast, cond)
        s = to_units(samples_from_latent(model, params, perturb(z, noise, lambda_q, mode), cond), offset, scale,
                     limits)
        return sr.crps_ensemble(target * scale + offset, s, m_axis=-1, backend="jax"), sample_quantiles(s, levels)

    crps, q = jax.jit(one_pass)(params, *(jnp.asarray(a) for a in (forecast, cond, noise, target)), lambda_q)
    return float(np.mean(np.asarray(crps, np.float64))), np.asarray(q)


def quantile_scores(quantiles: np.ndarray, target: np.ndarray, levels=QUANTILES) -> dict[str, float]:
    """Scores of a quantile forecast ``(B, H, Q)`` against targets ``(B, H)`` (series units).

    Returns ``crps_quantile`` (scoringrules), ``pinball``, ``mae`` of the median (when 0.5 is a level) and
    ``coverage_80``/``width_80``/``coverage_98``/``width_98`` for the intervals in :data:`INTERVALS`.
    """
    levels = tuple(float(v) for v in levels)
    q, y = np.asarray(quantiles), np.asarray(target)
    out = {"crps_quantile": float(np.mean(sr.crps_quantile(y, q, np.asarray(levels), backend="numpy")))}
    out.update({k: float(v) for k, v in _interval_metrics(levels)(q, y).items()})
    return out


@functools.lru_cache(maxsize=None)
def _interval_metrics(levels: tuple[float, ...]):
    """One jitted program per level set for the :mod:`jaxlab.timeseries` metrics of :func:`quantile_scores`."""
    def metrics(q, y):
        out = {"pinball": ts.pinball(q, y, levels)}
        if 0.5 in levels:
            out["mae"] = ts.mae(q[..., levels.index(0.5)], y)
        for nominal, (lo, hi) in INTERVALS.items():
            if lo in levels and hi in levels:
                a, b = q[..., levels.index(lo)], q[..., levels.index(hi)]
                tag = f"{round(100 * nominal)}"
                out[f"coverage_{tag}"] = ts.interval_coverage(a, b, y)
                out[f"width_{tag}"] = ts.interval_width(a, b)
        return out
    return jax.jit(metrics)


def gaussian_crps(forecast: np.ndarray, sigma: np.ndarray, target: np.ndarray) -> float:
    """Closed-form mean CRPS of ``N(forecast, sigma_h^2)`` (scoringrules ``crps_normal``)."""
    f = np.asarray(forecast, np.float64)
    return float(np.mean(sr.crps_normal(np.asarray(target, np.float64), f, np.broadcast_to(sigma, f.shape),
                                        backend="numpy")))

