"""AutoPQ: quantile forecasts from point forecasts with a conditional invertible network.

Meisenbacher et al., "AutoPQ: Automating Quantile estimation from Point forecasts in the context of
sustainability", arXiv 2412.00419 (reference code: SMEISEN/AutoPQ). A cINN learns the distribution of
the horizon vector given calendar, exogenous and lagged-target conditions; any point forecast is mapped
to the latent space, perturbed and mapped back to samples and quantiles. The sampling spread
``lambda_q`` is tuned on validation (default mode); the advanced mode also chooses the point forecaster
and its hyperparameters. Deviations from the reference are listed in each module's docstring.
"""

from ._cinn import CINN as CINN
from ._cinn import ConditionNet as ConditionNet
from ._cinn import GlowCoupling as GlowCoupling
from ._cinn import block_permutation as block_permutation
from ._cinn import init_cinn as init_cinn
from ._cinn import nll_loss as nll_loss
from ._cinn import soft_clamp as soft_clamp
from ._sampling import QUANTILES as QUANTILES
from ._sampling import SAMPLE_SIZE as SAMPLE_SIZE
from ._sampling import cinn_samples as cinn_samples
from ._sampling import latent as latent
from ._sampling import perturb as perturb
from ._sampling import sample_quantiles as sample_quantiles
from ._sampling import sample_quantiles_reference as sample_quantiles_reference
from ._sampling import samples_from_latent as samples_from_latent
from ._sampling import standard_noise as standard_noise
from ._sampling import to_units as to_units
from ._train import CINNFit as CINNFit
from ._train import CINNTraining as CINNTraining
from ._train import cinn_optimizer as cinn_optimizer
from ._train import fit_cinn as fit_cinn
