"""The default format: chosen from the matrix's row-length statistics and the backend, by a measured table.

``from_scipy(S)`` (``format="auto"``) classifies the rows by how much padding ELL would store,
``rows x longest row / nnz`` (1 for equal rows), and the backend, and looks the format up in
:data:`FORMAT_TABLE`. Each entry is the format measured fastest for its class (``scripts/bench_spmv.py``):

* CPU (2-core EPYC, XLA 0.10, ``bench/results/sparse-cpu-formats-<matrix>.json``, one run per matrix on a
  shared machine, per-round ratios to SciPy CSR): equal or nearly equal rows (poisson2d_1000, poisson3d_100,
  random_1M_r8) run fastest as Hybrid, whose ELL part XLA unrolls over the width into one vectorised pass and
  whose COO part is nearly empty (0.43-0.72x SciPy; ELL 0.56-0.83x, ahead only on poisson3d_100 in f32); skewed rows (powerlaw_2M_d16) as SELL-P with rows sorted
  by length (0.83x/0.90x SciPy in f32/f64; CSR 1.6-1.8x, Hybrid 1.6-2.2x: its COO part is a scatter-add).
  Moderately uneven rows (mesh2d_1M, a FEM-like triangulation) also run fastest as Hybrid (0.58x/0.44x SciPy
  in f32/f64; sorted SELL-P 0.72-1.06x, CSR 1.14-1.26x). Those figures come from runs under load. A later
  re-run on the idle machine (load 1-2) put ELL ahead of Hybrid on
  poisson2d_1000 in f32 (0.40x against 0.67x SciPy), poisson3d_100 in f64 (0.61x against 0.73x) and random_1M_r8
  in f64 (0.49x against 0.56x). That run timed each case on its own by wall clock, which on the shared machine
  moved two identical cases apart by up to 1.6x. The committed files come from the fixed bench (CPU time, the
  default timed in every round next to each case, three placements of the arrays): there ELL and Hybrid are
  within 1-3% of each other on the stencils and random_1M_r8 (Hybrid with an empty COO part is ELL), and on
  every matrix the default is within 1.03x of our best format but mesh3d_200K in f32 (1.11x, where the best
  is Hybrid itself and the self-check read 0.90: placement noise). No row of the table moved. Those runs were
  made under load (the files record ``loadavg_start``: 5-12 for mesh3d_200K and powerlaw_2M_d16).
* GPU (H200, ``bench/results/sparse-gpu-auto.json``, ``sparse-gpu-p2d-f64.json``): stencils as ELL (the XLA
  gather reached 0.87-1.0 of the copy bandwidth, cuSPARSE CSR 0.5), everything else as CSR through cuSPARSE
  (powerlaw_2M_d16: 0.27 ms against 1.7 ms for Hybrid and the XLA forms). The moderate class on GPU is
  taken from the power-law measurement; no FEM matrix has been measured on a GPU yet.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

# Row classes by ELL padding waste (rows x longest row / nnz), upper bounds inclusive.
ROW_CLASSES: tuple[tuple[str, float], ...] = (("uniform", 1.3), ("moderate", 8.0), ("skewed", math.inf))

FORMAT_TABLE: dict[tuple[str, str], str] = {
    ("cpu", "uniform"): "hybrid",
    ("cpu", "moderate"): "hybrid",
    ("cpu", "skewed"): "sellp_sorted",
    ("gpu", "uniform"): "ell",
    ("gpu", "moderate"): "csr",
    ("gpu", "skewed"): "csr",
}


@dataclasses.dataclass(frozen=True)
class RowStats:
    """Row-length statistics of a sparse matrix (host side)."""

    rows: int
    nnz: int
    min_length: int
    mean_length: float
    max_length: int

    @property
    def ell_waste(self) -> float:
        """Stored entries of ELL over nnz: 1 for equal rows, large for a few long rows."""
        return self.rows * self.max_length / max(self.nnz, 1)

    @property
    def row_class(self) -> str:
        return next(name for name, bound in ROW_CLASSES if self.ell_waste <= bound)


def row_stats(indptr: Any) -> RowStats:
    """The statistics of a CSR structure, from its row pointers."""
    lengths = np.diff(np.asarray(indptr))
    rows = len(lengths)
    if rows == 0:
        return RowStats(0, 0, 0, 0.0, 0)
    return RowStats(rows, int(lengths.sum()), int(lengths.min()), float(lengths.mean()), int(lengths.max()))


def _backend_kind(backend: str | None) -> str:
    if backend is None:
        import jax

        backend = jax.default_backend()
    return "gpu" if backend in ("gpu", "cuda", "rocm") else "cpu"


def choose_format(stats: RowStats, backend: str | None = None) -> str:
    """The format :data:`FORMAT_TABLE` gives for these row statistics on ``backend``.

    Args:
      stats: from :func:`row_stats`.
      backend: ``"cpu"``, ``"gpu"`` (``"cuda"``, ``"rocm"``), or None for JAX's default backend (the one the
        matrix's arrays will be placed on). Other backends use the CPU column.

    Examples:
      >>> import numpy as np
      >>> choose_format(row_stats(np.arange(0, 41, 5)), "cpu")  # 8 rows of 5 entries
      'hybrid'
      >>> choose_format(row_stats(np.array([0, 1, 2, 3, 1000])), "gpu")
      'csr'
    """
    return FORMAT_TABLE[(_backend_kind(backend), stats.row_class)]
