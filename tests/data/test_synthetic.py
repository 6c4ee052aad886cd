"""The synthetic datasets are drawn by one compiled program each, bit for bit as the eager implementation drew
them (the reference below is that implementation, op by op)."""

import jax
import numpy as np
import pytest

from jaxlab.data import make_classification, make_regression

from ..compile_helpers import compiled_programs


def _classification_reference(key, *, num_train, num_test, shape, num_classes, noise):
    k_t, k_tr, k_te, k_ytr, k_yte = jax.random.split(key, 5)
    dim = int(np.prod(shape))
    templates = jax.random.normal(k_t, (num_classes, dim))

    def draw(k, ky, n):
        y = jax.random.randint(ky, (n,), 0, num_classes)
        x = templates[y] + noise * jax.random.normal(k, (n, dim))
        return np.asarray(x, np.float32).reshape((n, *shape)), np.asarray(y, np.int32)

    return (*draw(k_tr, k_ytr, num_train), *draw(k_te, k_yte, num_test))


def _regression_reference(key, *, num, dim, noise):
    kx, kw, kn = jax.random.split(key, 3)
    x = jax.random.normal(kx, (num, dim))
    w = jax.random.normal(kw, (dim,))
    y = x @ w + noise * jax.random.normal(kn, (num,))
    return np.asarray(x, np.float32), np.asarray(y, np.float32), np.asarray(w, np.float32)


@pytest.mark.parametrize(("x64", "raw_key"), [(True, False), (False, True)])  # float64 and float32 draws
def test_classification_equals_the_eager_draw_and_compiles_once(x64, raw_key):
    settings = dict(num_train=40 + x64 + 2 * raw_key, num_test=24, shape=(3, 4, 2), num_classes=5, noise=0.7)
    with jax.enable_x64(x64):
        key = jax.random.PRNGKey(7) if raw_key else jax.random.key(7)
        with compiled_programs() as compiled:  # before the reference, whose eager ops would be cached
            d = make_classification(key, **settings)
            again = make_classification(key, **{**settings, "noise": 0.3})  # another noise: the same program
        assert compiled == ["jit(_classification_draws)"], compiled
        want = _classification_reference(key, **settings)
        for got, ref in zip((d.x_train, d.y_train, d.x_test, d.y_test), want):
            assert got.dtype == ref.dtype and got.shape == ref.shape
            np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(again.y_train, d.y_train)
        assert not np.array_equal(again.x_train, d.x_train)


@pytest.mark.parametrize("x64", [True, False])
def test_regression_equals_the_eager_draw_and_compiles_once(x64):
    with jax.enable_x64(x64):
        key = jax.random.key(11)
        with compiled_programs() as compiled:
            got = make_regression(key, num=30 + x64, dim=6, noise=0.25)
        assert compiled == ["jit(_regression_draws)"], compiled
        want = _regression_reference(key, num=30 + x64, dim=6, noise=0.25)
        for g, r in zip(got, want):
            assert g.dtype == r.dtype and g.shape == r.shape
            np.testing.assert_array_equal(g, r)
