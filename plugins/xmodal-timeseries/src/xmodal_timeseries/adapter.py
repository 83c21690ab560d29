"""Time series -> image: wavelet scalogram, Gramian angular field or recurrence plot.

The CPU side (``decode``, cached by xmodal) reads a series, resamples it to a fixed
length and z-normalises it; for the scalogram it also runs PyWavelets' continuous
wavelet transform, the one costly step. The Gramian angular field and the
recurrence plot are a few batched tensor operations, so they run on the training
device in ``device_transform``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from xmodal.adapters import ModalityAdapter
from xmodal.errors import BadInputError

TRANSFORMS = ("cwt", "gaf", "rp", "stack")
SERIES_SUFFIXES = (".npy", ".csv", ".txt")


class TimeSeriesAdapter(ModalityAdapter):
    """A univariate time series to a 3-channel image.

    Args:
        transform: ``cwt`` (continuous-wavelet scalogram, scales x time), ``gaf``
            (Gramian angular field, time x time), ``rp`` (unthresholded recurrence
            plot, time x time) or ``stack`` (the three as the image's 3 channels).
        length: every series is linearly resampled to this many points.
        image_size: side of the square image the backbone sees.
        wavelet: PyWavelets continuous wavelet for ``cwt`` (e.g. ``morl``,
            ``cmor1.5-1.0``, ``mexh``).
        n_scales: wavelet scales (image rows before resizing), geometrically spaced
            from 1 to ``length / 4`` samples.
        gaf_method: ``summation`` (GASF) or ``difference`` (GADF).
        rp_threshold: binarise the recurrence plot at this distance (in standard
            deviations); ``None`` keeps the distances (works better for CNNs).
        znorm: z-normalise each series (UCR series already are).
        augment: training-only random window slicing: a random stretch of the series
            (at least ``crop_scale`` of it) is cut out and stretched back, done on
            the image batch as one affine resampling.
        crop_scale: shortest window kept by ``augment``, as a fraction.
    """

    name = "timeseries"
    default_dataset = "arrowhead"
    fixed_shape = True

    def __init__(
        self,
        transform: Literal["cwt", "gaf", "rp", "stack"] = "cwt",
        length: int = 128,
        image_size: int = 64,
        wavelet: str = "cmor1.5-1.0",
        n_scales: int = 64,
        gaf_method: Literal["summation", "difference"] = "summation",
        rp_threshold: float | None = None,
        znorm: bool = True,
        augment: bool = True,
        crop_scale: float = 0.8,
    ) -> None:
        super().__init__()
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, not {transform!r}")
        if gaf_method not in ("summation", "difference"):
            raise ValueError(f"gaf_method must be summation or difference, not {gaf_method!r}")
        if length < 8 or image_size < 8 or n_scales < 2:
            raise ValueError("length and image_size must be >= 8 and n_scales >= 2")
        if not 0.1 <= crop_scale <= 1.0:
            raise ValueError("crop_scale must be between 0.1 and 1")
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
        self.znorm = znorm
        self.augment = augment
        self.crop_scale = crop_scale

    @property
    def needs_cwt(self) -> bool:
        return self.transform in ("cwt", "stack")

    # -- CPU side ---------------------------------------------------------------------

    def decode(self, source: Any) -> torch.Tensor:
        """Series -> ``(length,)``, or ``(1 + n_scales, length)``: series + scalogram."""
        series = resample(read_series(source), self.length)
        if self.znorm:
            std = float(series.std())
            series = (series - series.mean()) / (std if std > 1e-8 else 1.0)
        if not self.needs_cwt:
            return torch.from_numpy(series.astype(np.float32))
        return torch.from_numpy(np.concatenate([series[None], self.scalogram(series)]).astype(np.float32))

    def scalogram(self, series: np.ndarray) -> np.ndarray:
        """``|CWT|`` of one series, ``(n_scales, length)``, by PyWavelets."""
        import pywt

        scales = np.geomspace(1.0, max(2.0, self.length / 4), self.n_scales)
        coefs, _ = pywt.cwt(series, scales, self.wavelet, method="fft")
        return np.abs(coefs)

    # -- device side ------------------------------------------------------------------

    def device_transform(self, data_config: dict[str, Any]) -> nn.Module:
        return SeriesImage(self)

    def train_augment(self) -> nn.Module | None:
        if not self.augment or self.crop_scale >= 1.0:
            return None
        return WindowSlice(self.crop_scale, time_on_both_axes=self.transform != "cwt")


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

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.float()
        series = batch[:, 0] if batch.ndim == 3 else batch
        if self.transform == "cwt":
            channels = [batch[:, 1:]] * 3
        elif self.transform == "gaf":
            channels = [gramian_angular_field(series, self.gaf_method)] * 3
        elif self.transform == "rp":
            channels = [recurrence_plot(series, self.rp_threshold)] * 3
        else:
            channels = [batch[:, 1:], gramian_angular_field(series, self.gaf_method),
                        recurrence_plot(series, self.rp_threshold)]
        images = [self._resize(c) for c in channels[: 1 if channels[0] is channels[-1] else 3]]
        image = torch.cat(images * 3 if len(images) == 1 else images, dim=1)
        mean = image.mean(dim=(2, 3), keepdim=True)
        std = image.std(dim=(2, 3), keepdim=True)
        return (image - mean) / (std + 1e-5)

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


class WindowSlice(nn.Module):
    """Random window slicing on an image batch: crop a time window, stretch it back.

    For time x time images (GAF, RP) the crop is the window's square on the diagonal;
    for a scalogram only the time (width) axis is cropped.
    """

    def __init__(self, min_scale: float, time_on_both_axes: bool) -> None:
        super().__init__()
        self.min_scale = min_scale
        self.both = time_on_both_axes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        count = images.shape[0]
        device = images.device
        scale = torch.empty(count, device=device).uniform_(self.min_scale, 1.0)
        shift = (torch.rand(count, device=device) * 2 - 1) * (1 - scale)
        theta = torch.zeros(count, 2, 3, device=device, dtype=images.dtype)
        theta[:, 0, 0] = scale
        theta[:, 0, 2] = shift
        theta[:, 1, 1] = scale if self.both else 1.0
        theta[:, 1, 2] = shift if self.both else 0.0
        grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
        return nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                                         align_corners=False)
