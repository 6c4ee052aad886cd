"""Pruning time-series transformers: Kiefer et al., "A Comparative Study of Pruning Methods in
Transformer-based Time Series Forecasting" (arXiv 2412.12883).

Unstructured magnitude pruning and structured (dependency-group) pruning, each with and without
fine-tuning, of Transformer, Informer, Autoformer, FEDformer and Crossformer (``jaxlab.timeseries``),
with parameters, FLOPs, latency and energy measured on real data. The models come from
``jaxlab.timeseries``, the pruning from ``jaxlab.prune``; this package holds the study.
``init``/``train_step``/``evaluate`` (``_contract.py``) are the method contract of ``jaxlab.methods``.
"""

from ._contract import BATCH_KEYS as BATCH_KEYS
from ._contract import CHANNELS as CHANNELS
from ._contract import evaluate as evaluate
from ._contract import init as init
from ._contract import model_config as model_config
from ._contract import set_learning_rate as set_learning_rate
from ._contract import train_step as train_step
from ._contract import with_masks as with_masks
from ._experiment import DATASETS as DATASETS
from ._experiment import SPARSITIES as SPARSITIES
from ._experiment import Records as Records
from ._experiment import TsPruneConfig as TsPruneConfig
from ._experiment import goals as goals
from ._experiment import latency_markdown as latency_markdown
from ._experiment import plot_latency_vs_flops as plot_latency_vs_flops
from ._experiment import run as run
from ._experiment import summarise as summarise
from ._experiment import sweep_markdown as sweep_markdown
from ._io import config_from_json as config_from_json
from ._io import config_to_json as config_to_json
from ._io import load_forecaster as load_forecaster
from ._io import save_forecaster as save_forecaster
from ._measure import compare_latency as compare_latency
from ._measure import dense_kernels as dense_kernels
from ._measure import latency as latency
from ._measure import op_kind as op_kind
from ._measure import op_profile as op_profile
from ._measure import sparse_dense_layers as sparse_dense_layers
from ._measure import topk_calls as topk_calls
from ._measure import topk_cost as topk_cost
from ._measure import xla_flops as xla_flops
from ._train import Forecaster as Forecaster
from ._train import TrainSettings as TrainSettings
from ._zoo import MODELS as MODELS
from ._zoo import ZooSizes as ZooSizes
from ._zoo import count_nonzero as count_nonzero
from ._zoo import count_params as count_params
from ._zoo import magnitude_masks as magnitude_masks
from ._zoo import prunable as prunable
from ._zoo import pruning_scores as pruning_scores
from ._zoo import structured_keep as structured_keep
from ._zoo import zoo_config as zoo_config
