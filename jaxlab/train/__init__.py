"""Training: state, jitted step builder, and the loop with checkpoints, metrics and resume."""

from ._checkpoint import CheckpointError as CheckpointError
from ._checkpoint import Checkpointer as Checkpointer
from ._checkpoint import state_digests as state_digests
from ._loop import DivergedError as DivergedError
from ._loop import train_loop as train_loop
from ._state import MethodState as MethodState
from ._state import TrainState as TrainState
from ._step import backprop_grad as backprop_grad
from ._step import make_train_step as make_train_step
from ._workdir import ResumeProvenanceWarning as ResumeProvenanceWarning
from ._workdir import WorkdirError as WorkdirError
from ._workdir import WorkdirLock as WorkdirLock
from ._workdir import holds_results as holds_results
from ._workdir import prepare_workdir as prepare_workdir
from ._workdir import warn_on_changed_setting as warn_on_changed_setting
from ._plots import plot_metrics as plot_metrics
from ._distributed import DistributedError as DistributedError
from ._distributed import LOST_PEER_EXIT as LOST_PEER_EXIT
from ._distributed import PeerWatchdog as PeerWatchdog
from ._distributed import barrier as barrier
from ._distributed import combine_process_energy as combine_process_energy
from ._distributed import initialize_distributed as initialize_distributed
from ._distributed import is_writer as is_writer
from ._distributed import to_global as to_global
from ._distributed import to_host as to_host
