"""Neuron Transplantation: "Model Fusion via Neuron Transplantation" (Öz et al., ECML-PKDD 2024, arXiv 2502.06849).

``concat(members)`` builds one wide model that computes the output-averaged ensemble of ``k`` members
exactly; ``transplant(members)`` prunes it back to the original width by the reference's magnitude
importance (torch-pruning's ``MagnitudeImportance(p=2)``), keeping the strongest units of any member, and
returns an ordinary model to fine-tune. Both work on any model that declares its dependency groups
(``jaxlab.nn.MLP``, ``SmallCNN``, ``VGG``, ``ResNet``). Baselines: weight averaging, OT fusion ("wts", exact),
weight matching, distillation (``_train``); the experiment of the paper is ``run``. The method contract
(``init``, ``train_step``, ``evaluate``; fusion by ``transplant_state``, fine-tuning by ``finetune_step``) is in
``_contract``.

>>> import jax, jax.numpy as jnp
>>> from jaxlab.nn import MLP
>>> from jaxlab.methods import transplant as nt
>>> cfg, x = MLP(features=(16, 16, 10)), jnp.ones((4, 8), jnp.float32)
>>> members = [(cfg, cfg.init(jax.random.key(i), x)) for i in range(2)]
>>> wide_cfg, wide = nt.concat(members)          # logits == the members' mean logits
>>> fused_cfg, fused = nt.transplant(members)    # width 16 again, ready to fine-tune
>>> wide_cfg.features, fused_cfg.features
((32, 32, 10), (16, 16, 10))

Deviations from the reference implementation (masterbaer/neuron-transplantation) are listed in the
docstrings of ``_transplant`` (exact width, stable ties, member-weighted iterative variant) and ``_align``
(OT: hidden units only, no n x n x d tensor).
"""

from ._align import average as average
from ._align import ot_fusion as ot_fusion
from ._align import ot_perms as ot_perms
from ._align import permute as permute
from ._align import weight_matching as weight_matching
from ._align import weight_matching_perms as weight_matching_perms
from ._concat import concat as concat
from ._concat import output_weights as output_weights
from ._contract import DATASET_SHAPES as DATASET_SHAPES
from ._contract import evaluate as evaluate
from ._contract import finetune_step as finetune_step
from ._contract import init as init
from ._contract import load_data as load_data
from ._contract import member_batches as member_batches
from ._contract import train_step as train_step
from ._contract import transplant_state as transplant_state
from ._experiment import FUSIONS as FUSIONS
from ._experiment import STUDENTS as STUDENTS
from ._experiment import TransplantConfig as TransplantConfig
from ._experiment import load_splits as load_splits
from ._experiment import make_model as make_model
from ._experiment import padded_size as padded_size
from ._experiment import run as run
from ._train import Splits as Splits
from ._train import distill_loss as distill_loss
from ._train import init_stack as init_stack
from ._train import make_logits_fn as make_logits_fn
from ._train import recalibrate_bn as recalibrate_bn
from ._train import train_stack as train_stack
from ._transplant import importance as importance
from ._transplant import transplant as transplant
from ._transplant import transplant_hierarchical as transplant_hierarchical
from ._transplant import transplant_iterative as transplant_iterative
from ._transplant import transplant_stacked as transplant_stacked
