"""Synthetic datasets for tests: learnable, generated from an explicit key."""

from __future__ import annotations

import jax
import numpy as np

from jaxlab.core import PRNGKey

from ._images import Dataset


def make_classification(key: PRNGKey, *, num_train: int = 512, num_test: int = 256, shape=(8, 8, 1),
                        num_classes: int = 4, noise: float = 0.5) -> Dataset:
    """Gaussian class clusters shaped like images: class ``c`` is a random template plus noise.

    A linear classifier separates the classes well for ``noise`` below about 1.
    """
    k_t, k_tr, k_te, k_ytr, k_yte = jax.random.split(key, 5)
    dim = int(np.prod(shape))
    templates = jax.random.normal(k_t, (num_classes, dim))

    def draw(k, ky, n):
        y = jax.random.randint(ky, (n,), 0, num_classes)
        x = templates[y] + noise * jax.random.normal(k, (n, dim))
        return np.asarray(x, np.float32).reshape((n, *shape)), np.asarray(y, np.int32)

    xtr, ytr = draw(k_tr, k_ytr, num_train)
    xte, yte = draw(k_te, k_yte, num_test)
    return Dataset(xtr, ytr, xte, yte)


def make_regression(key: PRNGKey, *, num: int = 256, dim: int = 8, noise: float = 0.1):
    """``y = x @ w + noise`` with ``w`` drawn from ``key``; returns ``(x, y, w)``."""
    kx, kw, kn = jax.random.split(key, 3)
    x = jax.random.normal(kx, (num, dim))
    w = jax.random.normal(kw, (dim,))
    y = x @ w + noise * jax.random.normal(kn, (num,))
    return np.asarray(x, np.float32), np.asarray(y, np.float32), np.asarray(w, np.float32)


