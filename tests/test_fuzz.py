"""Fuzzing the decoders: any input gives a valid tensor or a BadInputError, nothing else.

Bounded (``max_examples``) so the suite stays fast; hypothesis's database keeps any
failing example for the next run.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmodal.adapters import create_adapter
from xmodal.errors import BadInputError

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

AUDIO = create_adapter({"modality": "audio", "sample_rate": 8000, "duration": 0.25})


def decode_audio_bytes(payload: bytes, suffix: str = ".wav") -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(payload)
        try:
            out = AUDIO.decode(path)
        except BadInputError as error:
            assert error.source.endswith(path.name) and error.reason
            return
        assert isinstance(out, torch.Tensor) and tuple(out.shape) == (AUDIO.num_samples,)
        assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())


@FUZZ
@given(st.binary(max_size=4096), st.sampled_from([".wav", ".flac", ".ogg", ".mp3"]))
def test_audio_decoder_random_bytes(payload: bytes, suffix: str) -> None:
    decode_audio_bytes(payload, suffix)


def wav_header(fmt_tag: int, channels: int, rate: int, bits: int, declared: int) -> bytes:
    block = max(1, channels * max(1, bits // 8))
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block & 0xFFFFFFFF, block & 0xFFFF, bits)
    return (b"RIFF" + struct.pack("<I", (36 + declared) & 0xFFFFFFFF) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", declared))


@FUZZ
@given(
    fmt_tag=st.sampled_from([0, 1, 2, 3, 6, 7, 0x11, 0x55, 0xFFFE, 0xFFFF]),
    channels=st.integers(0, 300),
    rate=st.one_of(st.sampled_from([0, 1, 8000, 44100, 96000, 2**31 - 1]), st.integers(0, 2**32 - 1)),
    bits=st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64, 65535]),
    declared=st.integers(0, 2**32 - 1),
    data=st.binary(max_size=2048),
)
def test_audio_decoder_random_wav_headers(fmt_tag, channels, rate, bits, declared, data) -> None:  # noqa: ANN001
    decode_audio_bytes(wav_header(fmt_tag, channels, rate, bits, declared) + data)


@FUZZ
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=400),
       st.sampled_from([8000, 16000, 44100]))
def test_audio_decoder_random_float_samples(samples: list[float], rate: int) -> None:
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(samples, dtype=np.float32).reshape(-1, 1), rate, format="WAV",
             subtype="FLOAT")
    decode_audio_bytes(buffer.getvalue())


TEXT = create_adapter({"modality": "text", "image_size": [32, 64]})


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300),
                 st.text(alphabet=st.characters(codec="utf-8"), max_size=50).map(lambda t: t * 20)))
def test_text_renderer_any_text(source) -> None:  # noqa: ANN001
    try:
        out = TEXT.decode(source)
    except BadInputError as error:
        assert error.reason
        return
    assert out.dtype == torch.uint8 and tuple(out.shape) == (1, 32, 64)


@FUZZ
@given(st.text(max_size=200))
def test_text_renderer_training_jitter(source: str) -> None:
    adapter = create_adapter({"modality": "text", "image_size": [32, 64], "augment": True})
    try:
        out = adapter.decode_train(source)
    except BadInputError:
        return
    assert tuple(out.shape) == (1, 32, 64)


@pytest.mark.parametrize("text", ["\x00", "\ud800", "\u202e" * 100, "🏳️‍🌈" * 200, "\u0301" * 50])
def test_text_renderer_edge_cases(text: str) -> None:
    try:
        out = TEXT.decode(text)
    except BadInputError:
        return
    assert tuple(out.shape) == (1, 32, 64)
