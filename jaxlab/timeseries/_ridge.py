"""A per-step linear model of the profile's residual: the plain baseline for forecasts with known covariates.

With the weather of the forecast days known, the first question is how much of the profile's error a
linear model of that weather removes; a trained forecaster is worth its cost only beyond that. The model:
for each step ``d`` of the cycle (each hour of the day), one ridge regression, shared by all lead
cycles, of the residual ``y - profile`` on features of that step (day type, that step's covariates,
their squares, the profile value, a constant). NumPy in float64: a ``D``-batched ``F x F`` solve, far
below the cost of a training step, so it needs no jit. Hand-written rather than scikit-learn's ``Ridge`` (a
dependency of the project) because each step has its own design matrix: ``Ridge`` would be ``D`` separate
fits per penalty, where the normal equations of all steps are one batched ``np.linalg.solve``; the tests
compare it with ``np.linalg.lstsq`` on the augmented system.
"""

from __future__ import annotations

import numpy as np

from ._recycle import NUM_META


def residual_ridge_features(meta: np.ndarray, profile: np.ndarray, covariates: np.ndarray | None) -> np.ndarray:
    """The ``(B, H, D, F)`` features of :func:`fit_residual_ridge` for forecast cycles.

    Args:
      meta: ``(B, H, M)`` each forecast cycle's metadata; its first :data:`NUM_META` columns (weekday
        one-hot, holiday, holiday tomorrow) are used.
      profile: ``(B, H, D)`` the profile of each forecast step.
      covariates: ``(B, H, D, E)`` each forecast step's known covariates, or None.

    Returns:
      Per step: the day type, the covariates and their squares, the profile value and a constant 1.
    """
    b, h, d = profile.shape
    if meta.shape[:2] != (b, h) or meta.shape[2] < NUM_META:
        raise ValueError(f"meta {meta.shape} must be (B, H, M >= {NUM_META}) for profile {profile.shape}")
    parts = [np.broadcast_to(meta[:, :, None, :NUM_META], (b, h, d, NUM_META))]
    if covariates is not None:
        if covariates.shape[:3] != (b, h, d):
            raise ValueError(f"covariates {covariates.shape} must be (B, H, D, E) for profile {profile.shape}")
        parts += [covariates, covariates**2]
    parts += [profile[..., None], np.ones((b, h, d, 1))]
    return np.concatenate([np.asarray(p, np.float64) for p in parts], axis=-1)


def fit_residual_ridge(features: np.ndarray, target_residual: np.ndarray, lam: float) -> np.ndarray:
    """Ridge weights per step of the cycle: ``argmin_w |X_d w - r_d|^2 + lam |w|^2`` for each ``d``.

    Args:
      features: ``(B, H, D, F)`` (e.g. :func:`residual_ridge_features`).
      target_residual: ``(B, H, D)`` the forecast cycles minus their profile.
      lam: the penalty (> 0: the day-type one-hot and the constant are collinear, so the plain least
        squares has no unique solution; every weight, the constant's included, is penalised).

    Returns:
      ``(D, F)`` weights; :func:`residual_ridge_forecast` applies them.
    """
    x = np.asarray(features, np.float64)
    y = np.asarray(target_residual, np.float64)
    if x.ndim != 4 or y.shape != x.shape[:3]:
        raise ValueError(f"features {x.shape} and target_residual {y.shape} must be (B, H, D, F) and (B, H, D)")
    if not lam > 0:
        raise ValueError(f"lam must be > 0 (the day-type one-hot and the constant are collinear), got {lam}")
    f = x.shape[-1]
    gram = np.einsum("bhdf,bhdg->dfg", x, x) + lam * np.eye(f)
    rhs = np.einsum("bhdf,bhd->df", x, y)
    return np.linalg.solve(gram, rhs[..., None])[..., 0]


def residual_ridge_forecast(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(B, H, D)`` residual forecasts of :func:`fit_residual_ridge`'s ``(D, F)`` weights."""
    return np.einsum("bhdf,df->bhd", np.asarray(features, np.float64), np.asarray(weights, np.float64))
