"""Gridded weather fields: a real dataset from a Debian package, a synthetic generator, slab reads.

A *source* gives forecasting pairs ``(state_t, state_{t+lead})`` on a ``(lat, lon, channel)``
grid and reads any slab ``[samples, lat rows, lon columns, channels]`` without materialising the
rest, so with :func:`global_batch` each device reads only its own block of a sample (the Jigsaw
data layout: latitude rows on ``space``, channels on ``tensor``).

* :func:`load_navy_winds`: monthly mean 10 m (surface) winds U and V of the US Navy FNOC analysis,
  1982-1992, 2.5 degrees, from Debian ``ferret-datasets`` (``monthly_navy_winds.cdf``; NetCDF-3,
  read with SciPy, no extra Python dependency).
* :class:`SyntheticDynamics`: travelling zonal waves in latitude bands at any resolution and
  channel count; the next state is a fixed linear function of the current one (learnable).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from ._locate import locate_file

NAVY_WINDS_FILE = "monthly_navy_winds.cdf"
_FERRET_DIR = "/usr/share/ferret-vis/data/"
_FERRET_HINT = (
    "apt-get install ferret-datasets  (or: apt-get download ferret-datasets && "
    "dpkg -x ferret-datasets_*.deb DIR, then JAXLAB_DATA=DIR/usr/share/ferret-vis/data)"
)


def _as_index(s: slice | np.ndarray | Sequence[int], n: int) -> np.ndarray:
    if isinstance(s, slice):
        return np.arange(n)[s]
    return np.asarray(s, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class GriddedSource:
    """Forecast pairs from a ``(time, lat, lon, variable)`` array, normalised per variable.

    The state at time ``t`` stacks ``lags`` time levels: channel ``c`` is variable ``c % V`` at
    time ``t - c // V``. The target is the state ``lead`` steps later.

    Attributes:
      data: raw values ``(time, lat, lon, V)`` (a NumPy array or memmap; read slab by slab).
      mean, std: per-variable normalisation ``(V,)``.
      lat, lon: coordinates in degrees.
      variables: the ``V`` variable names.
      lags: time levels stacked in a state.
      lead: forecast lead in time steps.
    """

    data: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    variables: tuple[str, ...]
    lags: int = 1
    lead: int = 1

    @property
    def num_samples(self) -> int:
        return self.data.shape[0] - self.lead - (self.lags - 1)

    @property
    def channels(self) -> int:
        return len(self.variables) * self.lags

    @property
    def grid(self) -> tuple[int, int]:
        return (self.data.shape[1], self.data.shape[2])

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(v if k == 0 else f"{v}(t-{k})" for k in range(self.lags) for v in self.variables)

    def read(self, samples, lat=slice(None), lon=slice(None), channels=slice(None), *, target=False) -> np.ndarray:
        """A normalised float32 slab ``(len(samples), lat, lon, channels)`` of states or targets."""
        samples = _as_index(samples, self.num_samples)
        v = len(self.variables)
        chans = _as_index(channels, self.channels)
        li, lo = _as_index(lat, self.grid[0]), _as_index(lon, self.grid[1])
        out = np.empty((len(samples), len(li), len(lo), len(chans)), np.float32)
        base = self.lags - 1 + (self.lead if target else 0)
        for j, c in enumerate(chans):
            var, lag = int(c) % v, int(c) // v
            t = samples + base - lag
            block = np.asarray(self.data[t][:, li][:, :, lo][..., var], np.float64)
            out[..., j] = (block - self.mean[var]) / self.std[var]
        return out


def load_navy_winds(*, lags: int = 2, train_months: int = 108, path: str | None = None) -> GriddedSource:
    """Monthly mean surface winds (U, V) 1982-1992 on a 72 x 144 grid (2.5 degrees).

    The 90N row of the 73-row file is dropped so the grid splits evenly (the paper drops a pole row
    as well). Normalisation statistics come from the first ``train_months`` months only.

    Args:
      lags: time levels per state (2: the state is ``(U, V)`` at ``t`` and ``t - 1``, 4 channels).
      train_months: months used for the statistics (the rest is for testing).
      path: the ``.cdf`` file (default: found by :func:`jaxlab.data.locate_file`).

    Raises:
      DataNotFoundError: naming the Debian package when the file is missing.
    """
    from scipy.io import netcdf_file

    if path is None:
        path = locate_file(
            NAVY_WINDS_FILE,
            system_path=_FERRET_DIR + NAVY_WINDS_FILE,
            install_hint=_FERRET_HINT,
        )
    with netcdf_file(path, "r", mmap=False) as f:
        lat = np.array(f.variables["FNOCY"].data, np.float64)
        lon = np.array(f.variables["FNOCX"].data, np.float64)
        fields = [np.array(f.variables[n].data, np.float32) for n in ("UWND", "VWND")]
        fill = float(f.variables["UWND"]._FillValue)
    data = np.stack(fields, axis=-1)  # (132, 73, 144, 2)
    if np.any(data == np.float32(fill)):
        raise ValueError(f"{path}: missing values found; this loader expects the complete FNOC file")
    keep = lat < 89.9
    data, lat = data[:, keep], lat[keep]
    stats = data[:train_months].astype(np.float64)
    mean, std = stats.mean(axis=(0, 1, 2)), stats.std(axis=(0, 1, 2))
    return GriddedSource(data, mean, std, lat, lon, ("UWND", "VWND"), lags=lags, lead=1)


@dataclasses.dataclass(frozen=True)
class SyntheticDynamics:
    """Travelling waves in latitude bands; any grid and channel count, computed slab by slab.

    Channel ``c`` at step ``t`` is ``sum_m A[m, c] cos(k_m lon - w_m t + p[m, c]) B_m(lat)`` with
    Gaussian bands ``B_m``: the dynamics is linear and time invariant, so a one-step model can
    learn it exactly, and the domain and channel decomposition can be tested at any size.

    Attributes:
      grid: ``(lat, lon)``.
      channels: number of channels.
      num_steps: length of the trajectory (samples = ``num_steps - 1``).
      num_modes: number of waves.
      seed: seed of the wave parameters (a NumPy ``default_rng``; no global state).
    """

    grid: tuple[int, int]
    channels: int
    num_steps: int = 256
    num_modes: int = 6
    seed: int = 0

    def _modes(self):
        rng = np.random.default_rng(self.seed)
        m = self.num_modes
        k = rng.integers(1, 5, m)
        omega = rng.uniform(0.1, 0.5, m) * rng.choice([-1.0, 1.0], m)
        centre = rng.uniform(-60.0, 60.0, m)
        width = rng.uniform(15.0, 35.0, m)
        amp = 2.5 * rng.normal(size=(m, self.channels)) / np.sqrt(m)  # about unit variance
        phase = rng.uniform(0.0, 2.0 * np.pi, (m, self.channels))
        return k, omega, centre, width, amp, phase

    @property
    def num_samples(self) -> int:
        return self.num_steps - 1

    @property
    def lat(self) -> np.ndarray:
        h = self.grid[0]
        return -90.0 + 180.0 / h * (np.arange(h) + 0.5)

    @property
    def lon(self) -> np.ndarray:
        w = self.grid[1]
        return 360.0 / w * np.arange(w)

    def read(self, samples, lat=slice(None), lon=slice(None), channels=slice(None), *, target=False) -> np.ndarray:
        """A float32 slab ``(len(samples), lat, lon, channels)`` of states (or targets: one step on)."""
        t = _as_index(samples, self.num_samples).astype(np.float64) + (1.0 if target else 0.0)
        phi = self.lat[_as_index(lat, self.grid[0])]
        lam = np.deg2rad(self.lon[_as_index(lon, self.grid[1])])
        ch = _as_index(channels, self.channels)
        k, omega, centre, width, amp, phase = self._modes()
        out = np.zeros((len(t), len(phi), len(lam), len(ch)))
        for i in range(self.num_modes):
            band = np.exp(-(((phi - centre[i]) / width[i]) ** 2))  # (lat,)
            arg = k[i] * lam[None, :, None] - omega[i] * t[:, None, None] + phase[i, ch][None, None, :]
            out += amp[i, ch] * band[None, :, None, None] * np.cos(arg)[:, None, :, :]
        return out.astype(np.float32)


def global_batch(source, samples: Sequence[int], sharding: jax.sharding.Sharding, *, target: bool = False):
    """A global ``(len(samples), lat, lon, C)`` array where each device reads only its own slab.

    Args:
      source: a :class:`GriddedSource` or :class:`SyntheticDynamics` (anything with ``read``,
        ``grid`` and ``channels``).
      samples: sample indices of the batch.
      sharding: the batch layout, e.g. ``NamedSharding(mesh, P("data", "space", None, "tensor"))``.
      target: read targets instead of states.
    """
    samples = np.asarray(samples, np.int64)
    shape = (len(samples), *source.grid, source.channels)

    def read(index):
        return source.read(samples[index[0]], index[1], index[2], index[3], target=target)

    return jax.make_array_from_callback(shape, sharding, read)
