"""Time series -> image: wavelet scalogram, Gramian angular field, recurrence plot or line plot.

The CPU side (``decode``, cached by xmodal) reads a series, resamples it to a fixed
length and z-normalises it; for the scalogram it also runs PyWavelets' continuous
wavelet transform, the one costly step. In training, ``decode_train`` augments the
series itself before that (random window, time warping, circular shift, reversal,
noise), so every transform sees the same augmented series. The Gramian angular
field, the recurrence plot and the line plot are a few batched tensor operations, so
they run on the training device in ``device_transform``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from xmodal.adapters import ModalityAdapter
from xmodal.errors import BadInputError

TRANSFORMS = ("cwt", "gaf", "rp", "line", "stack")
SERIES_SUFFIXES = (".npy", ".csv", ".txt")


class TimeSeriesAdapter(ModalityAdapter):
    """A univariate time series to a 3-channel image.

    Args:
        transform: ``cwt`` (continuous-wavelet scalogram, scales x time), ``gaf``
            (Gramian angular field, time x time), ``rp`` (unthresholded recurrence
            plot, time x time), ``line`` (the series drawn as an anti-aliased line,
            value x time) or ``stack`` (three of these as the image's 3 channels,
            ``channels``).
        length: every series is linearly resampled to this many points.
        image_size: side of the square image the backbone sees.
        wavelet: PyWavelets continuous wavelet for ``cwt`` (e.g. ``morl``,
            ``cmor1.5-1.0``, ``mexh``).
        n_scales: wavelet scales (image rows before resizing), geometrically spaced
            from 1 to ``length / 4`` samples.
        gaf_method: ``summation`` (GASF) or ``difference`` (GADF).
        rp_threshold: binarise the recurrence plot at this distance (in standard
            deviations); ``None`` keeps the distances (works better for CNNs).
        channels: the three transforms ``stack`` puts into the red, green and blue
            channels (default scalogram, GAF, recurrence plot).
        line_width: stroke width of the ``line`` plot in pixels.
        znorm: z-normalise each series (UCR series already are).
        augment: augment training series (``decode_train``): a random window of at
            least ``crop_scale`` of the series stretched back to ``length``, plus
            ``warp``, ``roll``, ``flip`` and ``jitter`` where they are non-zero.
        crop_scale: shortest window kept by ``augment``, as a fraction.
        warp: time warping: the local speed of the series varies smoothly by a
            factor ``exp(N(0, warp))`` between 6 knots (0: off).
        roll: probability of a random circular shift of the whole series, for
            series without a fixed start: closed outlines (shapes traced around
            their contour, e.g. UCR's OSULeaf, ArrowHead) or periodic signals.
        flip: probability of reversing the series in time (an outline traced the
            other way round, i.e. mirrored).
        jitter: standard deviation of Gaussian noise added to the z-normalised series.
    """

    name = "timeseries"
    default_dataset = "arrowhead"
    fixed_shape = True

    def __init__(
        self,
        transform: Literal["cwt", "gaf", "rp", "line", "stack"] = "cwt",
        length: int = 128,
        image_size: int = 64,
        wavelet: str = "cmor1.5-1.0",
        n_scales: int = 64,
        gaf_method: Literal["summation", "difference"] = "summation",
        rp_threshold: float | None = None,
        channels: tuple[str, str, str] = ("cwt", "gaf", "rp"),
        line_width: float = 1.5,
        znorm: bool = True,
        augment: bool = True,
        crop_scale: float = 0.8,
        warp: float = 0.0,
        roll: float = 0.0,
        flip: float = 0.0,
        jitter: float = 0.0,
    ) -> None:
        super().__init__()
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, not {transform!r}")
        if gaf_method not in ("summation", "difference"):
            raise ValueError(f"gaf_method must be summation or difference, not {gaf_method!r}")
        if length < 8 or image_size < 8 or n_scales < 2:
            raise ValueError("length and image_size must be >= 8 and n_scales >= 2")
        channels = tuple(channels)
        if len(channels) != 3 or not set(channels) <= set(TRANSFORMS[:-1]):
            raise ValueError(f"channels must be three of {', '.join(TRANSFORMS[:-1])}, not {list(channels)}")
        if not 0.1 <= crop_scale <= 1.0:
            raise ValueError("crop_scale must be between 0.1 and 1")
        if not (0 <= roll <= 1 and 0 <= flip <= 1):
            raise ValueError("roll and flip are probabilities: between 0 and 1")
        if warp < 0 or jitter < 0 or line_width <= 0:
            raise ValueError("warp and jitter must be >= 0 and line_width > 0")
        import pywt

        if wavelet not in pywt.wavelist(kind="continuous") and not wavelet.startswith(("cmor", "fbsp", "shan", "cgau", "gaus")):
            raise ValueError(f"unknown continuous wavelet {wavelet!r}; one of "
                             + ", ".join(pywt.wavelist(kind="continuous")))
        self.transform = transform
        self.length = length
        self.image_size = image_size
        self.wavelet = wavelet
        self.n_scales = n_scales
        self.gaf_method = gaf_method
        self.rp_threshold = rp_threshold
        self.channels = channels
        self.line_width = line_width
        self.znorm = znorm
        self.augment = augment
        self.crop_scale = crop_scale
        self.warp = warp
        self.roll = roll
        self.flip = flip
        self.jitter = jitter

    @property
    def needs_cwt(self) -> bool:
        return self.transform == "cwt" or (self.transform == "stack" and "cwt" in self.channels)

    @property
    def decode_varies_in_training(self) -> bool:  # type: ignore[override]
        """Augmented training series are decoded afresh on every access (not cached)."""
        return self.augment

    # -- CPU side ---------------------------------------------------------------------

    def decode(self, source: Any) -> torch.Tensor:
        """Series -> ``(length,)``, or with a scalogram ``(1 + n_scales, length)``: series + scalogram."""
        return self._finish(resample(read_series(source), self.length))

    def decode_train(self, source: Any) -> torch.Tensor:
        """Like :meth:`decode`, on a randomly augmented copy of the series (``augment``)."""
        if not self.augment:
            return self.decode(source)
        return self._finish(self.augmented(read_series(source)))

    def augmented(self, series: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """One random training view of ``series``, resampled to ``length`` points.

        ``rng`` defaults to a generator seeded from torch's random state, which
        ``seed_everything`` (``--seed_everything``) makes reproducible and which
        differs in each DataLoader worker and epoch.
        """
        rng = rng or np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        if self.roll and rng.random() < self.roll:
            series = np.roll(series, int(rng.integers(series.size)))
        if self.flip and rng.random() < self.flip:
            series = series[::-1]
        scale = rng.uniform(self.crop_scale, 1.0)
        start = rng.uniform(0.0, 1.0 - scale)
        grid = np.linspace(0.0, 1.0, self.length)
        if self.warp:
            knots = np.exp(rng.normal(0.0, self.warp, 6))
            warped = np.concatenate([[0.0], np.cumsum(knots)]) / knots.sum()
            grid = np.interp(grid, np.linspace(0.0, 1.0, 7), warped)
        view = np.interp((start + scale * grid) * (series.size - 1), np.arange(series.size), series)
        if self.jitter:
            view = view + rng.normal(0.0, self.jitter * max(float(series.std()), 1e-8), view.size)
        return view

    def test_views(self, source: Any, count: int = 4) -> list[torch.Tensor]:
        """Deterministic decoded views for test-time averaging of predictions.

        The series itself first; then, following the training augmentation, ``count``
        evenly spaced circular shifts (when ``roll``) or ``count`` windows of
        ``(1 + crop_scale) / 2`` of the series at evenly spaced starts (otherwise),
        and each of them reversed too when ``flip``.
        """
        series = read_series(source)
        views: list[np.ndarray] = []
        if self.augment and self.roll:
            for shift in range(count):
                views.append(resample(np.roll(series, round(series.size * shift / count)), self.length))
        else:
            views.append(resample(series, self.length))
            if self.augment and self.crop_scale < 1 and count > 1:
                scale = (1.0 + self.crop_scale) / 2
                grid = np.linspace(0.0, 1.0, self.length)
                for index in range(count):
                    start = (1.0 - scale) * index / (count - 1)
                    views.append(np.interp((start + scale * grid) * (series.size - 1),
                                           np.arange(series.size), series))
        if self.augment and self.flip:
            views += [view[::-1].copy() for view in views]
        return [self._finish(view) for view in views]

    def _finish(self, series: np.ndarray) -> torch.Tensor:
        """z-normalise and, when a scalogram is drawn, append its rows."""
        if self.znorm:
            std = float(series.std())
            series = (series - series.mean()) / (std if std > 1e-8 else 1.0)
        if not self.needs_cwt:
            return torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32))
        return torch.from_numpy(np.concatenate([series[None], self.scalogram(series)]).astype(np.float32))

    def scalogram(self, series: np.ndarray) -> np.ndarray:
        """``|CWT|`` of one series, ``(n_scales, length)``: PyWavelets' ``cwt``
        (``method="fft"``), with its wavelet filters built once per adapter."""
        if getattr(self, "_cwt", None) is None or self._cwt.length != series.size:
            scales = np.geomspace(1.0, max(2.0, self.length / 4), self.n_scales)
            self._cwt = FilterBankCWT(self.wavelet, scales, series.size)
        return np.abs(self._cwt(series))

    # -- device side ------------------------------------------------------------------

    def device_transform(self, data_config: dict[str, Any]) -> nn.Module:
        return SeriesImage(self)


class FilterBankCWT:
    """PyWavelets' continuous wavelet transform with the filters computed once.

    ``pywt.cwt`` integrates the wavelet and builds every scale's filter on each call,
    most of its cost for short series. This computes the same filters the same way
    (``pywt.integrate_wavelet``, sampled per scale, reversed) and their FFTs once,
    then each series takes one batched FFT convolution; the result equals
    ``pywt.cwt(series, scales, wavelet, method="fft")`` to float precision.
    """

    def __init__(self, wavelet: str, scales: np.ndarray, length: int, precision: int = 12) -> None:
        import pywt

        wave = pywt.DiscreteContinuousWavelet(wavelet)
        psi, x = pywt.integrate_wavelet(wave, precision=precision)
        psi = np.conj(psi) if wave.complex_cwt else psi
        self.length, self.scales, self.complex = length, np.asarray(scales, dtype=float), wave.complex_cwt
        step = x[1] - x[0]
        kernels = []
        for scale in self.scales:
            index = (np.arange(scale * (x[-1] - x[0]) + 1) / (scale * step)).astype(int)
            kernels.append(psi[index[index < psi.size]][::-1])
        self.sizes = [kernel.size for kernel in kernels]
        self.n_fft = _fast_length(length + max(self.sizes) - 1)  # long enough: no wrap-around
        self.kernels_fft = np.stack([np.fft.fft(kernel, self.n_fft) for kernel in kernels])
        if any(size - 2 < 0 for size in self.sizes):
            raise ValueError("a wavelet scale is too small for its filter")

    def __call__(self, series: np.ndarray) -> np.ndarray:
        conv = np.fft.ifft(self.kernels_fft * np.fft.fft(series, self.n_fft)[None], axis=-1)
        out = np.empty((len(self.scales), series.size), dtype=complex if self.complex else float)
        for row, (scale, size) in enumerate(zip(self.scales, self.sizes)):
            coef = -np.sqrt(scale) * np.diff(conv[row, : series.size + size - 1])
            trim = (coef.size - series.size) / 2
            coef = coef[int(np.floor(trim)): coef.size - int(np.ceil(trim))]
            out[row] = coef if self.complex else coef.real
        return out


def _fast_length(size: int) -> int:
    """The smallest ``2^a 3^b 5^c >= size`` (a fast FFT length)."""
    best = 1 << int(np.ceil(np.log2(size)))
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35 << max(0, int(np.ceil(np.log2(size / power35))))
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


def read_series(source: Any) -> np.ndarray:
    """An array/list, or a ``.npy`` / ``.csv`` / ``.txt`` file with one series."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise BadInputError(path, "file not found", "timeseries")
        suffix = path.suffix.lower()
        if suffix not in SERIES_SUFFIXES:
            raise BadInputError(path, f"not a series file (expected {', '.join(SERIES_SUFFIXES)})",
                                "timeseries")
        try:
            if suffix == ".npy":
                values = np.load(path, allow_pickle=False)
            else:
                text = path.read_text(encoding="utf-8").replace(",", " ").split()
                values = np.array([float(v) for v in text])
        except (OSError, ValueError) as exc:
            raise BadInputError(path, f"cannot read numbers: {exc}", "timeseries") from None
    else:
        values = source.numpy() if isinstance(source, torch.Tensor) else source
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        array = np.squeeze(array)
    if array.ndim != 1:
        raise BadInputError(_name(source), f"expected a 1-D series, got shape {array.shape}", "timeseries")
    if array.size < 2:
        raise BadInputError(_name(source), "series has fewer than 2 values", "timeseries")
    if not np.all(np.isfinite(array)):
        raise BadInputError(_name(source), "series has missing or infinite values", "timeseries")
    return array


def _name(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else f"series of {np.size(source)} values"


def resample(series: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation of ``series`` onto ``length`` evenly spaced points."""
    if series.size == length:
        return series.astype(np.float64)
    old = np.linspace(0.0, 1.0, series.size)
    return np.interp(np.linspace(0.0, 1.0, length), old, series)


class SeriesImage(nn.Module):
    """Decoded batch -> ``(B, 3, image_size, image_size)``, each channel standardised."""

    def __init__(self, adapter: TimeSeriesAdapter) -> None:
        super().__init__()
        self.transform = adapter.transform
        self.size = (adapter.image_size, adapter.image_size)
        self.gaf_method = adapter.gaf_method
        self.rp_threshold = adapter.rp_threshold
        self.line_width = adapter.line_width
        self.channels = adapter.channels if adapter.transform == "stack" else (adapter.transform,)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.float()
        series = batch[:, 0] if batch.ndim == 3 else batch
        image = torch.cat([self.plane(name, batch, series) for name in self.channels], dim=1)
        if image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)
        mean = image.mean(dim=(2, 3), keepdim=True)
        std = image.std(dim=(2, 3), keepdim=True)
        return (image - mean) / (std + 1e-5)

    def plane(self, name: str, batch: torch.Tensor, series: torch.Tensor) -> torch.Tensor:
        """One ``(B, 1, H, W)`` image plane of the batch."""
        if name == "cwt":
            return self._resize(batch[:, 1:])
        if name == "gaf":
            return self._resize(gramian_angular_field(series, self.gaf_method))
        if name == "rp":
            return self._resize(recurrence_plot(series, self.rp_threshold))
        return line_plot(series, self.size[0], self.line_width).unsqueeze(1)

    def _resize(self, plane: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(plane.unsqueeze(1), size=self.size, mode="bilinear",
                                         align_corners=False, antialias=True)


def gramian_angular_field(series: torch.Tensor, method: str = "summation") -> torch.Tensor:
    """GASF ``cos(a_i + a_j)`` or GADF ``sin(a_i - a_j)`` of min-max scaled series ``(B, L)``."""
    low = series.amin(dim=1, keepdim=True)
    high = series.amax(dim=1, keepdim=True)
    x = ((series - low) / (high - low).clamp_min(1e-8) * 2 - 1).clamp(-1, 1)
    s = torch.sqrt((1 - x * x).clamp_min(0))
    if method == "summation":
        return x[:, :, None] * x[:, None, :] - s[:, :, None] * s[:, None, :]
    return s[:, :, None] * x[:, None, :] - x[:, :, None] * s[:, None, :]


def recurrence_plot(series: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
    """``|x_i - x_j|`` for a batch ``(B, L)``; binarised when ``threshold`` is given."""
    distance = (series[:, :, None] - series[:, None, :]).abs()
    if threshold is None:
        return distance
    return (distance <= threshold).float()


def line_plot(series: torch.Tensor, size: int, width: float = 1.5) -> torch.Tensor:
    """Draw each series of a batch ``(B, L)`` as a line on a ``size`` x ``size`` canvas.

    Time runs left to right and values bottom to top (min-max scaled to the canvas).
    Each pixel column holds the stretch of the polyline (linear interpolation between
    the samples) that falls into it; a pixel's intensity falls off as a Gaussian of
    its distance to that stretch, so the line is anti-aliased and steep segments stay
    connected. Returns ``(B, size, size)`` in ``[0, 1]``, row 0 at the top.
    """
    low = series.amin(dim=1, keepdim=True)
    high = series.amax(dim=1, keepdim=True)
    margin = 1.0 / size
    y = (series - low) / (high - low).clamp_min(1e-8) * (1 - 2 * margin) + margin
    sub = 4  # samples of the polyline per pixel column
    fine = nn.functional.interpolate(y.unsqueeze(1), size=size * sub + 1, mode="linear",
                                     align_corners=True).squeeze(1)
    column = fine.unfold(1, sub + 1, sub)  # (B, size, sub + 1): both ends of each column
    lo, hi = column.amin(dim=-1), column.amax(dim=-1)
    rows = (torch.arange(size, device=series.device, dtype=series.dtype) + 0.5) / size
    rows = rows.flip(0)[None, :, None]  # row 0 = top = highest value
    gap = (lo[:, None, :] - rows).clamp_min(0) + (rows - hi[:, None, :]).clamp_min(0)
    sigma = width / 2 / size
    return torch.exp(-0.5 * (gap / sigma) ** 2)
