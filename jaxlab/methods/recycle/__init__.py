"""ReCycle: residual cyclic transformer for long time-series forecasting.

Weyrauch et al., "ReCycle: Fast and Efficient Long Time Series Forecasting with Residual Cyclic
Transformers", IEEE CAI 2024, arXiv 2405.03429 (reference code: Helmholtz-AI-Energy/ReCycle).
A series is folded into one token per primary cycle (a day), a recent historic profile per day
type serves as the base forecast, and a tiny transformer without positional encoding learns the
residual. Deviations from the paper are listed in each module's docstring. ``init``/``train_step``/
``evaluate`` (``_contract.py``) are the method contract of ``jaxlab.methods``.
"""

from jaxlab.timeseries import VanillaTransformer as VanillaTransformer
from ._baselines import sinusoidal_positions as sinusoidal_positions
from ._contract import BATCH_KEYS as BATCH_KEYS
from ._contract import CYCLE_LEN as CYCLE_LEN
from ._contract import evaluate as evaluate
from ._contract import init as init
from ._contract import train_step as train_step
from ._experiment import MODELS as MODELS
from ._experiment import RIDGE_PENALTIES as RIDGE_PENALTIES
from ._experiment import RecycleConfig as RecycleConfig
from ._experiment import energy_label as energy_label
from ._experiment import energy_total_j as energy_total_j
from ._experiment import forecast_metrics as forecast_metrics
from ._experiment import format_table as format_table
from ._experiment import prepare_windows as prepare_windows
from ._experiment import recycle_optimizer as recycle_optimizer
from ._experiment import recycle_windows as recycle_windows
from ._experiment import run as run
from jaxlab.timeseries import EncoderDecoder as EncoderDecoder
from jaxlab.timeseries import PostNormDecoderLayer as DecoderLayer
from jaxlab.timeseries import PostNormEncoderLayer as EncoderLayer
from ._model import ReCycleTransformer as ReCycleTransformer
from jaxlab.timeseries import PROFILE_VARIANTS as VARIANTS
from jaxlab.timeseries import profile_run_up as profile_run_up
from jaxlab.timeseries import profile_windows as profile_windows
from jaxlab.timeseries import rhp_tables as rhp_tables
from jaxlab.timeseries import rhp_tables_reference as rhp_tables_reference
