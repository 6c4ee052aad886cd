"""Energy of data-parallel training (Huber et al., "Energy Consumption in Parallel Neural Network
Training", arXiv 2508.07706): data parallelism with accumulation and the scaling grid."""

from ._data_parallel import DATA_AXIS as DATA_AXIS
from ._data_parallel import accumulation_steps as accumulation_steps
from ._data_parallel import make_data_mesh as make_data_mesh
from ._data_parallel import make_data_parallel_step as make_data_parallel_step
from ._data_parallel import replicate as replicate
from ._data_parallel import shard_batch as shard_batch
