"""The cINN: exact inverse, log-determinant against jax.jacfwd, the reference's permutations and init,
the loss, and that training lowers the held-out likelihood loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.methods.autopq import (CINN, CINNTraining, block_permutation, fit_cinn, init_cinn, nll_loss,
                                  soft_clamp)


def _scrambled(params, seed, scale=0.1):
    """Parameters far from the near-identity initialisation, so the tests see a real nonlinear map."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda l: jnp.asarray(scale * rng.standard_normal(l.shape), l.dtype), params)


@pytest.fixture(scope="module")
def small():
    """The reference's 10-block graph on H = 7 with 5 conditions: initial and scrambled parameters."""
    key = jax.random.key(3)
    model = CINN(horizon=7, num_blocks=10)
    rng = np.random.default_rng(3)          # NumPy draws: each new shape of jax.random compiles a sampler
    x, c = jax.device_put((rng.normal(size=(64, 7)).astype(np.float32), rng.normal(size=(64, 5)).astype(np.float32)))
    init = init_cinn(model, key, x, c)
    return model, _scrambled(init, 3), x, c, init


def test_inverse_undoes_forward_to_1e5_in_f32(small):
    model, params, x, c, _ = small
    z, log_det = jax.jit(model.apply)(params, x, c)
    assert z.dtype == jnp.float32
    back, inv_log_det = jax.jit(lambda p, z, c: model.apply(p, z, c, method=CINN.inverse))(params, z, c)
    np.testing.assert_allclose(back, x, atol=1e-5, rtol=0)
    np.testing.assert_allclose(inv_log_det, -log_det, atol=1e-5, rtol=1e-5)
    assert float(jnp.max(jnp.abs(z - x))) > 1.0          # far from the identity


def test_log_det_equals_slogdet_of_the_jacobian(small):
    model, params, x, c, _ = small
    p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    x64, c64 = x[:4].astype(jnp.float64), c[:4].astype(jnp.float64)

    def one(v, ci):
        jac = jax.jacfwd(lambda u: model.apply(p64, u[None], ci[None])[0][0])(v)
        return jnp.linalg.slogdet(jac), model.apply(p64, v[None], ci[None])[1][0]

    (sign, logabs), log_det = jax.jit(jax.vmap(one))(x64, c64)
    assert np.all(np.asarray(sign) != 0) and np.ptp(np.asarray(logabs)) > 0.01   # varies with x
    np.testing.assert_allclose(log_det, logabs, rtol=1e-10, atol=1e-10)


def test_graph_is_the_references(small):
    model, _, _, _, init = small
    # FrEIA's PermuteRandom(seed=k) seeds numpy's legacy generator with k
    np.random.seed(4)
    np.testing.assert_array_equal(block_permutation(24, 4), np.random.permutation(24))
    assert float(soft_clamp(jnp.asarray(1e6), 0.5)) == pytest.approx(0.5 * 0.636 * np.pi / 2, rel=1e-6)
    params = init["params"]
    flax_init = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 7)), jnp.zeros((1, 5)))
    assert jax.tree.structure(flax_init) == jax.tree.structure(init)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(flax_init), jax.tree.leaves(init)))
    assert sorted(params) == ["blocks_" + str(i) for i in range(10)] + ["condition"]
    sub = np.concatenate([np.ravel(l) for l in jax.tree.leaves({k: v for k, v in params.items() if k != "condition"})])
    assert abs(sub.std() - 0.01) < 1e-3 and abs(sub.mean()) < 1e-3   # 0.01 N(0, 1)
    w = np.asarray(params["condition"]["hidden"]["kernel"])     # torch default: U(+-1/sqrt(5))
    assert w.shape == (5, 8) and np.abs(w).max() <= 5**-0.5 and np.abs(w).max() > 0.8 * 5**-0.5
    assert params["condition"]["out"]["kernel"].shape == (8, 4)
    # H = 7: x1 has 3 entries, x2 has 4; net2 reads [x2, c] and gives (s2, t2) for x1
    assert params["blocks_0"]["net2"]["hidden"]["kernel"].shape == (4 + 4, 32)
    assert params["blocks_0"]["net2"]["out"]["kernel"].shape == (32, 2 * 3)
    assert params["blocks_0"]["net1"]["hidden"]["kernel"].shape == (3 + 4, 32)
    assert params["blocks_0"]["net1"]["out"]["kernel"].shape == (32, 2 * 4)
    with pytest.raises(ValueError, match=r"\(B, 7\)"):
        model.apply(init, jnp.zeros((1, 6)), jnp.zeros((1, 5)))


def test_loss_is_mean_half_square_minus_log_det_over_h():
    z = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    assert float(nll_loss(z, jnp.array([0.4, 0.2]))) == pytest.approx(6 / 4 / 2 - 0.3 / 2)


def test_training_lowers_the_held_out_loss(getkey):
    # a 4-step target whose mean depends on the condition: the fit must learn it
    rng = np.random.default_rng(5)          # NumPy draws: nothing compiles
    c = rng.normal(size=(600, 2)).astype(np.float32)
    x = (c[:, :1] * np.array([1.0, 0.5, -1.0, 2.0]) + 0.3 * rng.normal(size=(600, 4))).astype(np.float32)
    fit = fit_cinn(x, c, key=getkey(), model=CINN(horizon=4, num_blocks=2),
                   settings=CINNTraining(epochs=25, batch_size=128, learning_rate=1e-2))
    assert fit.holdout_loss.shape == (25,) and np.isfinite(fit.train_loss).all()
    assert fit.holdout_loss[-1] < fit.holdout_loss[0] - 0.3
