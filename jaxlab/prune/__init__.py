"""Pruning shared by the methods: magnitude masks, schedules, masked optimisers, structured shrinking.

Unstructured pruning keeps a boolean mask per parameter (``magnitude_masks``, ``masked``); structured
pruning removes whole units over the dependency groups that each model declares (``shrink``), and
gives an ordinary smaller model.

>>> import jax.numpy as jnp, optax
>>> from jaxlab import prune
>>> params = {"dense": {"kernel": jnp.arange(1.0, 7.0).reshape(2, 3), "bias": jnp.zeros(3)}}
>>> masks = prune.magnitude_masks(params, sparsity=0.5)
>>> tx = prune.masked(optax.sgd(0.1, momentum=0.9), masks)
>>> round(prune.density(masks, params=params), 2)
0.5
"""

from jaxlab.core._groups import Axis as Axis
from jaxlab.core._groups import Group as Group
from jaxlab.core._groups import Prunable as Prunable
from jaxlab.core._groups import set_field as set_field
from ._masked import MaskedState as MaskedState
from ._masked import masked as masked
from ._masks import apply_masks as apply_masks
from ._masks import complex_modulus_scores as complex_modulus_scores
from ._masks import default_include as default_include
from ._masks import density as density
from ._masks import magnitude_masks as magnitude_masks
from ._schedules import cubic_schedule as cubic_schedule
from ._schedules import one_shot_schedule as one_shot_schedule
from ._shrink import group_importance as group_importance
from ._shrink import shrink as shrink
from ._shrink import structured_masks as structured_masks
from ._shrink import top_units as top_units
