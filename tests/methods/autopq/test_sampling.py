"""The sampling rule: the loop oracle's quantiles, monotone quantiles, the multiplicative collapse,
and the scorer's CRPS against scoringrules' closed form for Gaussian samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scoringrules as sr
from scipy import stats

from jaxlab import timeseries as ts
from jaxlab.core import tolerances
from jaxlab.methods.autopq import (CINN, QUANTILES, SampleScorer, init_cinn, perturb, sample_quantiles,
                                   sample_quantiles_reference, sample_scores_reference, samples_from_latent,
                                   standard_noise)


def test_rule_reproduces_the_loop_oracle(getkey):
    model = CINN(horizon=6, num_blocks=3)
    rng = np.random.default_rng(0)          # NumPy draws (float64, as jax.random's under x64): nothing compiles
    x, c = jax.device_put((rng.normal(size=(5, 6)), rng.normal(size=(5, 3))))
    params = jax.tree.map(lambda a: jnp.asarray(20 * np.asarray(a)), init_cinn(model, getkey(), x, c))  # nonlinear
    z = jax.jit(model.apply)(params, x, c)[0]
    noise = standard_noise(getkey(), (5, 6), 50)
    inverse = jax.jit(lambda z, c: model.apply(params, z, c, method=CINN.inverse)[0])
    rule = jax.jit(lambda z, noise, mode: sample_quantiles(samples_from_latent(model, params,
                                                                               perturb(z, noise, 0.3, mode), c)),
                   static_argnames="mode")
    for mode in ("multiplicative", "additive"):
        ref = sample_quantiles_reference(inverse, z, c, noise, 0.3, mode=mode)
        np.testing.assert_allclose(rule(z, noise, mode), ref, rtol=1e-5, atol=1e-5)
        assert np.ptp(ref, axis=-1).min() > 0.01          # the samples spread


def test_quantiles_are_monotone_and_match_scipy():
    s = jax.device_put(np.random.default_rng(1).normal(size=(7, 3, 100)) ** 3)
    q = np.asarray(sample_quantiles(s))
    assert q.shape == (7, 3, len(QUANTILES))
    assert np.all(np.diff(q, axis=-1) >= 0)
    np.testing.assert_allclose(q, np.moveaxis(stats.scoreatpercentile(np.asarray(s), [100 * v for v in QUANTILES],
                                                                       axis=-1), 0, -1), rtol=1e-6, atol=1e-6)
    assert QUANTILES == tuple(sorted([.5, .01, .99, .05, .95, .15, .85, .25, .75, .1, .9, .2, .8, .3, .7, .4, .6]))


def test_multiplicative_noise_collapses_at_zero_and_additive_does_not():
    z = jnp.array([[0.0, 2.0]])
    noise = jnp.ones((3, 1, 2))
    np.testing.assert_array_equal(perturb(z, noise, 0.5), [[[0.0, 3.0]]] * 3)          # z (1 + lambda eps)
    np.testing.assert_array_equal(perturb(z, noise, 0.5, "additive"), [[[0.5, 2.5]]] * 3)
    np.testing.assert_array_equal(perturb(z, noise, 0.5, "prior"), noise)
    with pytest.raises(ValueError, match="mode"):
        perturb(z, noise, 0.5, "affine")


def test_crps_of_gaussian_samples_matches_the_closed_form(getkey, permutation_cinn):
    # many stratified normal samples: the ensemble CRPS converges to crps_normal
    rng = np.random.default_rng(2)          # NumPy draws: nothing compiles
    mu, sigma = rng.normal(size=40), np.exp(rng.normal(size=40))
    y = mu + sigma * rng.normal(size=40)
    grid = stats.norm.ppf((np.arange(4000) + 0.5) / 4000)
    samples = mu[:, None] + sigma[:, None] * grid[None]
    np.testing.assert_allclose(ts.crps(samples, y), np.mean(sr.crps_normal(y, mu, sigma, backend="numpy")), rtol=2e-3)
    # the scorer: a permutation cINN with additive noise gives N(forecast, lambda^2) samples in scaled units
    model, params = permutation_cinn
    forecast = rng.normal(size=(200, 4))
    target = forecast + 0.7 * rng.normal(size=(200, 4))
    noise = standard_noise(getkey(), (200, 4), 1000)
    scorer = SampleScorer(model, offset=10.0, scale=3.0, chunk=200)
    crps, q = scorer.evaluate(params, forecast, jnp.zeros((200, 2)), noise, target, 0.7, "additive")
    exact = np.mean(sr.crps_normal(10 + 3 * target, 10 + 3 * forecast, 3 * 0.7, backend="numpy"))
    assert crps == pytest.approx(float(exact), rel=0.01)
    # the median of N(10 + 3 f, 2.1^2) from 1000 draws: standard error 0.08
    assert float(np.mean(np.abs(q[..., QUANTILES.index(0.5)] - (10 + 3 * forecast)))) < 0.1


def test_scorer_chunks_and_presorted_scoring_match_the_one_pass_oracle(getkey):
    # 37 windows in chunks of 16 (the last one padded); the samples are sorted once in NumPy and scored
    # (CRPS, quantiles by gathers) in separate programs; the oracle scores the unsorted samples in one pass.
    # The offset puts part of the samples below the lower limit 0, so the clipping is exercised. (NumPy
    # draws: each new shape of jax.random compiles threefry anew.)
    rng = np.random.default_rng(3)
    model = CINN(horizon=4, num_blocks=2)
    forecast, cond = rng.normal(size=(37, 4)).astype(np.float32), rng.normal(size=(37, 3)).astype(np.float32)
    params = jax.tree.map(lambda a: jnp.asarray(20 * np.asarray(a)), init_cinn(model, getkey(), forecast, cond))
    target = (forecast + 0.5 * rng.normal(size=(37, 4))).astype(np.float32)
    noise = rng.normal(size=(50, 37, 4)).astype(np.float32)
    scorer = SampleScorer(model, offset=0.5, scale=2.0, limits=(0.0, None), chunk=16)
    atol, rtol = tolerances(jnp.float32)
    crps, q = scorer.evaluate(params, forecast, cond, noise, target, 0.4)
    ref_crps, ref_q = sample_scores_reference(model, params, forecast, cond, noise, target, 0.4, 0.5, 2.0, (0.0, None))
    assert q.shape == (37, 4, len(QUANTILES)) and (q == 0).any() and (q > 0).any()   # clipped and not
    np.testing.assert_allclose(q, ref_q, atol=atol, rtol=rtol)
    assert crps == pytest.approx(ref_crps, rel=rtol)
    assert scorer.crps(params, forecast, cond, noise, target, 0.4) == crps   # the search's objective
    assert scorer.crps(params, forecast, cond, noise, target, 1.3) != crps   # lambda_q is an argument, not a constant
    with pytest.raises(ValueError, match="mode must be one of"):
        scorer.crps(params, forecast, cond, noise, target, 0.1, "gaussian")
