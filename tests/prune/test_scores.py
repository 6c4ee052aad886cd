"""magnitude_masks with explicit scores (e.g. the modulus of complex weights stored as two real arrays)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import prune


def test_scores_replace_magnitudes_with_exact_counts(draw):
    params = {"a": draw((10, 10), jnp.float64), "b": draw((5, 4), jnp.float64)}
    scores = jax.tree.map(lambda p: -np.abs(np.asarray(p)), params)      # keep the smallest weights instead
    for scope in ("global", "layer"):
        m = prune.magnitude_masks(params, 0.6, scope=scope, scores=scores)
        plain = prune.magnitude_masks(params, 0.6, scope=scope)
        assert abs(prune.density(m) - 0.4) <= 2 / 120
        w = np.abs(np.concatenate([np.asarray(params[k]).ravel() for k in "ab"]))
        kept = np.concatenate([np.asarray(m[k]).ravel() for k in "ab"])
        if scope == "global":
            assert w[kept].max() <= w[~kept].min()
        assert not np.array_equal(np.asarray(m["a"]), np.asarray(plain["a"]))
    with pytest.raises(ValueError, match="one score per weight"):
        prune.magnitude_masks(params, 0.5, scores={"a": np.ones(3), "b": np.ones((5, 4))})


def test_complex_modulus_scores_keep_pairs_together(draw):
    re, im = draw((2, 50), jnp.float64), draw((2, 50), jnp.float64)
    params = {"w": {"weights_real": re, "weights_imag": im}, "dense": draw((10, 10), jnp.float64)}
    pair = {("w", "weights_real"): ("w", "weights_imag"), ("w", "weights_imag"): ("w", "weights_real")}.get
    scores = prune.complex_modulus_scores(params, pair)
    np.testing.assert_allclose(scores["w"]["weights_imag"], np.hypot(re, im), rtol=1e-6)
    np.testing.assert_allclose(scores["dense"], np.abs(params["dense"]))
    m = prune.magnitude_masks(params, 0.7, scores=scores)
    assert np.sum(np.asarray(m["w"]["weights_real"]) != np.asarray(m["w"]["weights_imag"])) <= 1
    with pytest.raises(KeyError, match="partner"):
        prune.complex_modulus_scores({"weights_real": re},
                                     lambda p: ("weights_imag",) if p == ("weights_real",) else None)


def _reference_keep(scores, keep):
    """The plain rule: the ``keep`` highest scores, ties to the lower position (Python's sort, no NumPy/jnp)."""
    flat = [float(v) for v in np.ravel(scores)]
    chosen = sorted(range(len(flat)), key=lambda i: (-flat[i], i))[:keep]
    mask = np.zeros(len(flat), bool)
    mask[chosen] = True
    return mask.reshape(np.shape(scores))


def test_host_masks_equal_the_traced_path_and_the_plain_rule(draw):
    """Concrete params take the NumPy path, traced ones (inside jit) the jnp path: same masks, scores and
    masked params, both equal to a plain sort. Ties (exact zeros, as in an already pruned model) included."""
    re, im = draw((3, 8), jnp.float32), draw((3, 8), jnp.float32)
    a = np.array(draw((6, 5), jnp.float32))
    a[:, :2] = 0.0                     # 12 exact zeros: the layer masks' cut (keep 24 of 30) falls among ties
    params = {"f": {"weights_real": re, "weights_imag": im}, "a": jnp.asarray(a), "b": 3.0 * draw((4, 7), jnp.float32),
              "bias": draw((7,), jnp.float32)}
    pair = {("f", "weights_real"): ("f", "weights_imag"), ("f", "weights_imag"): ("f", "weights_real")}.get

    def everything(p):
        scores = prune.complex_modulus_scores(p, pair)
        g = prune.magnitude_masks(p, 0.7, scores=scores)
        lay = prune.magnitude_masks(p, 0.2, scope="layer")
        return scores, g, lay, prune.apply_masks(p, g)

    host = everything(params)
    traced = jax.jit(everything)(params)                      # one compilation for every piece
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(host))
    jax.tree.map(lambda h, t: np.testing.assert_allclose(h, t, rtol=1e-6), host[0], traced[0])
    for h, t in zip(jax.tree.leaves(host[1:]), jax.tree.leaves(traced[1:])):
        np.testing.assert_array_equal(h, t)
    scores, g, lay, applied = host
    # the plain rule: one global order over the prunable leaves (float32 scores), and one per leaf
    names = [("a",), ("b",), ("f", "weights_imag"), ("f", "weights_real")]     # the tree's leaf order
    get = lambda tree, path: tree[path[0]] if len(path) == 1 else tree[path[0]][path[1]]  # noqa: E731
    cat = np.concatenate([np.asarray(get(scores, k), np.float32).ravel() for k in names])
    want = _reference_keep(cat, cat.size - round(0.7 * cat.size))
    np.testing.assert_array_equal(np.concatenate([np.asarray(get(g, k)).ravel() for k in names]), want)
    for k in names:
        w = np.abs(np.asarray(get(params, k)))
        np.testing.assert_array_equal(np.asarray(get(lay, k)), _reference_keep(w, w.size - round(0.2 * w.size)))
        np.testing.assert_array_equal(np.asarray(get(applied, k)), np.where(get(g, k), get(params, k), 0.0))
    assert np.all(np.asarray(g["bias"])) and np.all(np.asarray(lay["bias"]))
    assert np.sum(np.asarray(g["f"]["weights_real"]) != np.asarray(g["f"]["weights_imag"])) <= 1
    # placement: an uncommitted input stays uncommitted, one placed on a device (or sharded) keeps its place
    assert not applied["a"].committed
    dev = jax.devices()[-1]
    placed = prune.apply_masks({"a": jax.device_put(params["a"], dev)}, {"a": g["a"]})["a"]
    assert placed.committed and placed.devices() == {dev}
    np.testing.assert_array_equal(placed, applied["a"])
