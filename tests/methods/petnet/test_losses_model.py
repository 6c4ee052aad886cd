"""Count and timing losses (with a real gradient) and the PETNet network against a step-by-step loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import tolerances
from jaxlab.methods.petnet import (PETNet, count_l1, count_mse, exp_filter, exp_filter_reference, petnet_loss,
                                   van_rossum)
from jaxlab.nn import lif_reference


@jax.jit
def _bernoulli(key, p):
    return jax.random.bernoulli(key, p, (3, 40, 4)).astype(jnp.float64)


def _trains(key, shape=(3, 40, 4), p=0.1):
    if shape == (3, 40, 4):  # the common shape: one compiled program
        return _bernoulli(key, p)
    return jax.random.bernoulli(key, p, shape).astype(jnp.float64)


# the losses as single programs, so each test compiles once instead of once per array operation
_count_mse, _count_l1, _exp_filter, _van_rossum = (jax.jit(f) for f in (count_mse, count_l1, exp_filter, van_rossum))
_petnet_loss = jax.jit(petnet_loss, static_argnames="kind")


def test_count_losses_match_formulas(getkey):
    s, y = _trains(getkey()), _trains(getkey())
    d = np.asarray(s).sum(1) - np.asarray(y).sum(1)
    t = s.shape[1]
    assert float(_count_mse(s, y)) == pytest.approx(np.mean(d**2) / t)
    assert float(_count_l1(s, y)) == pytest.approx(np.sum(np.abs(d)) / t)


def test_l1_count_has_zero_subgradient_at_an_exact_count():
    # jnp.abs has derivative 1 at 0; a silent neuron with an empty label must not be pushed down
    y = np.zeros((1, 10, 2))
    y[0, 3, 1] = 1.0
    y, s = jnp.asarray(y), jnp.zeros((1, 10, 2))
    g = jax.jit(jax.grad(count_l1))(s, y)
    assert float(jnp.abs(g[..., 0]).sum()) == 0.0  # neuron 0: count 0 == label 0
    np.testing.assert_allclose(np.asarray(g[..., 1]), -0.1)  # neuron 1: one spike missing


def test_exp_filter_matches_convolution(getkey):
    x = _trains(getkey())
    atol, rtol = tolerances(jnp.float64)
    np.testing.assert_allclose(np.asarray(_exp_filter(x, 4.0)), exp_filter_reference(x, 4.0), atol=atol, rtol=rtol)


def test_van_rossum_costs_time_error():
    y = np.zeros((1, 60, 1))
    y[0, 20, 0] = 1.0
    y = jnp.asarray(y)
    shifted = np.zeros((4,) + y.shape[1:])
    for i, d in enumerate((0, 1, 3, 10)):
        shifted[i, 20 + d, 0] = 1.0
    costs = [float(_van_rossum(jnp.asarray(shifted[i:i + 1]), y, 5.0)) for i in range(4)]
    assert costs[0] == 0.0 and costs[0] < costs[1] < costs[2] < costs[3]
    assert float(_van_rossum(y, y, 5.0)) == 0.0


def test_timing_loss_gradient_against_finite_differences(getkey):
    """The timing loss has a real gradient: on a smooth stand-in S = sigmoid(theta) for the spikes,
    jax.grad equals central finite differences, and it is far from zero."""
    theta = jax.random.normal(getkey(), (2, 30, 3), jnp.float64)
    y = _trains(getkey(), (2, 30, 3), 0.2)

    @jax.jit
    def f(th):
        return van_rossum(jax.nn.sigmoid(th), y, 5.0)

    g = np.asarray(jax.jit(jax.grad(f))(theta))
    eps = 1e-6
    flat = np.asarray(theta).reshape(-1)
    idx = np.random.default_rng(0).choice(flat.size, 25, replace=False)
    fd = []
    for i in idx:
        e = np.zeros_like(flat)
        e[i] = eps
        fd.append((float(f(jnp.asarray((flat + e).reshape(theta.shape)))) -
                   float(f(jnp.asarray((flat - e).reshape(theta.shape))))) / (2 * eps))
    np.testing.assert_allclose(g.reshape(-1)[idx], fd, rtol=1e-6, atol=1e-9)
    assert np.abs(g).max() > 1e-3
    # and through the combined loss the timing weight matters
    s = jax.jit(jax.nn.sigmoid)(theta)
    l_a, _ = _petnet_loss(s, y, "l1_vr", timing_weight=0.0)
    l_b, parts = _petnet_loss(s, y, "l1_vr", timing_weight=2.0)
    assert float(l_b - l_a) == pytest.approx(2.0 * float(parts["timing"]))
    with pytest.raises(ValueError, match="unknown PETNet loss"):
        petnet_loss(y, y, "chamfer")


def _loop_reference(params, x, num_layers):
    """The reference's forward: for each step, through every layer (NumPy float64)."""
    p = params["params"]
    xs = np.asarray(x, np.float64)
    b, t, _ = xs.shape
    h = xs
    for i in range(num_layers):
        w, bias = np.asarray(p[f"fc{i + 1}"]["kernel"], np.float64), np.asarray(p[f"fc{i + 1}"]["bias"], np.float64)
        beta = float(p[f"lif{i + 1}"]["beta"])
        cur = np.einsum("btc,ch->bth", h, w) + bias
        h = lif_reference(cur, beta, time_axis=1)[0]
    return h


@pytest.mark.parametrize("num_layers", [2, 3])
def test_petnet_equals_step_loop(getkey, num_layers):
    net = PETNet(num_outputs=5, hidden=12, num_layers=num_layers, weight_gain=6.0, bias_gain=0.0)
    x = _trains(getkey(), (2, 30, 10), 0.3)
    # init and forward as one program: one compilation (the init traces the forward anyway)
    params, out = jax.jit(lambda k, x: (v := net.init(k, x), net.apply(v, x)))(getkey(), x)
    assert sorted(params["params"]) == sorted([f"fc{i + 1}" for i in range(num_layers)] +
                                              [f"lif{i + 1}" for i in range(num_layers)])
    out = np.asarray(out)
    np.testing.assert_array_equal(out, _loop_reference(params, x, num_layers))
    assert out.shape == (2, 30, 5) and out.sum() > 0


def test_torch_init_and_gains(getkey):
    net = PETNet(num_outputs=5, hidden=64, num_layers=3)
    g = PETNet(num_outputs=5, hidden=64, num_layers=3, weight_gain=(4.0, 1.0, 1.0), bias_gain=0.0)
    x = jnp.zeros((1, 4, 100))
    # both inits as one program: one compilation
    params, pg = jax.jit(lambda k1, k2: (net.init(k1, x)["params"], g.init(k2, x)["params"]))(getkey(), getkey())
    w, b = np.asarray(params["fc1"]["kernel"]), np.asarray(params["fc1"]["bias"])
    assert np.abs(w).max() <= 0.1 and np.abs(w).max() > 0.09 and np.abs(b).max() <= 0.1
    assert np.abs(np.asarray(pg["fc1"]["kernel"])).max() > 0.3 and not np.asarray(pg["fc1"]["bias"]).any()
    with pytest.raises(ValueError, match="one per layer"):     # raised while tracing: nothing compiles
        jax.eval_shape(PETNet(num_outputs=5, num_layers=3, weight_gain=(1.0, 2.0)).init, getkey(), x)


def test_init_params_compiles_once_per_network():
    """Seeds of one set-up share one compiled ``net.init`` (a fresh ``jax.jit`` per call compiled it again)."""
    from jaxlab.methods.petnet import get_preset
    from jaxlab.methods.petnet._train import TrainSettings, Variant, _jitted_init, init_params

    preset, settings = get_preset("reduced"), TrainSettings(hidden=16)     # the smoke config's network
    net, a = init_params(preset, Variant(), settings, key=jax.random.key(0))
    net2, b = init_params(preset, Variant(), settings, key=jax.random.key(1))
    assert net2 == net and _jitted_init(net2) is _jitted_init(net) and _jitted_init(net)._cache_size() == 1
    assert a["params"]["fc1"]["kernel"].shape == (2 * preset.num_crystals, 16)
    assert not np.array_equal(a["params"]["fc1"]["kernel"], b["params"]["fc1"]["kernel"])   # the key is used
