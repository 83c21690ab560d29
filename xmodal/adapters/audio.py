"""Audio -> spectrogram image.

Decoding (soundfile, librosa's audioread fallback for other codecs), down-mixing,
resampling and cropping run on the CPU in DataLoader workers and are cached; the
spectrogram, normalisation, 3-channel mapping and SpecAugment run batched on the
training device with torchaudio.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torchaudio
from torch import nn

from xmodal.adapters.base import ModalityAdapter
from xmodal.errors import BadInputError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au")


class AudioAdapter(ModalityAdapter):
    """Audio files to log-mel (or MFCC) spectrogram images.

    Args:
        sample_rate: rate every clip is resampled to.
        duration: clip length in seconds; longer clips are cropped, shorter padded.
        crop: which part of a long clip to keep: ``center`` or ``start``.
        pad: where to put the silence of a short clip: ``center`` or ``end``.
        features: ``logmel`` (default) or ``mfcc``.
        n_mels: mel bands.
        n_fft: FFT size in samples.
        hop_length: hop in samples (``None``: n_fft // 4).
        f_min: lowest frequency of the mel filter bank (Hz).
        f_max: highest frequency (``None``: sample_rate / 2).
        n_mfcc: coefficients when ``features="mfcc"``.
        normalize: ``utterance`` (zero mean, unit variance per clip), ``dataset``
            (fixed ``norm_mean`` / ``norm_std``) or ``none``.
        norm_mean: data-set mean of the log spectrogram (``normalize="dataset"``).
        norm_std: data-set standard deviation (``normalize="dataset"``).
        channels: ``repeat`` the spectrogram 3 times or stack it with its ``deltas``
            and delta-deltas.
        image_size: resize the spectrogram to ``[height, width]`` (``None``: keep).
        spec_augment: time and frequency masking in training only.
        freq_mask: widest frequency mask (mel bands).
        time_mask: widest time mask (frames).
        num_masks: masks of each kind per clip.
        time_shift: random circular shift in training, as a fraction of the clip.
        max_seconds: refuse longer files instead of reading them whole.
    """

    name = "audio"
    default_dataset = "fsdd"
    fixed_shape = True

    def __init__(
        self,
        sample_rate: int = 16000,
        duration: float = 1.0,
        crop: Literal["center", "start"] = "center",
        pad: Literal["center", "end"] = "center",
        features: Literal["logmel", "mfcc"] = "logmel",
        n_mels: int = 64,
        n_fft: int = 512,
        hop_length: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        n_mfcc: int = 40,
        normalize: Literal["utterance", "dataset", "none"] = "utterance",
        norm_mean: float = 0.0,
        norm_std: float = 1.0,
        channels: Literal["repeat", "deltas"] = "repeat",
        image_size: list[int] | None = None,
        spec_augment: bool = True,
        freq_mask: int = 8,
        time_mask: int = 10,
        num_masks: int = 2,
        time_shift: float = 0.1,
        max_seconds: float = 600.0,
    ) -> None:
        super().__init__()
        if sample_rate <= 0 or duration <= 0:
            raise ValueError("sample_rate and duration must be positive")
        for name, value in (("crop", crop), ("pad", pad), ("features", features),
                            ("normalize", normalize), ("channels", channels)):
            allowed = {"crop": ("center", "start"), "pad": ("center", "end"),
                       "features": ("logmel", "mfcc"),
                       "normalize": ("utterance", "dataset", "none"),
                       "channels": ("repeat", "deltas")}[name]
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        self.sample_rate = sample_rate
        self.duration = duration
        self.crop = crop
        self.pad = pad
        self.features = features
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.f_min = f_min
        self.f_max = f_max
        self.n_mfcc = n_mfcc
        self.normalize = normalize
        self.norm_mean = norm_mean
        self.norm_std = norm_std
        self.channels = channels
        self.image_size = list(image_size) if image_size else None
        self.spec_augment = spec_augment
        self.freq_mask = freq_mask
        self.time_mask = time_mask
        self.num_masks = num_masks
        self.time_shift = time_shift
        self.max_seconds = max_seconds

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.duration))

    # -- CPU side ---------------------------------------------------------------------

    def decode(self, source: Any) -> torch.Tensor:
        """Read, down-mix, resample and crop/pad one file to ``num_samples`` floats."""
        signal, rate = read_audio(source, self.max_seconds)
        if rate != self.sample_rate:
            signal = torchaudio.functional.resample(
                torch.from_numpy(signal), rate, self.sample_rate
            ).numpy()
        return torch.from_numpy(fit_length(signal, self.num_samples, self.crop, self.pad))

    # -- device side ------------------------------------------------------------------

    def device_transform(self, data_config: dict[str, Any]) -> nn.Module:
        return SpectrogramImage(self)

    def train_augment(self) -> nn.Module | None:
        if not self.spec_augment and not self.time_shift:
            return None
        return SpecAugment(self)


def read_audio(source: Any, max_seconds: float = 600.0) -> tuple[np.ndarray, int]:
    """Decode a file to mono float32 and its rate, with errors that name the file."""
    import soundfile as sf

    path = Path(source)
    if not path.is_file():
        raise BadInputError(path, "file not found", "audio")
    if path.stat().st_size == 0:
        raise BadInputError(path, "file is empty (0 bytes)", "audio")
    try:
        info = sf.info(str(path))
        if info.frames == 0:
            raise BadInputError(path, "audio has no samples (0-length signal)", "audio")
        if info.samplerate > 0 and info.frames / info.samplerate > max_seconds:
            raise BadInputError(
                path,
                f"audio is {info.frames / info.samplerate:.0f} s long, over the "
                f"max_seconds limit of {max_seconds:.0f} s (raise it or cut the file)",
                "audio",
            )
        _check_header(path, info)
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except BadInputError:
        raise
    except Exception as first_error:  # not readable by libsndfile: try audioread
        data, rate = _read_fallback(path, max_seconds, first_error)
    if data.shape[0] == 0:
        raise BadInputError(path, "audio has no samples (0-length signal)", "audio")
    if not np.all(np.isfinite(data)):
        raise BadInputError(path, "audio contains NaN or infinite samples", "audio")
    mono = data.mean(axis=1) if data.ndim == 2 else data
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


#: Sample rates outside this range are header damage, not audio (resampling them
#: would also need absurd filter sizes).
RATE_RANGE = (1000, 768000)
#: Decoded size limit: frames x channels x 4 bytes.
MAX_DECODED_BYTES = 2**31


def _check_header(path: Path, info: Any) -> None:
    """Refuse headers that promise what the file cannot be: odd rates, huge sizes, cut data."""
    low, high = RATE_RANGE
    if not low <= info.samplerate <= high:
        raise BadInputError(path, f"unsupported sample rate {info.samplerate} Hz "
                                  f"(expected {low}-{high} Hz)", "audio")
    if info.frames * info.channels * 4 > MAX_DECODED_BYTES:
        raise BadInputError(path, f"too large to decode: {info.frames} frames x {info.channels} "
                                  "channels", "audio")
    missing = _riff_shortfall(path)
    if missing > 0:
        raise BadInputError(path, f"file is truncated: {missing} bytes of audio data missing "
                                  "(the header promises more than the file holds)", "audio")


def _riff_shortfall(path: Path) -> int:
    """Bytes a RIFF/WAVE ``data`` chunk declares beyond the end of the file (0 if fine).

    libsndfile quietly reads what is there, so a WAV cut off mid-copy would
    otherwise train as a shorter clip. Streaming placeholders (0, 0xFFFFFFFF) pass.
    """
    import struct

    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):
                    return 0
                return max(0, offset + 8 + chunk_size - size)
            offset += 8 + chunk_size + (chunk_size & 1)
    return 0


def _read_fallback(path: Path, max_seconds: float, first_error: Exception) -> tuple[np.ndarray, int]:
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, rate = librosa.load(str(path), sr=None, mono=False, duration=max_seconds)
    except Exception:
        reason = str(first_error).split("\n")[0] or type(first_error).__name__
        if reason.startswith("Error opening ") and "': " in reason:  # the path is named already
            reason = reason.split("': ", 1)[1]
        if "Format not recognised" in reason or "unknown format" in reason.lower():
            reason = "not a readable audio file (unknown format or corrupt header)"
        raise BadInputError(path, reason, "audio") from None
    data = np.atleast_2d(data).T  # (frames, channels)
    return data.astype(np.float32), int(rate)


def fit_length(signal: np.ndarray, length: int, crop: str = "center", pad: str = "center") -> np.ndarray:
    """Crop or zero-pad a 1-D signal to exactly ``length`` samples."""
    if signal.shape[0] >= length:
        start = (signal.shape[0] - length) // 2 if crop == "center" else 0
        return np.ascontiguousarray(signal[start:start + length])
    out = np.zeros(length, dtype=np.float32)
    start = (length - signal.shape[0]) // 2 if pad == "center" else 0
    out[start:start + signal.shape[0]] = signal
    return out


class SpectrogramImage(nn.Module):
    """Batched waveform ``(B, N)`` -> normalised 3-channel spectrogram ``(B, 3, F, T)``."""

    def __init__(self, adapter: AudioAdapter) -> None:
        super().__init__()
        hop = adapter.hop_length or adapter.n_fft // 4
        mel_kwargs = dict(
            sample_rate=adapter.sample_rate, n_fft=adapter.n_fft, hop_length=hop,
            n_mels=adapter.n_mels, f_min=adapter.f_min, f_max=adapter.f_max,
        )
        if adapter.features == "mfcc":
            self.spectrogram = torchaudio.transforms.MFCC(
                sample_rate=adapter.sample_rate, n_mfcc=adapter.n_mfcc, log_mels=True,
                melkwargs={k: v for k, v in mel_kwargs.items() if k != "sample_rate"},
            )
            self.log = False
        else:
            self.spectrogram = torchaudio.transforms.MelSpectrogram(**mel_kwargs)
            self.log = True
        self.normalize = adapter.normalize
        self.register_buffer("norm_mean", torch.tensor(float(adapter.norm_mean)), persistent=False)
        self.register_buffer("norm_std", torch.tensor(float(adapter.norm_std)), persistent=False)
        self.channels = adapter.channels
        self.image_size = tuple(adapter.image_size) if adapter.image_size else None

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            spec = self.spectrogram(waveform.float())  # (B, F, T)
            if self.log:
                spec = torch.log(spec + 1e-6)
            if self.normalize == "utterance":
                mean = spec.mean(dim=(1, 2), keepdim=True)
                std = spec.std(dim=(1, 2), keepdim=True)
                spec = (spec - mean) / (std + 1e-5)
            elif self.normalize == "dataset":
                spec = (spec - self.norm_mean) / self.norm_std
            spec = spec.unsqueeze(1)  # (B, 1, F, T)
            if self.image_size is not None:
                spec = nn.functional.interpolate(spec, size=self.image_size, mode="bilinear",
                                                 align_corners=False)
            if self.channels == "deltas":
                delta = torchaudio.functional.compute_deltas(spec)
                delta2 = torchaudio.functional.compute_deltas(delta)
                return torch.cat([spec, delta, delta2], dim=1)
            return spec.expand(-1, 3, -1, -1).contiguous()


class SpecAugment(nn.Module):
    """Training-only masking and time shift on the decoded waveform batch's spectrogram.

    Runs on the image batch ``(B, 3, F, T)`` after :class:`SpectrogramImage`, with
    independent masks per clip (torchaudio ``iid_masks``).
    """

    def __init__(self, adapter: AudioAdapter) -> None:
        super().__init__()
        self.enabled = adapter.spec_augment
        self.num_masks = adapter.num_masks
        self.freq = torchaudio.transforms.FrequencyMasking(adapter.freq_mask, iid_masks=True)
        self.time = torchaudio.transforms.TimeMasking(adapter.time_mask, iid_masks=True)
        self.time_shift = adapter.time_shift

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.time_shift:
            width = images.shape[-1]
            max_shift = max(1, int(math.ceil(width * self.time_shift)))
            shifts = torch.randint(-max_shift, max_shift + 1, (images.shape[0],), device=images.device)
            index = (torch.arange(width, device=images.device)[None, :] - shifts[:, None]) % width
            images = torch.gather(images, -1, index[:, None, None, :].expand_as(images))
        if self.enabled:
            # one mask per clip, shared by its 3 channels: masks drawn per channel paint
            # coloured stripes, which frozen ImageNet features respond to strongly (an
            # FSDD linear probe, 50 clips per class, trained on augmented inputs: 0.22
            # test accuracy with per-channel masks, 0.34 with shared ones)
            keep = images.new_ones((images.shape[0], 1, *images.shape[2:]))
            for _ in range(self.num_masks):
                keep = self.freq(keep)
                keep = self.time(keep)
            images = images * keep  # 0 = the clip's mean after utterance normalisation
        return images
