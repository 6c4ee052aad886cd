"""Offline dataset loaders, synthetic generators and batching."""

from ._locate import DataNotFoundError as DataNotFoundError
from ._locate import locate_file as locate_file
from ._locate import package_dir as package_dir
from ._gridded import GriddedSource as GriddedSource
from ._gridded import SyntheticDynamics as SyntheticDynamics
from ._gridded import global_batch as global_batch
from ._gridded import load_navy_winds as load_navy_winds
