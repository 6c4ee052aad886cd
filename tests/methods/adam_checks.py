"""Shared by the methods' contract tests: a first Adam step written out, and the check against it."""

import jax
import numpy as np


def assert_first_adam_step_close(new, old, want, grads, lr: float, *, atol: float, rtol: float) -> None:
    """``new`` (the step's params) equals ``want`` (the reference's) wherever the gradient is clear of round-off.

    Adam's first update is ``-lr * g / (|g| + eps)``: where ``|g|`` is round-off (biases that softmax or a norm
    ignores) its sign is noise, so those entries are only checked to move by at most ``lr`` from ``old``. At
    least 100 entries must have a clear gradient, so that the comparison is not vacuous."""
    for p, p0, ref, g in zip(*(jax.tree.leaves(t) for t in (new, old, want, grads))):
        p, p0, ref, g = (np.asarray(a, np.float64) for a in (p, p0, ref, g))
        clear = np.abs(g) > 1e-5
        np.testing.assert_allclose(p[clear], ref[clear], atol=atol, rtol=rtol)
        assert np.all(np.abs(p - p0)[~clear] <= lr * (1 + 1e-5))
    assert sum(int(np.sum(np.abs(np.asarray(g)) > 1e-5)) for g in jax.tree.leaves(grads)) > 100


def adam_first_step_reference(params, grads, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    """optax.adam's first step written out in NumPy (float64): m = (1 - b1) g, v = (1 - b2) g^2, bias-corrected."""
    def one(p, g):
        p, g = np.asarray(p, np.float64), np.asarray(g, np.float64)
        m, v = (1 - b1) * g, (1 - b2) * g * g
        return p - lr * (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + eps)
    return jax.tree.map(one, params, grads)
