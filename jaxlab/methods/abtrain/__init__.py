"""AB-training: "Communication-Efficient Distributed Low-Rank Learning" (Coquelin et al., arXiv 2405.01067).

Weights are factorised as ``W = A B`` (``decompose``/``compose``/``truncate``); groups of devices train only
``A`` or only ``B`` with gradients reduced inside the group; every ``S`` steps the groups sync, train ``F``
full-rank steps and truncate to ``s_i > tau s_1``. ``ABTrainer`` runs it on a ``("group", "member")`` mesh with
one sub-mesh program per side, and measures the intra- and inter-node bytes of every compiled program.

Differences from the reference (Helmholtz-AI-Energy/AB-Training):

* SPMD with replicated state in the full-rank phases: after a sync every device holds the same weights and
  optimiser moments (the moments are averaged over groups at the sync; in the reference each rank keeps its
  own moments, so the ranks drift apart again during the full-rank phase).
* The SVD of each layer runs on one device and its truncated factors are broadcast (the weights are
  replicated, so every device would compute the same SVD); the kept rank is still max-reduced.
* BatchNorm is synchronised over the group in AB phases and over all devices in full phases (the reference's
  SyncBatchNorm uses the whole world even in AB phases); running statistics are averaged at a sync.
* ``on_rank_change="reset"`` offers fresh optimiser states for the new factors instead of the reference's
  index slicing (kept as the default ``"slice"``, which is ill-posed once the new SVD changed the basis).
* A run that ends in an AB phase is synced once more so that one model is evaluated.

The method contract (``init``, ``train_step``, ``evaluate``; ``_contract``) exposes the full-rank data-parallel
step, the baseline's and the warm-up's; the AB phases run in ``ABTrainer``.
"""

from ._contract import batches as batches
from ._contract import evaluate as evaluate
from ._contract import init as init
from ._contract import train_step as train_step
from ._experiment import ABTrainConfig as ABTrainConfig
from ._experiment import load_data as load_data
from ._experiment import run as run
from ._experiment import split_saving as split_saving
from ._factors import SVD as SVD
from ._factors import Factors as Factors
from ._factors import compose as compose
from ._factors import compression as compression
from ._factors import decompose as decompose
from ._factors import decompose_reference as decompose_reference
from ._factors import factors_from_svd as factors_from_svd
from ._factors import from_matrix as from_matrix
from ._factors import matrix_shape as matrix_shape
from ._factors import svd as svd
from ._factors import to_matrix as to_matrix
from ._factors import truncate as truncate
from ._factors import truncation_rank as truncation_rank
from ._gpu import lowrank_benchmark as lowrank_benchmark
from ._models import ABMLP as ABMLP
from ._models import MODELS as MODELS
from ._models import ABDense as ABDense
from ._models import ModelDef as ModelDef
from ._models import make_model as make_model
from ._schedule import LearningRate as LearningRate
from ._schedule import Schedule as Schedule
from ._spmd import SYNC_MODES as SYNC_MODES
from ._spmd import FullState as FullState
from ._spmd import GroupState as GroupState
from ._spmd import Plan as Plan
from ._trainer import ABSettings as ABSettings
from ._trainer import ABTrainer as ABTrainer
from ._trainer import traffic_by_phase as traffic_by_phase
