"""Image classification with the shared training loop (the foundation's example method)."""

from ._classify import ClassifierConfig as ClassifierConfig
from ._classify import cross_entropy_loss_fn as cross_entropy_loss_fn
from ._classify import evaluate as evaluate
from ._classify import init as init
from ._classify import load_dataset as load_dataset
from ._classify import run as run
