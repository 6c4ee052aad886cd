"""WeatherMixer with Jigsaw domain x tensor parallelism (arXiv 2507.05753).

Typical use (8 devices: two model instances, each split over 2 latitude slabs x 2 channel slabs)::

    from jaxlab.parallel import make_mesh
    from jaxlab.methods import weathermixer as wm

    mesh = make_mesh(data=2, space=2, tensor=2)
    model = wm.WeatherMixer(grid=(72, 144), channels=8, patch=6, hidden=432, token_hidden=864,
                            channel_hidden=432, num_blocks=3)
    params = wm.init_params(model, key=key, mesh=mesh)      # every device creates only its shards
    loss_fn = wm.make_loss_fn(model, mesh)                  # for jaxlab.train.make_train_step
    apply = wm.make_apply(model, mesh)                      # states laid out by wm.state_sharding(mesh)

The method contract (one device; see ``_contract``)::

    state = wm.init(key, config)                            # a jaxlab.train.MethodState
    src, train_ids, test_ids = wm.load_data(config)
    state, metrics = jax.jit(wm.train_step)(state, {"state": src.read(ids), "target": src.read(ids, target=True)}, key)
    wm.evaluate(state, {"state": src.read(test_ids), "target": src.read(test_ids, target=True)})

``strategy="gspmd"`` runs the same model with sharding annotations instead of shard_map, and
``strategy="local"`` with replicated parameters (plain data parallelism).
"""

from ._loss import grid_latitudes as grid_latitudes
from ._loss import latitude_weights as latitude_weights
from ._loss import rollout as rollout
from ._loss import weighted_mse as weighted_mse
from ._loss import weighted_mse_reference as weighted_mse_reference
from ._loss import weighted_rmse as weighted_rmse
from ._model import STATE_SPEC as STATE_SPEC
from ._model import TOKENS_SPEC as TOKENS_SPEC
from ._model import ChannelDense as ChannelDense
from ._model import LayerNorm as LayerNorm
from ._model import MixerBlock as MixerBlock
from ._model import TokenDense as TokenDense
from ._model import WeatherMixer as WeatherMixer
from ._model import patchify as patchify
from ._model import unpatchify as unpatchify
from ._sharded import STRATEGIES as STRATEGIES
from ._sharded import check_mesh as check_mesh
from ._sharded import init_params as init_params
from ._sharded import lat_sharding as lat_sharding
from ._sharded import make_apply as make_apply
from ._sharded import shard_params as shard_params
from ._sharded import state_sharding as state_sharding
from ._train import make_loss_fn as make_loss_fn
from ._train import make_optimizer as make_optimizer
from ._train import opt_state_bytes_per_device as opt_state_bytes_per_device
from ._train import init_opt_state as init_opt_state
from ._run import WeatherMixerConfig as WeatherMixerConfig
from ._run import load_data as load_data
from ._run import run as run
from ._contract import evaluate as evaluate
from ._contract import init as init
from ._contract import train_step as train_step
