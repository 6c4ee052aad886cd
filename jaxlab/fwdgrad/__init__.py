"""Multi-tangent forward gradients (arXiv 2410.17764): samplers, aggregations, estimates, training glue.

>>> from jaxlab import fwdgrad
>>> # grads, loss = fwdgrad.forward_gradient(loss_fn, params, batch, key=key, num_tangents=4,
>>> #                                        aggregation="projection", sampler="normal", mode="jvp")
"""

from ._aggregations import AGGREGATIONS as AGGREGATIONS
from ._aggregations import DEFAULT_SELECTIONS as DEFAULT_SELECTIONS
from ._aggregations import SELECTIONS as SELECTIONS
from ._aggregations import aggregate as aggregate
from ._aggregations import aggregate_reference as aggregate_reference
from ._aggregations import aggregation_coefficients as aggregation_coefficients
from ._aggregations import combine_tangents as combine_tangents
from ._aggregations import expected_chi as expected_chi
from ._aggregations import gram_matrix as gram_matrix
from ._aggregations import leaf_gram_matrices as leaf_gram_matrices
from ._aggregations import length_correction_factor as length_correction_factor
from ._forward_gradient import MODES as MODES
from ._forward_gradient import directional_derivatives as directional_derivatives
from ._forward_gradient import forward_gradient as forward_gradient
from ._forward_gradient import forward_gradient_reference as forward_gradient_reference
from ._samplers import SAMPLERS as SAMPLERS
from ._samplers import num_parameters as num_parameters
from ._samplers import sample_equiangular_tangents as sample_equiangular_tangents
from ._samplers import sample_tangent as sample_tangent
from ._samplers import sample_tangents as sample_tangents
from ._samplers import sample_tangents_reference as sample_tangents_reference
from ._samplers import tangent_sq_norms as tangent_sq_norms
from ._train import grad_fn as grad_fn
from ._train import make_grad_fn as make_grad_fn
