"""Audio adapter: decoding, shapes, options, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from xmodal.adapters import create_adapter
from xmodal.adapters.audio import AudioAdapter, fit_length
from xmodal.errors import BadInputError, ConfigError


def test_decode_resamples_and_fixes_length(fsdd_wavs) -> None:
    adapter = create_adapter({"modality": "audio", "sample_rate": 16000, "duration": 1.0})
    wave = adapter.decode(fsdd_wavs[0])
    assert wave.dtype == torch.float32 and wave.shape == (16000,)
    assert wave.abs().max() > 0.01  # real speech, not silence


def test_stereo_flac_and_ogg_decode_to_mono(tmp_path) -> None:
    rate = 8000
    t = np.arange(rate) / rate
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 220 * t)], axis=1) * 0.3
    adapter = AudioAdapter(sample_rate=8000, duration=1.0)
    for suffix, fmt in ((".flac", "FLAC"), (".ogg", "OGG")):
        path = tmp_path / f"stereo{suffix}"
        sf.write(path, stereo.astype(np.float32), rate, format=fmt)
        wave = adapter.decode(path)
        assert wave.shape == (8000,)
        expected = stereo.mean(axis=1)
        if fmt == "FLAC":
            assert np.allclose(wave.numpy(), expected, atol=1e-3)


def test_device_transform_shapes_and_options(fsdd_wavs) -> None:
    for settings, channels_equal in (({}, True), ({"channels": "deltas"}, False),
                                     ({"features": "mfcc", "n_mfcc": 20}, True),
                                     ({"image_size": [96, 128]}, True)):
        adapter = AudioAdapter(sample_rate=8000, duration=1.0, n_fft=256, hop_length=64, n_mels=40, **settings)
        batch = torch.stack([adapter.decode(p) for p in fsdd_wavs[:3]])
        images = adapter.device_transform({})(batch)
        height = {"features": 20}.get("features") if settings.get("features") == "mfcc" else 40
        if "image_size" in settings:
            assert images.shape == (3, 3, 96, 128)
        else:
            assert images.shape == (3, 3, height, 8000 // 64 + 1)
        assert images.dtype == torch.float32 and torch.isfinite(images).all()
        assert torch.equal(images[:, 0], images[:, 1]) == channels_equal
        if settings == {}:  # per-utterance normalisation
            assert images[:, 0].mean(dim=(1, 2)).abs().max() < 1e-4


def test_spec_augment_masks_in_training_only(fsdd_wavs) -> None:
    adapter = AudioAdapter(sample_rate=8000, n_fft=256, hop_length=64, freq_mask=10, time_mask=20)
    images = adapter.device_transform({})(torch.stack([adapter.decode(p) for p in fsdd_wavs[:4]]))
    augmented = adapter.train_augment()(images.clone())
    assert augmented.shape == images.shape and not torch.equal(augmented, images)
    # one mask per clip, the same in its 3 channels: per-channel masks would paint
    # coloured stripes that frozen ImageNet features react to
    assert torch.equal(augmented[:, 0], augmented[:, 1]) and torch.equal(augmented[:, 0], augmented[:, 2])


def test_fit_length_crops_and_pads() -> None:
    signal = np.arange(10, dtype=np.float32)
    assert fit_length(signal, 4, "center").tolist() == [3, 4, 5, 6]
    assert fit_length(signal, 4, "start").tolist() == [0, 1, 2, 3]
    padded = fit_length(signal[:2], 6, pad="center")
    assert padded.tolist() == [0, 0, 0, 1, 0, 0]


def test_unknown_setting_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown audio adapter setting.*n_mel\\b.*valid:.*n_mels"):
        create_adapter({"modality": "audio", "n_mel": 64})
    with pytest.raises(ConfigError, match="features must be one of"):
        create_adapter({"modality": "audio", "features": "cqt2"})


def _bad_audio_files(tmp_path, good_wav):
    data = good_wav.read_bytes()
    files = {}
    files["empty.wav"] = b""
    files["truncated.wav"] = data[:30]
    files["text.wav"] = b"this is not audio, just text\n" * 20
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    sf.write(tmp_path / "zero_length.wav", np.zeros(0, dtype=np.float32), 8000)
    nan = np.full(4000, np.nan, dtype=np.float32)
    sf.write(tmp_path / "nan.wav", nan, 8000, subtype="FLOAT")
    return sorted(tmp_path.glob("*.wav"))


def test_bad_audio_files_raise_naming_the_file(tmp_path, fsdd_wavs) -> None:
    adapter = AudioAdapter(sample_rate=8000)
    reasons = {}
    for path in _bad_audio_files(tmp_path, fsdd_wavs[0]):
        with pytest.raises(BadInputError) as info:
            adapter.decode(path)
        assert str(path) in str(info.value)
        reasons[path.name] = info.value.reason
    assert "empty" in reasons["empty.wav"]
    assert "NaN" in reasons["nan.wav"]
    assert "0-length" in reasons["zero_length.wav"]
