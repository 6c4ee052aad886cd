"""Tests of jaxlab.fwdgrad against jax.grad, NumPy oracles and closed-form statistics."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import gamma

from jaxlab import fwdgrad
from jaxlab.core import tolerances

from ..compile_helpers import quick_jit

# Numerical checks only: compile at backend level 0 (see conftest.py).
pytestmark = pytest.mark.usefixtures("quick_compiles")


def _params(dtype=np.float64):
    # Mixed shapes and nesting; n = 6 + 2 + 1 = 9. NumPy leaves (and inputs, below): built with jnp, every
    # operation and shape would be one more compilation.
    return {"layer": {"w": np.linspace(-1.0, 1.0, 6, dtype=dtype).reshape(3, 2), "b": np.array([0.1, -0.2], dtype)},
            "scale": (np.asarray(1.5, dtype),)}


def _loss(p, x):
    h = jnp.tanh(x @ p["layer"]["w"] + p["layer"]["b"])
    return jnp.sum(h ** 2) * p["scale"][0] + 0.1 * p["scale"][0] ** 2


X = np.arange(6.0).reshape(2, 3) / 5


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(a)) for a in jax.tree_util.tree_leaves(tree)])


def _assert_close(a, b, dtype=jnp.float64, scale=1.0):
    atol, rtol = tolerances(dtype)
    np.testing.assert_allclose(_flat(a), _flat(b), atol=atol * scale, rtol=rtol * scale)


N = 9

#: ``(loss, gradient)`` of ``_loss`` by backprop, compiled once (eagerly, every operation is a compilation).
_value_and_grad = quick_jit(jax.value_and_grad(_loss))

#: ``_loss`` as one program, for the NumPy oracle (``forward_gradient_reference`` differentiates it eagerly: with
#: the plain function every operation of the loss and of its gradient would be one more compilation). Plain
#: ``jax.jit``: the oracle's ``jax.value_and_grad`` nests it, and a nested jit takes no compiler options.
_jitted_loss = jax.jit(_loss)


@quick_jit(static_argnames=("specs",))
def _estimates(p, x, key, specs):
    """Several ``forward_gradient`` calls in one compilation (compiling is the tests' main cost).

    ``specs`` is a tuple of ``(name, ((option, value), ...))``; returns ``{name: (grads, loss)}``.
    """
    return {name: fwdgrad.forward_gradient(_loss, p, x, key=key, **dict(opts)) for name, opts in specs}


def _spec(name, **opts):
    return (name, tuple(sorted(opts.items())))


def test_projection_with_k_equals_n_is_the_gradient(getkey):
    # Rademacher tangents are left out: n random sign vectors in R^n are singular with sizable probability.
    p = _params()
    value, g = _value_and_grad(p, X)
    specs = tuple(_spec(f"{s}-{m}", num_tangents=N, sampler=s, mode=m)
                  for s in ("normal", "orthonormal") for m in ("jvp", "simulated"))
    for est, loss in _estimates(p, X, getkey(), specs).values():
        _assert_close(est, g, scale=100.0)  # the Gram solve loses a few digits at k = n
        np.testing.assert_allclose(loss, value)


def test_projection_with_k_greater_than_n_keeps_n_tangents(getkey):
    p = _params()
    _, g = _value_and_grad(p, X)
    specs = tuple(_spec(s, num_tangents=N + 3, selection=s) for s in ("first_n", "max"))
    for est, _ in _estimates(p, X, getkey(), specs).values():
        _assert_close(est, g, scale=100.0)


def test_every_aggregation_matches_the_numpy_reference(getkey):
    p, key = _params(), getkey()
    specs = tuple(_spec(a, num_tangents=4, aggregation=a) for a in fwdgrad.AGGREGATIONS)
    ests = _estimates(p, X, key, specs)
    for aggregation in fwdgrad.AGGREGATIONS:
        ref, _ = fwdgrad.forward_gradient_reference(_jitted_loss, p, X, key=key, num_tangents=4,
                                                    aggregation=aggregation)
        _assert_close(ests[aggregation][0], ref, scale=10.0)


def test_projection_per_leaf_is_exact_only_for_a_single_leaf(getkey):
    p = {"w": np.linspace(-1.0, 1.0, 5)}
    loss = lambda q: jnp.sum(jnp.sin(q["w"]) * jnp.arange(5.0))  # noqa: E731
    (est, _), g = quick_jit(lambda q, key: (fwdgrad.forward_gradient(loss, q, key=key, num_tangents=5,
                                                                     aggregation="projection_per_leaf"),
                                            jax.grad(loss)(q)))(p, getkey())  # backprop's in the same program
    _assert_close(est, g, scale=100.0)


def test_jvp_and_simulated_modes_agree_in_float32(getkey):
    p, key = _params(jnp.float32), getkey()
    x = X.astype(jnp.float32)
    aggs = ("mean", "projection", "max_normalized", "projection_per_leaf")
    specs = tuple(_spec(f"{a}-{m}", num_tangents=4, aggregation=a, mode=m) for a in aggs for m in ("jvp", "simulated"))
    est = _estimates(p, x, key, specs)
    for agg in aggs:
        (a, la), (b, lb) = est[f"{agg}-jvp"], est[f"{agg}-simulated"]
        assert jax.tree_util.tree_leaves(a)[0].dtype == jnp.float32
        _assert_close(a, b, jnp.float32, scale=10.0)
        np.testing.assert_allclose(la, lb, rtol=1e-6)


def _check_streaming(key, cases):
    p = _params()
    specs = []
    for sampler, normalize, mode, aggs in cases:
        for a in aggs:
            kw = dict(num_tangents=6, aggregation=a, sampler=sampler, normalize=normalize, mode=mode)
            specs += [_spec(f"{sampler}-{a}-held", **kw),
                      _spec(f"{sampler}-{a}-streamed", tangent_batch_size=2, gram_block_elements=12, **kw)]
    est = _estimates(p, X, key, tuple(specs))
    for sampler, _, _, aggs in cases:
        for a in aggs:
            (g1, l1), (g2, l2) = est[f"{sampler}-{a}-held"], est[f"{sampler}-{a}-streamed"]
            _assert_close(g1, g2, scale=10.0)
            np.testing.assert_allclose(l1, l2)


#: (sampler, normalize, mode, aggregations): each aggregation once (compiling is the cost). The mode changes only
#: the directional derivatives and the sampler only the regenerated tangents, whatever the aggregation;
#: normalised tangents also rescale the Gram matrices and the squared norms, so they go with the Gram
#: aggregations. (test_streaming_memory also streams projection with normal tangents in jvp mode.)
_STREAMING_CASES = [("normal", False, "jvp", ("sum", "max", "max_normalized")),
                    ("rademacher", True, "simulated", ("mean", "projection", "projection_per_leaf"))]


def test_streaming_path_gives_the_same_estimate_for_every_option(getkey):
    assert sorted(a for case in _STREAMING_CASES for a in case[3]) == sorted(fwdgrad.AGGREGATIONS)
    _check_streaming(getkey(), _STREAMING_CASES)


def test_single_tangent_mean_is_unbiased(getkey):
    # g_v = (g.v) v with v ~ N(0, I): E = g, Var_j = |g|^2 + g_j^2. Fixed key, 5-sigma bound.
    p = _params()
    g = _flat(_value_and_grad(p, X)[1])
    m = 20000
    est = quick_jit(lambda key: jax.vmap(lambda k: fwdgrad.forward_gradient(
        _loss, p, X, key=k, num_tangents=1, aggregation="mean", mode="simulated")[0])(jax.random.split(key, m)))(
        getkey())
    mean = np.concatenate([np.asarray(a).reshape(m, -1) for a in jax.tree_util.tree_leaves(est)], axis=1).mean(0)
    bound = 5 * np.sqrt((np.sum(g ** 2) + g ** 2) / m)
    assert np.all(np.abs(mean - g) < bound), (mean, g, bound)


def test_cosine_similarity_matches_theory_and_rises_with_k(getkey):
    # For a random k-dim subspace, cos^2(g, P g) ~ Beta(k/2, (n-k)/2): mean k/n. The projection's norm
    # ratio |Pg|/|g| equals its cosine. The single-tangent mean has E cos^2 = 1/n too.
    n, m, ks = 32, 4000, (1, 4, 16)
    g = np.sin(np.arange(n, dtype=np.float64))
    loss = lambda w: jnp.dot(g, w)  # noqa: E731
    key = getkey()

    @quick_jit  # every k in one compilation
    def estimates(key):
        return [jax.vmap(lambda kk, k=k: fwdgrad.forward_gradient(loss, jnp.zeros(n), key=kk, num_tangents=k,
                                                                  mode="simulated")[0])(
                    jax.random.split(jax.random.fold_in(key, k), m)) for k in ks]

    means = []
    for k, est in zip(ks, map(np.asarray, estimates(key))):  # NumPy statistics: eager jnp would compile each op
        cos = est @ g / (np.linalg.norm(est, axis=1) * np.linalg.norm(g))
        ratio = np.linalg.norm(est, axis=1) / np.linalg.norm(g)
        np.testing.assert_allclose(cos, ratio, rtol=1e-8)
        var = 2 * k * (n - k) / (n ** 2 * (n + 2))
        assert abs(float(np.mean(cos ** 2)) - k / n) < 5 * math.sqrt(var / m)
        means.append(float(np.mean(cos)))
    assert means[0] < means[1] < means[2]


def test_length_correction_factors_match_the_closed_forms():
    chi = lambda k: math.sqrt(2) * gamma((k + 1) / 2) / gamma(k / 2)  # noqa: E731
    for k in (1, 3, 10, 100):
        assert fwdgrad.expected_chi(k) == pytest.approx(chi(k), rel=1e-12)
    assert fwdgrad.expected_chi(2000) == pytest.approx(math.sqrt(2000 - 0.5), rel=1e-4)
    n = 64
    assert fwdgrad.length_correction_factor("projection", 64, n, n) == 1.0
    assert fwdgrad.length_correction_factor("projection", 4, n, n) == pytest.approx(chi(64) / chi(4))
    assert fwdgrad.length_correction_factor("mean", 1, n, n) == pytest.approx(1 / (n * math.sqrt(2 / (math.pi * n))))
    mean8 = 1 / (n * math.sqrt((n + 8) / 9) / n)
    assert fwdgrad.length_correction_factor("mean", 8, n, n) == pytest.approx(mean8)
    assert fwdgrad.length_correction_factor("sum", 8, n, 1.0) == pytest.approx(mean8 * n / 8)
    with pytest.raises(ValueError, match="length correction"):
        fwdgrad.length_correction_factor("max", 2, n, n)


def test_length_corrected_projection_has_about_unit_norm_ratio(getkey):
    n, k, m = 64, 8, 2000
    g = np.cos(np.arange(n, dtype=np.float64))
    est = quick_jit(lambda key: jax.vmap(lambda kk: fwdgrad.forward_gradient(
        lambda w: jnp.dot(g, w), jnp.zeros(n), key=kk, num_tangents=k, mode="simulated",
        length_correction=True)[0])(jax.random.split(key, m)))(getkey())
    ratio = np.linalg.norm(np.asarray(est), axis=1) / np.linalg.norm(g)
    assert abs(float(np.mean(ratio)) - 1.0) < 0.02


def test_samplers(getkey):
    key, p = getkey(), {"a": np.zeros((40, 50)), "b": np.zeros(10)}  # NumPy: no compiled zeros
    small = {"w": np.zeros(4)}

    @quick_jit  # every draw in one compilation (it was 5 programs and ~60 eager ops)
    def draws(key):
        return dict(v=fwdgrad.sample_tangents(key, p, 3), r=fwdgrad.sample_tangents(key, p, 2, sampler="rademacher"),
                    u_norms=fwdgrad.tangent_sq_norms(fwdgrad.sample_tangents(key, p, 5, normalize=True)),
                    q=fwdgrad.sample_tangents(key, small, 6, sampler="orthonormal")["w"],  # groups of n = 4, then 2
                    gram=fwdgrad.gram_matrix(fwdgrad.sample_tangents(key, p, 4, sampler="orthonormal")))

    out = jax.tree_util.tree_map(np.asarray, draws(key))  # NumPy checks: eager slices would compile per shape
    n = fwdgrad.num_parameters(p)
    v = out["v"]
    assert v["a"].shape == (3, 40, 50) and v["b"].shape == (3, 10)
    # sample_tangent on its own (a separate program: the jit that sample_tangents_reference compiles).
    one = jax.jit(fwdgrad.sample_tangent, static_argnames="sampler")(key, p, 2, sampler="normal")
    np.testing.assert_array_equal(one["a"], v["a"][2])
    np.testing.assert_array_equal(fwdgrad.sample_tangents_reference(key, p, 3)[1], _flat(jax.tree_util.tree_map(
        lambda t: t[1], v)))
    flat = np.concatenate([np.asarray(v["a"]).reshape(3, -1), np.asarray(v["b"]).reshape(3, -1)], axis=1)
    assert abs(flat.mean()) < 0.05 and abs(flat.std() - 1) < 0.05
    assert np.all(np.abs(np.corrcoef(flat)[np.triu_indices(3, 1)]) < 0.1)
    assert set(np.unique(np.asarray(out["r"]["a"]))) == {-1.0, 1.0}
    np.testing.assert_allclose(out["u_norms"], 1.0, rtol=1e-12)
    q = out["q"]
    np.testing.assert_allclose(q[:4] @ q[:4].T, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(q[4:] @ q[4:].T, np.eye(2), atol=1e-12)
    assert np.all(np.abs(out["gram"] - np.eye(4)) < 1e-12) and n == 2010


def test_equiangular_tangents_have_the_angle_and_the_orthonormal_span(getkey):
    key, p = getkey(), {"a": np.zeros((3, 4)), "b": np.zeros(2)}  # n = 14
    draw = quick_jit(fwdgrad.sample_equiangular_tangents, static_argnums=(2,))  # one compilation for every angle
    q = _flat_stack(quick_jit(fwdgrad.sample_tangents, static_argnums=(2,), static_argnames="sampler")(
        key, p, 5, sampler="orthonormal"))
    for angle in (15.0, 60.0, 90.0):
        v = _flat_stack(draw(key, p, 5, angle_deg=angle))
        c = np.cos(np.radians(angle))
        np.testing.assert_allclose(v @ v.T, (1 - c) * np.eye(5) + c, atol=1e-12)
        # The same span as the orthonormal tangents of the same key: V = L Q with L lower triangular.
        np.testing.assert_allclose(v @ q.T @ q, v, atol=1e-12)
        np.testing.assert_allclose(np.triu(v @ q.T, 1), 0.0, atol=1e-12)
    np.testing.assert_allclose(_flat_stack(draw(key, p, 5, angle_deg=90.0)), q, atol=1e-12)
    with pytest.raises(ValueError, match="num_tangents"):
        fwdgrad.sample_equiangular_tangents(key, p, 15, angle_deg=30.0)
    with pytest.raises(ValueError, match="angle_deg"):
        fwdgrad.sample_equiangular_tangents(key, p, 3, angle_deg=0.0)


def _flat_stack(tangents):
    leaves = jax.tree_util.tree_leaves(tangents)
    return np.concatenate([np.asarray(v).reshape(v.shape[0], -1) for v in leaves], axis=1)


def test_works_under_jit_without_recompiling(getkey):
    p = _params(jnp.float32)
    x = X.astype(jnp.float32)

    @quick_jit
    def f(p, x, key):
        return fwdgrad.forward_gradient(_loss, p, x, key=key, num_tangents=3)

    key = getkey()
    a, _ = f(p, x, key)
    b, _ = fwdgrad.forward_gradient_reference(_jitted_loss, p, x, key=key, num_tangents=3)
    _assert_close(a, b, jnp.float32, scale=10.0)
    f(p, x, getkey())
    assert f._cache_size() == 1
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(p)


def test_grad_fn_plugs_into_jaxlab_train_and_descends(getkey):
    # The sphere, n = 64, k = 16, projection ("frog"), through jaxlab.train.make_train_step: the loss falls.
    from jaxlab.train import TrainState, make_train_step

    def loss_fn(params, model_state, batch, key):
        loss = jnp.sum(params ** 2)
        return loss, ({"sq": loss}, model_state)

    tx = optax.sgd(0.5)
    assert fwdgrad.grad_fn is fwdgrad.make_grad_fn
    step = make_train_step(loss_fn, tx, grad_fn=fwdgrad.make_grad_fn(num_tangents=16, aggregation="projection"))
    state = TrainState.create(params=np.ones(64), tx=tx)
    key = getkey()
    for i in range(30):
        state, metrics = step(state, None, jax.random.fold_in(key, i))
    assert float(np.sum(np.asarray(state.params) ** 2)) < 0.1 * 64
    assert set(metrics) >= {"loss", "sq"}


def test_has_aux_returns_the_aux(getkey):
    loss = lambda w: (jnp.sum(w ** 2), {"n": w.shape[0]})  # noqa: E731
    g, (l, aux) = quick_jit(lambda w, key: fwdgrad.forward_gradient(loss, w, key=key, num_tangents=3, has_aux=True))(
        np.ones(3), getkey())
    _assert_close(g, 2 * np.ones(3), scale=100.0)
    assert float(l) == 3.0 and int(aux["n"]) == 3


def test_clear_errors(getkey):
    key, p = getkey(), _params()
    with pytest.raises(ValueError, match="aggregation"):
        fwdgrad.forward_gradient(_loss, p, X, key=key, aggregation="median")
    with pytest.raises(ValueError, match="sampler"):
        fwdgrad.forward_gradient(_loss, p, X, key=key, sampler="uniform")
    with pytest.raises(ValueError, match="mode"):
        fwdgrad.forward_gradient(_loss, p, X, key=key, mode="backprop")
    with pytest.raises(ValueError, match="num_tangents"):
        fwdgrad.forward_gradient(_loss, p, X, key=key, num_tangents=0)
    with pytest.raises(ValueError, match="scalar"):  # raised while tracing: nothing is compiled
        jax.jit(lambda q, key: fwdgrad.forward_gradient(lambda q: q["scale"][0] * jnp.ones(2), q, key=key))(p, key)
    with pytest.raises(ValueError, match="floating point"):
        fwdgrad.forward_gradient(lambda q: jnp.sum(q), jnp.arange(3), key=key)
    with pytest.raises(ValueError, match="multiple"):
        fwdgrad.forward_gradient(_loss, p, X, key=key, num_tangents=3, tangent_batch_size=2)
    with pytest.raises(ValueError, match="elementwise"):
        fwdgrad.forward_gradient(_loss, p, X, key=key, num_tangents=2, sampler="orthonormal", tangent_batch_size=1)
