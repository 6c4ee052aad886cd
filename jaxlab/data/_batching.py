"""A shuffling batcher whose batch for step ``s`` depends only on ``s`` and its key (exact resume)."""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from jaxlab.core import PRNGKey


class Batcher:
    """Cuts arrays into shuffled batches; epoch ``e`` uses the permutation drawn from ``fold_in(key, e)``.

    ``batcher(step)`` (or ``batcher.batch(step)``) returns the tuple of batches for that global step,
    so a training run restarted at any step sees the same data as an uninterrupted one.

    Args:
      arrays: arrays with the same leading length (e.g. images and labels).
      batch_size: examples per batch.
      key: PRNG key for the shuffles; None gives batches in order.
      drop_remainder: drop the last partial batch of each epoch (keeps one compiled shape).
    """

    def __init__(self, arrays: Sequence[np.ndarray], batch_size: int, *, key: PRNGKey | None,
                 drop_remainder: bool = True):
        arrays = tuple(np.asarray(a) for a in arrays)
        if not arrays:
            raise ValueError("Batcher needs at least one array")
        n = len(arrays[0])
        for i, a in enumerate(arrays):
            if len(a) != n:
                raise ValueError(f"array {i} has length {len(a)}, array 0 has {n}: all need the same length")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if drop_remainder and batch_size > n:
            raise ValueError(f"batch_size {batch_size} exceeds the {n} examples; lower it or set drop_remainder=False")
        self.arrays = arrays
        self.num_examples = n
        self.batch_size = batch_size
        self.key = key
        self.drop_remainder = drop_remainder
        self.steps_per_epoch = n // batch_size if drop_remainder else -(-n // batch_size)
        self._epoch = -1
        self._perm: np.ndarray | None = None

    def permutation(self, epoch: int) -> np.ndarray:
        if self.key is None:
            return np.arange(self.num_examples)
        return np.asarray(jax.random.permutation(jax.random.fold_in(self.key, epoch), self.num_examples))

    def batch(self, step: int) -> tuple[np.ndarray, ...]:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._perm, self._epoch = self.permutation(epoch), epoch
        idx = self._perm[i * self.batch_size:(i + 1) * self.batch_size]
        return tuple(a[idx] for a in self.arrays)

    __call__ = batch


def iterate_batches(arrays: Sequence[np.ndarray], batch_size: int):
    """Yields consecutive batches in order, the last one possibly smaller (for evaluation)."""
    n = len(arrays[0])
    for start in range(0, n, batch_size):
        yield tuple(a[start:start + batch_size] for a in arrays)
