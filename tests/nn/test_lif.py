"""jaxlab.nn.LIF: the snntorch Leaky recurrence, the arctan surrogate and the detached reset."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import tolerances
from jaxlab.nn import LIF, lif, lif_reference, spike
from jaxlab.nn._surrogate import atan_surrogate_grad

from ..timeseries.zoo_helpers import quick_jit

_jlif = quick_jit(lif, static_argnames=("threshold", "alpha", "time_axis", "unroll"))


def _currents(seed, shape=(60, 3, 5)):
    """float64 input currents drawn with NumPy (no sampler compiled per shape)."""
    return jnp.asarray(0.4 * np.random.default_rng(seed).normal(size=shape) + 0.3)


def test_trajectory_matches_recurrence():
    x = _currents(0)
    for beta in (0.95, 0.5, 1.3, -0.2):
        s, u = _jlif(x, beta)
        s_ref, u_ref = lif_reference(np.asarray(x), beta)
        np.testing.assert_allclose(np.asarray(u), u_ref, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(np.asarray(s), s_ref)
        assert s_ref.sum() > 0 and s_ref.sum() < s_ref.size  # the case exercises firing and resets


def test_beta_is_clipped_to_unit_interval():
    x = _currents(1)
    np.testing.assert_array_equal(np.asarray(_jlif(x, 1.3)[1]), np.asarray(_jlif(x, 1.0)[1]))
    np.testing.assert_array_equal(np.asarray(_jlif(x, -0.5)[1]), np.asarray(_jlif(x, 0.0)[1]))
    assert not np.array_equal(np.asarray(_jlif(x, 0.9)[1]), np.asarray(_jlif(x, 1.0)[1]))


def test_threshold_time_axis_and_unroll():
    x = _currents(2)
    s2, u2 = _jlif(x, 0.9, threshold=0.7)
    s_ref, u_ref = lif_reference(np.asarray(x), 0.9, threshold=0.7)
    np.testing.assert_allclose(np.asarray(u2), u_ref, atol=1e-6)
    assert not np.array_equal(np.asarray(s2), np.asarray(_jlif(x, 0.9)[0]))
    s_t, u_t = _jlif(jnp.moveaxis(x, 0, 1), 0.9, threshold=0.7, time_axis=1)
    np.testing.assert_array_equal(np.asarray(jnp.moveaxis(s_t, 1, 0)), np.asarray(s2))
    s_u, u_u = _jlif(x, 0.9, threshold=0.7, unroll=7)
    np.testing.assert_allclose(np.asarray(u_u), np.asarray(u2), atol=1e-12)


def test_heaviside_is_strict():
    x = jnp.array([-1.0, 0.0, 1e-7, 2.0], jnp.float32)
    np.testing.assert_array_equal(np.asarray(spike(x)), [0.0, 0.0, 1.0, 1.0])
    # a membrane exactly at threshold does not fire (snntorch: mem - threshold > 0)
    s, _ = lif(jnp.array([[1.0], [0.0]], jnp.float32), 0.5)
    assert float(s[0, 0]) == 0.0


def test_surrogate_is_one_at_threshold_and_matches_closed_form():
    g = jax.grad(lambda v: spike(v).sum())
    assert float(g(jnp.array(0.0))) == 1.0
    xs = jnp.linspace(-2.0, 2.0, 41)
    for alpha in (2.0, 5.0):
        got = jax.vmap(jax.grad(lambda v, a=alpha: spike(v, a)))(xs)
        want = (alpha / 2) / (1 + (math.pi * alpha * np.asarray(xs) / 2) ** 2)
        atol, rtol = tolerances(jnp.float64)
        np.testing.assert_allclose(np.asarray(got), want, atol=atol, rtol=rtol)
        np.testing.assert_allclose(np.asarray(atan_surrogate_grad(xs, alpha)), want, atol=atol, rtol=rtol)
    # alpha matters (an ignored alpha would give the alpha = 2 curve)
    assert float(jax.grad(lambda v: spike(v, 5.0))(jnp.array(0.0))) == 2.5


def test_reset_is_detached():
    # with a detached reset, U_t is linear in the currents for the gradient: dU_t / dI_s = beta^(t - s)
    x = _currents(3, (30, 1))
    beta = 0.8
    grad = quick_jit(jax.grad(lambda i: lif(i, beta)[1].sum()))(x)
    t = x.shape[0]
    want = np.array([sum(beta ** (k - s) for k in range(s, t)) for s in range(t)])[:, None]
    assert float(_jlif(x, beta)[0].sum()) > 0  # resets happened
    np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-12)


def test_spike_gradient_goes_through_surrogate():
    x = _currents(4, (20, 4))
    g = np.asarray(quick_jit(jax.grad(lambda i: lif(i, 0.9)[0].sum()))(x))
    u = _jlif(x, 0.9)[1]
    assert np.all(np.isfinite(g)) and float(np.abs(g).sum()) > 0
    # last step: dS_T/dI_T is the surrogate at U_T - theta (nothing later depends on I_T)
    np.testing.assert_allclose(np.asarray(g[-1]), np.asarray(atan_surrogate_grad(u[-1] - 1.0)), rtol=1e-12)


def test_lif_module_learnable_beta(getkey):
    x = _currents(5, (25, 2, 3))
    layer = LIF(beta_init=0.9)
    params = quick_jit(layer.init)(getkey(), x)
    assert float(params["params"]["beta"]) == pytest.approx(0.9)

    @quick_jit  # the forward and the gradient in one program
    def run(params, x):
        return layer.apply(params, x), jax.grad(lambda p: layer.apply(p, x)[1].sum())(params)["params"]["beta"]

    (s, u), gb = run(params, x)
    np.testing.assert_allclose(np.asarray(u), lif_reference(np.asarray(x), 0.9)[1], atol=1e-6)
    assert float(gb) != 0.0
    fixed = LIF(beta_init=0.9, learn_beta=False)
    assert jax.eval_shape(fixed.init, getkey(), x) == {}
    np.testing.assert_allclose(np.asarray(quick_jit(fixed.apply)({}, x)[1]), np.asarray(u), atol=1e-6)
