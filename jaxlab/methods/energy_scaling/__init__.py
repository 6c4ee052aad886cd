"""Energy of data-parallel training (Huber et al., "Energy Consumption in Parallel Neural Network
Training", arXiv 2508.07706): data parallelism with accumulation and the scaling grid.

``init(key, config)``, ``train_step(state, batch, key)`` and ``evaluate(state, data)`` train one model at one grid
point (``config.models[0]`` at ``config.grid[0]``; see ``_contract``); ``run(config, workdir)`` measures the grid."""

from ._data_parallel import DATA_AXIS as DATA_AXIS
from ._data_parallel import accumulation_steps as accumulation_steps
from ._data_parallel import make_data_mesh as make_data_mesh
from ._data_parallel import make_data_parallel_step as make_data_parallel_step
from ._data_parallel import replicate as replicate
from ._data_parallel import shard_batch as shard_batch
from ._scaling import ScalingConfig as ScalingConfig
from ._scaling import fit_energy as fit_energy
from ._scaling import fit_energy_reference as fit_energy_reference
from ._scaling import make_optimizer as make_optimizer
from ._scaling import make_task as make_task
from ._scaling import parse_run as parse_run
from ._scaling import plot_scaling as plot_scaling
from ._scaling import run as run
from ._scaling import run_point as run_point
from ._tasks import Task as Task
from ._tasks import classification_task as classification_task
from ._tasks import forecast_task as forecast_task
from ._tasks import make_fields as make_fields
from ._criteria import slice_criteria as slice_criteria
from ._contract import evaluate as evaluate
from ._contract import init as init
from ._contract import train_step as train_step
from ._criteria import spearman as spearman
