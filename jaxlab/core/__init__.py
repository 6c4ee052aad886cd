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
from ._config import ConfigError as ConfigError
from ._config import apply_overrides as apply_overrides
from ._config import config_fields as config_fields
from ._config import config_to_dict as config_to_dict
from ._config import load_config as load_config
from ._config import load_config_module as load_config_module
from ._config import parse_value as parse_value
from ._config import split_spec as split_spec
