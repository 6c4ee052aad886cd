import gzip

import jax
import numpy as np
import pytest

from jaxlab.data import (Batcher, DataNotFoundError, iterate_batches, load_digits, load_fashion_mnist,
                         load_mnist5k, locate_file, make_classification, read_idx)


def test_digits_shapes_and_ranges():
    d = load_digits()
    assert d.x_train.shape[1:] == (8, 8, 1) and len(d.x_train) + len(d.x_test) == 1797
    assert d.x_train.dtype == np.float32 and 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    assert d.num_classes == 10 and d.y_train.dtype == np.int32
    again = load_digits()
    np.testing.assert_array_equal(d.y_test, again.y_test)  # the split is deterministic


def test_mnist5k_is_shuffled_before_the_split():
    d = load_mnist5k()
    assert d.x_train.shape == (4000, 28, 28, 1) and d.x_test.shape == (1000, 28, 28, 1)
    counts = np.bincount(d.y_test, minlength=10)
    assert counts.min() > 50  # the file is sorted by class: an unshuffled split would hold 2 classes


def test_fashion_mnist_or_clear_message():
    try:
        d = load_fashion_mnist()
    except DataNotFoundError as e:
        assert "apt-get install dataset-fashion-mnist" in str(e)
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    assert d.x_train.shape == (60000, 28, 28, 1) and d.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(d.y_train).tolist() == [6000] * 10


def test_locate_file_message_and_env(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError) as e:
        locate_file("x/y.bin", python_package="no_such_package_here", package_path="y.bin",
                    install_hint="pip install thing")
    assert "pip install thing" in str(e.value) and "x/y.bin" in str(e.value)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "y.bin").write_bytes(b"1")
    monkeypatch.setenv("JAXLAB_DATA", str(tmp_path))
    assert locate_file("x/y.bin", install_hint="-") == tmp_path / "x" / "y.bin"


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_read_idx_round_trip_and_truncation(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), a)
    with gzip.open(tmp_path / "a.gz") as f:
        raw = f.read()
    with gzip.open(tmp_path / "t.gz", "wb") as f:
        f.write(raw[:-5])
    with pytest.raises(ValueError, match="t.gz.*truncated"):
        read_idx(tmp_path / "t.gz")
    with gzip.open(tmp_path / "m.gz", "wb") as f:
        f.write(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "m.gz")


def test_batcher_is_a_function_of_the_step():
    x = np.arange(10)
    b = Batcher((x, x * 2), 3, key=jax.random.key(0))
    assert b.steps_per_epoch == 3
    seen = np.concatenate([b(s)[0] for s in range(3)])
    assert len(set(seen.tolist())) == 9  # one epoch: no repeats
    np.testing.assert_array_equal(b(1)[1], 2 * b(1)[0])
    again = Batcher((x, x * 2), 3, key=jax.random.key(0))
    for s in (5, 0, 4):  # any order, same batches
        np.testing.assert_array_equal(again(s)[0], b(s)[0])
    assert not np.array_equal(np.concatenate([b(s)[0] for s in range(3)]),
                              np.concatenate([b(s)[0] for s in range(3, 6)]))  # epochs reshuffle


def test_batcher_errors():
    with pytest.raises(ValueError, match="same length"):
        Batcher((np.ones(3), np.ones(4)), 2, key=None)
    with pytest.raises(ValueError, match="exceeds"):
        Batcher((np.ones(3),), 4, key=None)
    b = Batcher((np.arange(5),), 2, key=None, drop_remainder=False)
    assert b.steps_per_epoch == 3 and b(2)[0].tolist() == [4]


def test_iterate_batches_covers_everything():
    x = np.arange(7)
    assert np.concatenate([b[0] for b in iterate_batches((x,), 3)]).tolist() == list(range(7))


def test_synthetic_classification_is_learnable_by_nearest_mean():
    d = make_classification(jax.random.key(0), num_train=400, num_test=200, num_classes=4)
    xtr, xte = d.x_train.reshape(400, -1), d.x_test.reshape(200, -1)
    means = np.stack([xtr[d.y_train == c].mean(0) for c in range(4)])
    pred = np.argmin(((xte[:, None] - means[None]) ** 2).sum(-1), -1)
    assert (pred == d.y_test).mean() > 0.95
