"""Time-series forecasting shared by ReCycle, tsprune and AutoPQ: the forecaster interface and metrics.

>>> import jax.numpy as jnp
>>> from jaxlab import timeseries as ts
>>> float(ts.mae(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0])))
1.0
"""

from ._base import ForecasterConfig as ForecasterConfig
from ._base import make_forecaster as make_forecaster
from ._metrics import crps as crps
from ._metrics import crps_quantile as crps_quantile
from ._metrics import interval_coverage as interval_coverage
from ._metrics import interval_width as interval_width
from ._metrics import mae as mae
from ._metrics import mape as mape
from ._metrics import mase as mase
from ._metrics import mse as mse
from ._metrics import pinball as pinball
from ._metrics import pinball_reference as pinball_reference
from ._dlinear import DLinear as DLinear
from ._dlinear import DLinearConfig as DLinearConfig
from ._dlinear import moving_average as moving_average
from ._dlinear import moving_average_reference as moving_average_reference
from ._windows import ForecastWindows as ForecastWindows
from ._windows import evaluate_windows as evaluate_windows
from ._windows import fit_column_scaler as fit_column_scaler
from ._windows import make_windows as make_windows
from ._windows import time_features as time_features
from ._layers import full_attention as full_attention
from ._layers import series_decomposition as series_decomposition
from ._layers import sinusoidal_positions as sinusoidal_positions
from ._transformer import Transformer as Transformer
from ._transformer import TransformerConfig as TransformerConfig
from ._informer import Informer as Informer
from ._informer import InformerConfig as InformerConfig
from ._informer import prob_attention as prob_attention
from ._informer import prob_sizes as prob_sizes
from ._autoformer import Autoformer as Autoformer
from ._autoformer import AutoformerConfig as AutoformerConfig
from ._autoformer import auto_correlation as auto_correlation
from ._autoformer import correlation_topk as correlation_topk
from ._fedformer import FEDformer as FEDformer
from ._fedformer import FEDformerConfig as FEDformerConfig
from ._fedformer import fourier_block as fourier_block
from ._fedformer import fourier_cross_attention as fourier_cross_attention
from ._fedformer import select_modes as select_modes
from ._crossformer import Crossformer as Crossformer
from ._crossformer import CrossformerConfig as CrossformerConfig
from ._crossformer import TwoStageAttention as TwoStageAttention
from ._crossformer import two_stage_attention_reference as two_stage_attention_reference
from ._windows import NUM_TIME_FEATURES as NUM_TIME_FEATURES
from ._windows import SPLITS as SPLITS
from ._naive import Persistence as Persistence
from ._naive import PersistenceConfig as PersistenceConfig
from ._naive import Profile as Profile
from ._naive import ProfileConfig as ProfileConfig
from ._naive import profile_reference as profile_reference
from ._mlp import MLPForecaster as MLPForecaster
from ._mlp import MLPForecasterConfig as MLPForecasterConfig
from ._nhits import NHiTS as NHiTS
from ._nhits import NHiTSConfig as NHiTSConfig
from ._nhits import default_pooling as default_pooling
from ._nhits import interpolate_linear as interpolate_linear
from ._nhits import interpolate_linear_reference as interpolate_linear_reference
from ._nhits import nhits_reference as nhits_reference
