"""Krylov solvers (CG, BiCGSTAB, GMRES, CGS, FCG, IR) with preconditioners, batched and differentiable."""

from ._precond import BlockJacobi as BlockJacobi
from ._precond import Identity as Identity
from ._precond import ILU as ILU
from ._precond import Jacobi as Jacobi
from ._precond import PRECONDITIONERS as PRECONDITIONERS
from ._precond import block_jacobi as block_jacobi
from ._precond import ic0 as ic0
from ._precond import ilu0 as ilu0
from ._precond import ilu0_reference as ilu0_reference
from ._precond import isai as isai
from ._precond import jacobi as jacobi
from ._precond import make_preconditioner as make_preconditioner
from ._solution import Solution as Solution
from ._solution import Status as Status
from ._solution import status_name as status_name
from ._solve import METHODS as METHODS
from ._solve import bicgstab as bicgstab
from ._solve import cg as cg
from ._solve import cgs as cgs
from ._solve import fcg as fcg
from ._solve import gmres as gmres
from ._solve import ir as ir
from ._solve import solve as solve
