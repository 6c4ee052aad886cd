"""Shared Flax building blocks and reference models."""

from ._mlp import MLP as MLP
from ._mlp import SmallCNN as SmallCNN
