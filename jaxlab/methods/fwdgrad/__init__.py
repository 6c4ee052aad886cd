"""Experiments of "Beyond Backpropagation: Optimization with Multi-Tangent Forward Gradients" (arXiv 2410.17764).

The estimators themselves live in :mod:`jaxlab.fwdgrad`; this package holds the paper's experiments
as ``run_*(config, workdir) -> summary`` functions for ``jaxlab run`` / ``jaxlab reproduce``:
approximation quality (section 4.1), closed-form functions (4.2), tangents at a fixed angle (4.3) and MLPs on MNIST-5k
and Fashion-MNIST (4.4). The MLP experiment also holds an activity-perturbed forward gradient
(``activity_forward_gradient``: tangents on the layer outputs, as the reference code trains its networks).

the method contract of ``jaxlab.methods`` (``_contract``): ``run(config, workdir)`` dispatches on the config's type to the four
runners (the config files import it), and ``init(key, config)``, ``train_step(state, batch, key)`` and
``evaluate(state, data)`` train and score one run of the MLP experiment (``MLPConfig``) with the step ``run_mlp``
uses; ``load_data`` and ``batches`` give its splits and a run's batches.
"""

from ._activity import ACTIVITY_METHODS as ACTIVITY_METHODS
from ._activity import activity_forward_gradient as activity_forward_gradient
from ._angles import AnglesConfig as AnglesConfig
from ._angles import run_angles as run_angles
from ._approximation import ApproximationConfig as ApproximationConfig
from ._approximation import approximation_quality as approximation_quality
from ._approximation import run_approximation as run_approximation
from ._contract import DATASET_SHAPES as DATASET_SHAPES
from ._contract import RunSettings as RunSettings
from ._contract import evaluate as evaluate
from ._contract import init as init
from ._contract import run as run
from ._contract import run_settings as run_settings
from ._contract import train_step as train_step
from ._functions import FUNCTIONS as FUNCTIONS
from ._functions import FunctionsConfig as FunctionsConfig
from ._functions import optimize_functions as optimize_functions
from ._functions import rosenbrock as rosenbrock
from ._functions import run_functions as run_functions
from ._functions import sphere as sphere
from ._functions import styblinski_tang as styblinski_tang
from ._mlp import COMPARISONS as COMPARISONS
from ._mlp import FG_METHODS as FG_METHODS
from ._mlp import MLPConfig as MLPConfig
from ._mlp import Splits as Splits
from ._mlp import batches as batches
from ._mlp import compare_methods as compare_methods
from ._mlp import load_data as load_data
from ._mlp import lr_grid as lr_grid
from ._mlp import make_sweep as make_sweep
from ._mlp import run_mlp as run_mlp
from ._mlp import select_lr as select_lr
from ._mlp import split_data as split_data
from ._mlp import train_mlp as train_mlp
from ._mlp import tune_and_evaluate as tune_and_evaluate
