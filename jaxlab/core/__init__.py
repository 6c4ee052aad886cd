"""Shared pieces: types, tolerances, timing, metrics log, environment info."""

from ._environment import environment_info as environment_info
from ._environment import git_sha as git_sha
from ._environment import save_benchmark as save_benchmark
from ._metrics import MetricsWriter as MetricsWriter
from ._metrics import iter_metrics as iter_metrics
from ._metrics import read_metrics as read_metrics
from ._metrics import to_jsonable as to_jsonable
from ._metrics import write_json as write_json
from ._timing import Timing as Timing
from ._timing import time_fn as time_fn
from ._tolerances import tolerances as tolerances
from ._types import Array as Array
from ._types import Meter as Meter
from ._types import Metrics as Metrics
from ._types import Params as Params
from ._types import PRNGKey as PRNGKey
from ._types import PyTree as PyTree
from ._types import Scalar as Scalar
