"""PETNet: coincident particle event detection with spiking neural networks.

J. Debus, C. Debus, G. Dissertori, M. Götz, "PETNet -- Coincident Particle Event Detection using Spiking
Neural Networks", NICE 2024, arXiv 2504.06730 (reference code: Helmholtz-AI-Energy/PETNet, snntorch).
PET detector hits are spike trains (time x crystal); a 3-layer LIF network trained with surrogate
gradients emits only the hits of true coincidences, against single-coincidence-window (SCW) sorters.

Where this differs from the reference (each module says more): the simulator is vectorised and keyed
and numbers crystals ``ring * Nc + x``; the L1 count loss has PyTorch's zero subgradient at an exact count;
the timing loss is the van Rossum distance (the reference's has no gradient); the network is offered both
as the paper's 3-layer net and as the 2-layer net the reference code actually trains; SCW sorts stably;
the metrics are a strict pair F1 by decay ID and the reference's metric with its bugs fixed.

The method contract (``_contract.py``): ``init(key, config)``, ``train_step(state, batch, key)`` on a
:class:`PETData` batch, ``evaluate(state, data)``; ``evaluate_params(net, params, preset, data, geometry,
tol=...)`` is the scoring of any network that ``evaluate`` was before it.
"""

from ._contract import evaluate as evaluate
from ._contract import init as init
from ._contract import train_step as train_step
from ._encode import Hits as Hits
from ._encode import compact_hits as compact_hits
from ._encode import encode_geometry as encode_geometry
from ._encode import encode_hits as encode_hits
from ._encode import encode_inputs as encode_inputs
from ._encode import encode_labels as encode_labels
from ._encode import hits_from_data as hits_from_data
from ._encode import hits_from_dense as hits_from_dense
from ._encode import label_hits as label_hits
from ._encode import max_valid_hits as max_valid_hits
from ._experiment import PETNetConfig as PETNetConfig
from ._experiment import format_table as format_table
from ._experiment import run as run
from ._experiment import sorter_scores as sorter_scores
from ._gpu import gpu_check as gpu_check
from ._losses import LOSSES as LOSSES
from ._losses import count_l1 as count_l1
from ._losses import count_mse as count_mse
from ._losses import exp_filter as exp_filter
from ._losses import exp_filter_reference as exp_filter_reference
from ._losses import petnet_loss as petnet_loss
from ._losses import van_rossum as van_rossum
from ._metrics import PairCounts as PairCounts
from ._metrics import Scorer as Scorer
from ._metrics import label_list as label_list
from ._metrics import match_spikes as match_spikes
from ._metrics import pair_counts as pair_counts
from ._metrics import reference_scores as reference_scores
from ._metrics import spikes_from_dense as spikes_from_dense
from ._metrics import spikes_from_hits as spikes_from_hits
from ._metrics import strict_scores as strict_scores
from ._model import ARCHITECTURES as ARCHITECTURES
from ._model import PETNet as PETNet
from ._model import TorchDense as TorchDense
from ._scw import calibrate_delays as calibrate_delays
from ._scw import calibrated_time as calibrated_time
from ._scw import scw as scw
from ._scw import scw_calibrated as scw_calibrated
from ._scw import scw_geometry as scw_geometry
from ._scw import scw_geometry_reference as scw_geometry_reference
from ._scw import scw_reference as scw_reference
from ._simulate import PRESETS as PRESETS
from ._simulate import PETData as PETData
from ._simulate import Preset as Preset
from ._simulate import compatible_pairs as compatible_pairs
from ._simulate import detector_delays as detector_delays
from ._simulate import geometry_window as geometry_window
from ._simulate import get_preset as get_preset
from ._simulate import partner_support as partner_support
from ._simulate import simulate as simulate
from ._simulate import split as split
from ._throughput import measure_throughput as measure_throughput
from ._train import TrainSettings as TrainSettings
from ._train import Variant as Variant
from ._train import batches as batches
from ._train import evaluate_params as evaluate_params
from ._train import train as train
