"""AutoPQ: quantile forecasts from point forecasts with a conditional invertible network.

Meisenbacher et al., "AutoPQ: Automating Quantile estimation from Point forecasts in the context of
sustainability", arXiv 2412.00419 (reference code: SMEISEN/AutoPQ). A cINN learns the distribution of
the horizon vector given calendar, exogenous and lagged-target conditions; any point forecast is mapped
to the latent space, perturbed and mapped back to samples and quantiles. The sampling spread
``lambda_q`` is tuned on validation (default mode); the advanced mode also chooses the point forecaster
and its hyperparameters. Deviations from the reference (details in each module's docstring):

* optuna instead of hyperopt (TPE) and Propulate (the advanced mode is an optuna TPE study with a
  ``SuccessiveHalvingPruner``; the nested search's log-normal prior enters through its inverse CDF);
* the search scores the cINN's samples with scoringrules' ``crps_ensemble`` on every k-th validation
  window with fixed noise; the reference scores its 17 quantiles as if they were an ensemble
  (properscoring) on all windows with fresh noise;
* the condition that skips the inner ``lambda_q`` search ("Algorithm 3") is the intended one, not the
  reference's inverted one; its enum bug (SVR selects the MLP) and its "SARIMAX"/"sARIMAX" KeyError
  have no counterpart: forecasters are looked up by name and unknown names are refused;
* five point forecasters on ``jaxlab.timeseries`` (persistence, profile, DLinear, MLP, N-HiTS) instead
  of the reference's nine; the point forecasters stop early on a chronological hold-out;
* histories of validation and test windows may reach into the split before.

The method contract (``_contract.py``): ``init(key, config)``, ``train_step(state, batch, key)`` and
``evaluate(state, data)`` are the cINN's (trained on true targets given the windows' conditions); the point
forecaster is fitted by ``fit_forecaster`` and enters ``evaluate`` through ``evaluation_data``.
"""

from ._cinn import CINN as CINN
from ._cinn import ConditionNet as ConditionNet
from ._cinn import GlowCoupling as GlowCoupling
from ._cinn import block_permutation as block_permutation
from ._cinn import init_cinn as init_cinn
from ._cinn import nll_loss as nll_loss
from ._cinn import soft_clamp as soft_clamp
from ._sampling import MODES as MODES
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
from ._train import cinn_update as cinn_update
from ._train import epoch_indices as epoch_indices
from ._train import fit_cinn as fit_cinn
from ._train import weighted_nll as weighted_nll
from ._windows import SERIES as SERIES
from ._windows import ForecastData as ForecastData
from ._windows import SeriesSpec as SeriesSpec
from ._windows import Windows as Windows
from ._windows import calendar_steps as calendar_steps
from ._windows import load_windows as load_windows
from ._windows import make_windows as make_windows
from ._windows import reference_bounds as reference_bounds
from ._forecasters import DEFAULTS as DEFAULTS
from ._forecasters import FORECASTERS as FORECASTERS
from ._forecasters import ForecasterTraining as ForecasterTraining
from ._forecasters import PointForecast as PointForecast
from ._forecasters import fit_forecaster as fit_forecaster
from ._forecasters import forecaster_config as forecaster_config
from ._forecasters import suggest_hyperparameters as suggest_hyperparameters
from ._baselines import conformal_half_width as conformal_half_width
from ._baselines import conformal_half_width_reference as conformal_half_width_reference
from ._baselines import conformal_quantiles as conformal_quantiles
from ._baselines import fit_quantile_regression as fit_quantile_regression
from ._baselines import gaussian_quantiles as gaussian_quantiles
from ._baselines import predict_quantile_regression as predict_quantile_regression
from ._baselines import qr_features as qr_features
from ._baselines import quantile_crossings as quantile_crossings
from ._baselines import residual_scale as residual_scale
from ._evaluate import INTERVALS as INTERVALS
from ._evaluate import SampleScorer as SampleScorer
from ._evaluate import gaussian_crps as gaussian_crps
from ._evaluate import quantile_scores as quantile_scores
from ._evaluate import sample_scores_reference as sample_scores_reference
from ._search import AdvancedResult as AdvancedResult
from ._search import Budget as Budget
from ._search import BudgetStop as BudgetStop
from ._search import LogNormalPrior as LogNormalPrior
from ._search import PlateauStop as PlateauStop
from ._search import SearchResult as SearchResult
from ._search import fit_lognormal as fit_lognormal
from ._search import search_advanced as search_advanced
from ._search import search_lambda as search_lambda
from ._experiment import METHODS as METHODS
from ._experiment import AutoPQConfig as AutoPQConfig
from ._experiment import format_report as format_report
from ._experiment import format_table as format_table
from ._experiment import run as run
from ._contract import cinn_batches as cinn_batches
from ._contract import condition_size as condition_size
from ._contract import evaluate as evaluate
from ._contract import evaluation_data as evaluation_data
from ._contract import init as init
from ._contract import train_step as train_step
