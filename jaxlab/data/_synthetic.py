"""Synthetic datasets for tests: learnable, generated from an explicit key."""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxlab.core import PRNGKey

from ._images import Dataset


@functools.partial(jax.jit, static_argnames=("num_train", "num_test", "dim", "num_classes"))
def _classification_draws(key, *, num_train: int, num_test: int, dim: int, num_classes: int):
    """The random draws, one program (eagerly, each split and draw compiled its own)."""
    k_t, k_tr, k_te, k_ytr, k_yte = jax.random.split(key, 5)
    templates = jax.random.normal(k_t, (num_classes, dim))

    def draw(k, ky, n):
        return jax.random.normal(k, (n, dim)), jax.random.randint(ky, (n,), 0, num_classes)

    return templates, draw(k_tr, k_ytr, num_train), draw(k_te, k_yte, num_test)


def _scatter(centre, noise, z) -> np.ndarray:
    """``centre + noise * z`` in NumPy, in the dtype JAX drew ``z`` in, then float32.

    On the host because, jitted, the product and the sum round float32 differently in the last bit (in about
    29% of the elements; a fused multiply-add is the likely cause, not confirmed) from the eager ops that drew
    these data before; NumPy keeps them bit for bit.
    """
    z = np.asarray(z)
    return np.asarray(np.asarray(centre) + np.asarray(noise, z.dtype) * z, np.float32)


def make_classification(key: PRNGKey, *, num_train: int = 512, num_test: int = 256, shape=(8, 8, 1),
                        num_classes: int = 4, noise: float = 0.5) -> Dataset:
    """Gaussian class clusters shaped like images: class ``c`` is a random template plus noise.

    A linear classifier separates the classes well for ``noise`` below about 1.
    """
    dim = int(np.prod(shape))
    templates, train, test = jax.device_get(_classification_draws(
        key, num_train=int(num_train), num_test=int(num_test), dim=dim, num_classes=int(num_classes)))

    def host(drawn, n):
        z, y = drawn
        return _scatter(templates[y], noise, z).reshape((n, *shape)), np.asarray(y, np.int32)

    return Dataset(*host(train, num_train), *host(test, num_test))


@functools.partial(jax.jit, static_argnames=("num", "dim"))
def _regression_draws(key, *, num: int, dim: int):
    kx, kw, kn = jax.random.split(key, 3)
    x = jax.random.normal(kx, (num, dim))
    w = jax.random.normal(kw, (dim,))
    return x, w, x @ w, jax.random.normal(kn, (num,))


def make_regression(key: PRNGKey, *, num: int = 256, dim: int = 8, noise: float = 0.1):
    """``y = x @ w + noise`` with ``w`` drawn from ``key``; returns ``(x, y, w)``."""
    x, w, signal, z = jax.device_get(_regression_draws(key, num=int(num), dim=int(dim)))
    return np.asarray(x, np.float32), _scatter(signal, noise, z), np.asarray(w, np.float32)
