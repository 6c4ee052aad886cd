"""Formats: construction, conversions, dense/SciPy/diagonal views, pytree behaviour, generators."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from jax.experimental import sparse as jxs

import jaxlab.sparse as jsparse

from .sparse_cases import CASES, FORMAT_OPTIONS


@pytest.mark.parametrize("case", ["empty_rows", "long_row", "all_zero"])
@pytest.mark.parametrize("fmt", sorted(FORMAT_OPTIONS))
def test_views_match_scipy(fmt, case):
    S = CASES[case]
    A = jsparse.from_scipy(S, fmt, **FORMAT_OPTIONS[fmt])
    assert A.shape == S.shape and A.dtype == np.float64
    assert A.nnz == (S.shape[0] * S.shape[1] if fmt == "dense" else S.nnz)
    assert abs(A.to_scipy() - S).sum() == 0
    np.testing.assert_array_equal(np.asarray(A.todense()), S.toarray())
    np.testing.assert_array_equal(np.asarray(A.diagonal()), S.diagonal())
    np.testing.assert_array_equal(np.asarray(A.T.todense()), S.toarray().T)


def test_index_dtype_int32_and_leaves():
    A = jsparse.CSR.from_scipy(CASES["random_rect"])
    assert all(i.dtype == jnp.int32 for i in A.index_arrays)
    leaves, treedef = jax.tree.flatten(A)
    assert leaves[0] is A.data and len(leaves) == 4
    B = jax.tree.unflatten(treedef, leaves)
    assert type(B) is jsparse.CSR and B.meta == A.meta
    # Static data (shape, strategy) is part of the tree structure, not a leaf.
    assert jax.tree.structure(A) != jax.tree.structure(jsparse.CSR.from_scipy(CASES["empty_rows"]))


@pytest.mark.parametrize("fmt", ["csr", "sellp", "hybrid"])
def test_convert_from_bcoo_astype(fmt):
    S = CASES["empty_rows"]
    A = jsparse.from_scipy(S, "coo")
    B = jsparse.convert(A, fmt)
    assert isinstance(B, jsparse.FORMATS[fmt])
    assert abs(B.to_scipy() - S).sum() == 0
    C = jsparse.FORMATS[fmt].from_bcoo(jxs.BCOO.from_scipy_sparse(S))
    assert abs(C.to_scipy() - S).sum() == 0
    D = B.astype(jnp.float32)
    assert D.dtype == jnp.float32 and D.meta == B.meta
    assert abs(jsparse.convert(A.T, "csr").to_scipy() - S.T).sum() == 0


def test_constructors_and_errors():
    S = CASES["random_rect"]
    A = jsparse.CSR(S.data, S.indices, S.indptr, shape=S.shape)
    assert abs(A.to_scipy() - S).sum() == 0
    C = S.tocoo()
    B = jsparse.COO(C.data, C.row, C.col, shape=S.shape)
    assert abs(B.to_scipy() - S).sum() == 0
    np.testing.assert_array_equal(jsparse.Dense(S.toarray()).todense(), S.toarray())
    with pytest.raises(ValueError, match="unknown sparse format"):
        jsparse.from_scipy(S, "bsr")
    with pytest.raises(ValueError, match="indptr must have shape"):
        jsparse.CSR(S.data, S.indices, S.indptr[:-1], shape=S.shape)
    with pytest.raises(ValueError, match="unknown CSR strategy"):
        jsparse.CSR.from_scipy(S, strategy="merge")
    with pytest.raises(ValueError, match="new values have shape"):
        A.with_data(jnp.zeros(3))


def test_hybrid_automatic_split_is_ginkgos():
    # 3000 rows: 1000 of length 1, 1000 of length 2, 1000 of length 30.
    lengths = np.repeat([1, 2, 30], 1000)
    assert jsparse.hybrid_ell_width(lengths) == 2  # the 1/3 quantile
    assert jsparse.hybrid_ell_width(np.full(3000, 9)) == 3  # bounded by 0.001 * rows
    assert jsparse.hybrid_ell_width(np.full(10, 4)) == 0  # small matrices: all COO, as in Ginkgo
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    rng = np.random.default_rng(0)
    S = sp.csr_matrix((rng.standard_normal(indptr[-1]), rng.integers(0, 3000, indptr[-1]), indptr),
                      shape=(3000, 3000))
    S.sum_duplicates()
    H = jsparse.Hybrid.from_scipy(S)
    spill = np.maximum(np.diff(S.indptr) - 2, 0).sum()
    assert H.meta.ell_width == 2 and H.meta.coo_nnz == spill
    assert abs(H.to_scipy() - S).sum() < 1e-12


def test_csr_strategy_and_sellp_layout():
    assert jsparse.choose_csr_strategy(10, 5) == "classical"
    assert jsparse.choose_csr_strategy(2_000_000, 5) == "load_balance"
    assert jsparse.choose_csr_strategy(10, 2000) == "load_balance"
    S = CASES["long_row"]
    P = jsparse.SELLP.from_scipy(S, slice_size=4, stride_factor=2, uniform_width=False)
    widths = np.asarray(P.slice_lengths)
    rows = np.diff(S.indptr)
    expect = [-(-max(rows[s * 4:(s + 1) * 4]) // 2) * 2 for s in range(3)]
    np.testing.assert_array_equal(widths, expect)
    np.testing.assert_array_equal(np.asarray(P.slice_sets), np.concatenate([[0], np.cumsum(expect)]))


def test_generators_follow_peers():
    P = jsparse.poisson2d(3)
    T = np.diag(np.full(3, 4.0)) - np.eye(3, k=1) - np.eye(3, k=-1)
    Sd = -np.eye(3, k=1) - np.eye(3, k=-1)
    np.testing.assert_array_equal(P.toarray(), np.kron(np.eye(3), T) + np.kron(Sd, np.eye(3)))
    P3 = jsparse.poisson3d(3)
    assert P3.shape == (27, 27) and P3.nnz == 27 * 7 - 6 * 9
    np.testing.assert_array_equal(P3.diagonal(), np.full(27, 6.0))
    R = jsparse.random_rows(500, 8, seed=0)
    assert R.shape == (500, 500) and 0.98 * 8 * 500 <= R.nnz <= 8 * 500  # repeats are summed
    W = jsparse.powerlaw_rows(20_000, 16.0, seed=0)
    assert abs(W.nnz / 20_000 - 16) < 1.5 and np.diff(W.indptr).max() > 200  # heavy tail
    assert jsparse.peer_matrix("random_1K_r4").shape == (1000, 1000)
    with pytest.raises(ValueError, match="unknown matrix name"):
        jsparse.peer_matrix("banded_9")


def test_index_dtype_widens_for_huge_sizes():
    from jaxlab.sparse._base import index_dtype

    assert index_dtype(10, 2**31 - 2) == np.int32
    assert index_dtype(10, 2**31) == np.int64  # conftest enables x64


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_auto_format_follows_the_measured_table(backend):
    """``format="auto"`` builds the format FORMAT_TABLE names for the matrix's row class on that backend."""
    kinds = {"csr": jsparse.CSR, "ell": jsparse.ELL, "hybrid": jsparse.Hybrid, "sellp": jsparse.SELLP,
             "sellp_sorted": jsparse.SELLP, "coo": jsparse.COO}
    uniform = jsparse.poisson2d(6)
    skewed = sp.csr_matrix(sp.vstack([sp.csr_matrix(np.ones((1, 40))), sp.identity(40, format="csr")[1:]]))
    for S, row_class in ((uniform, "uniform"), (skewed, "skewed")):
        assert jsparse.row_stats(S.indptr).row_class == row_class
        A = jsparse.from_scipy(S, "auto", backend=backend)
        assert isinstance(A, kinds[jsparse.FORMAT_TABLE[(backend, row_class)]]), (backend, row_class, type(A))
        np.testing.assert_allclose(np.asarray(A.todense()), S.toarray())
