"""Offline dataset loaders, synthetic generators and batching."""

from ._locate import DataNotFoundError as DataNotFoundError
from ._locate import locate_file as locate_file
from ._locate import package_dir as package_dir
