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


class SampleScorer:
    """The cINN sampling rule scored against targets, jitted once.

    The windows go through in chunks of ``chunk`` (the last one padded), and the sampling mode is an
    argument of the compiled function rather than a static one, so one series needs one compilation
    for its searches and its test scores.

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
        self._fn = jax.jit(self._score)

    def _score(self, params, forecast, cond, noise, target, lambda_q, mode_index):
        z = latent(self.model, params, forecast, cond)
        zs = jax.lax.switch(mode_index, [lambda m=m: perturb(z, noise, lambda_q, m) for m in MODES])
        s = samples_from_latent(self.model, params, zs, cond)
        s = to_units(s, self.offset, self.scale, self.limits)
        y = target * self.scale + self.offset
        return sr.crps_ensemble(y, s, m_axis=-1, backend="jax"), sample_quantiles(s, self.levels)

    def evaluate(self, params, forecast, cond, noise, target, lambda_q: float,
                 mode: Mode = "multiplicative") -> tuple[float, np.ndarray]:
        """Mean sample CRPS and the quantiles ``(B, H, Q)`` (series units) of the rule on these windows.

        Args:
          forecast, cond, target: scaled point forecasts ``(B, H)``, conditions, scaled targets ``(B, H)``.
          noise: standard-normal draws ``(M, B, H)``.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        forecast, cond, target = np.asarray(forecast), np.asarray(cond), np.asarray(target)
        noise = np.asarray(noise)
        n, c = forecast.shape[0], self.chunk
        total, quantiles = 0.0, []
        for a in range(0, n, c):
            b = min(a + c, n)
            pad = c - (b - a)
            chunk = [forecast[a:b], cond[a:b], target[a:b]]
            chunk = [np.concatenate([x, np.repeat(x[-1:], pad, 0)]) if pad else x for x in chunk]
            nz = noise[:, a:b]
            nz = np.concatenate([nz, np.repeat(nz[:, -1:], pad, 1)], 1) if pad else nz
            crps, q = self._fn(params, chunk[0], chunk[1], nz, chunk[2], np.float32(lambda_q), MODES.index(mode))
            total += float(np.sum(np.asarray(crps)[: b - a], dtype=np.float64))
            quantiles.append(np.asarray(q)[: b - a])
        return total / (n * forecast.shape[1]), np.concatenate(quantiles)

    def crps(self, params, forecast, cond, noise, target, lambda_q: float, mode: Mode = "multiplicative") -> float:
        """Mean sample CRPS only (the search objective)."""
        return self.evaluate(params, forecast, cond, noise, target, lambda_q, mode)[0]


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

