"""Offline dataset loaders, synthetic generators and batching."""

from ._batching import Batcher as Batcher
from ._batching import iterate_batches as iterate_batches
from ._images import Dataset as Dataset
from ._images import load_digits as load_digits
from ._images import load_fashion_mnist as load_fashion_mnist
from ._images import load_mnist5k as load_mnist5k
from ._images import read_idx as read_idx
from ._locate import DataNotFoundError as DataNotFoundError
from ._locate import locate_file as locate_file
from ._locate import package_dir as package_dir
from ._synthetic import make_classification as make_classification
from ._synthetic import make_regression as make_regression
