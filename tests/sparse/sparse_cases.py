"""Shared, readably named test matrices for the sparse tests (tiny, awkward on purpose)."""

import numpy as np
import scipy.sparse as sp

import jaxlab.sparse as jsparse


def _rand(m, n, density, seed):
    rng = np.random.default_rng(seed)
    d = np.where(rng.random((m, n)) < density, rng.standard_normal((m, n)), 0.0)
    return sp.csr_matrix(d)


def _empty_rows():
    S = _rand(13, 11, 0.4, 1).tolil()
    S[0, :] = 0
    S[5, :] = 0
    S[12, :] = 0
    return S.tocsr()


def _long_row():
    S = _rand(9, 40, 0.05, 2).tolil()
    S[4, :] = np.arange(1, 41, dtype=float)
    return S.tocsr()


CASES = {
    "poisson2d_4": jsparse.poisson2d(4),
    "random_rect": _rand(17, 9, 0.3, 0),
    "empty_rows": _empty_rows(),
    "one_row": _rand(1, 7, 0.6, 3),
    "long_row": _long_row(),
    "all_zero": sp.csr_matrix((6, 5)),
}

# Format options that exercise both parts of Hybrid and several SELL-P slices on tiny matrices.
FORMAT_OPTIONS = {
    "csr": {},
    "coo": {},
    "ell": {},
    "sellp": {"slice_size": 4, "uniform_width": False},
    "hybrid": {"ell_width": 2},
    "dense": {},
}
