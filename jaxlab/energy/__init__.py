"""Energy measurement of JAX runs: NVML GPUs, RAPL CPU/DRAM, a flagged CPU-time estimate.

Examples:
  >>> from jaxlab import energy
  >>> with energy.EnergyMeter(cpu="estimate") as m:
  ...     pass
  >>> m.report().estimated
  True
"""

from ._command import measure_command as measure_command
from ._ledger import EnergyLedger as EnergyLedger
from ._meter import DEFAULT_CPU_TDP_W as DEFAULT_CPU_TDP_W
from ._meter import EnergyMeter as EnergyMeter
from ._meter import wait_for_device as wait_for_device
from ._report import DEFAULT_CARBON_G_PER_KWH as DEFAULT_CARBON_G_PER_KWH
from ._report import EnergyReport as EnergyReport
from ._report import chain_reports as chain_reports
from ._report import combine_reports as combine_reports
from ._report import report_from_dict as report_from_dict
from ._sensors import AbstractSensor as AbstractSensor
from ._sensors import CpuTimeEstimateSensor as CpuTimeEstimateSensor
from ._sensors import NvmlEnergySensor as NvmlEnergySensor
from ._sensors import NvmlPowerSensor as NvmlPowerSensor
from ._sensors import RaplSensor as RaplSensor
from ._sensors import discover_nvml as discover_nvml
from ._sensors import discover_rapl as discover_rapl
from ._sensors import process_cpu_time_s as process_cpu_time_s
from ._sensors import visible_gpu_indices as visible_gpu_indices
