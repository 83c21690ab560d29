"""Tests of the xmodal-timeseries plugin: the .ts reader, the transforms, the data sets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.errors import BadInputError
from xmodal_timeseries import plugin
from xmodal_timeseries.adapter import (TimeSeriesAdapter, gramian_angular_field, line_plot,
                                       recurrence_plot)
from xmodal_timeseries.datasets import ucr
from xmodal_timeseries.tsfile import read_ts

TS = """# a comment
@problemName Tiny
@univariate true
@classLabel true a b
@data
1,2,3,4,5:a
5,4,3,2,1:b
1,2,?,4:a
1,2,3
"""


def test_read_ts_reports_bad_rows_with_line_numbers(tmp_path):
    path = tmp_path / "Tiny_TRAIN.ts"
    path.write_text(TS)
    parsed = read_ts(path)
    assert parsed.class_labels == ["a", "b"]
    assert parsed.labels == ["a", "b"] and parsed.lines == [6, 7]
    np.testing.assert_allclose(parsed.series[1], [5, 4, 3, 2, 1])
    assert [error.source for error in parsed.bad] == [f"{path}:8", f"{path}:9"]
    assert "missing" in parsed.bad[0].reason and "label" in parsed.bad[1].reason


def test_not_a_ts_file(tmp_path):
    path = tmp_path / "x.ts"
    path.write_text("1,2,3:a\n")
    with pytest.raises(BadInputError, match="no @data"):
        read_ts(path)


@pytest.mark.parametrize("transform", ["cwt", "gaf", "rp", "line", "stack"])
def test_every_transform_gives_standardised_images(transform):
    adapter = TimeSeriesAdapter(transform=transform, length=64, image_size=32, n_scales=16)
    series = [np.sin(np.linspace(0, f, 100)) for f in (3, 9)]
    batch = torch.stack([adapter.decode(s) for s in series])
    assert batch.shape == ((2, 17, 64) if transform in ("cwt", "stack") else (2, 64))
    images = adapter.device_transform({})(batch)
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
    assert images.mean(dim=(2, 3)).abs().max() < 1e-4
    assert not torch.allclose(images[0], images[1])  # different series, different images
    augmented = torch.stack([adapter.decode_train(s) for s in series])
    assert augmented.shape == batch.shape and not torch.allclose(augmented, batch)
    assert adapter.decode_varies_in_training and adapter.train_augment() is None


def test_stack_channels_are_configurable():
    adapter = TimeSeriesAdapter(transform="stack", channels=["rp", "gaf", "line"], length=32, image_size=16)
    decoded = adapter.decode(np.cos(np.linspace(0, 5, 50)))
    assert decoded.shape == (32,)  # no scalogram to compute
    image = adapter.device_transform({})(decoded[None])[0]
    torch.testing.assert_close(image[0], TimeSeriesAdapter(transform="rp", length=32, image_size=16)
                               .device_transform({})(decoded[None])[0, 0])
    with pytest.raises(ValueError, match="channels must be three"):
        TimeSeriesAdapter(transform="stack", channels=["rp", "fft", "gaf"])


def test_line_plot_draws_the_series():
    ramp = torch.linspace(0, 1, 50)[None]
    image = line_plot(ramp, 10)[0]
    assert image.shape == (10, 10) and image.max() <= 1
    # a rising line: bright on the anti-diagonal (row 0 is the top), dark far from it
    assert image[9, 0] > 0.5 and image[0, 9] > 0.5 and image[5, 4] > 0.5
    assert image[0, 0] < 1e-3 and image[9, 9] < 1e-3
    # a steep jump stays connected: every row of the column holding it is lit
    step = torch.cat([torch.zeros(25), torch.ones(25)])[None]
    assert (line_plot(step, 10)[0].amax(dim=1) > 0.5).all()


def test_augmentation_roll_flip_and_test_views():
    series = np.arange(40.0)
    adapter = TimeSeriesAdapter(transform="rp", length=40, crop_scale=1.0, roll=1.0, znorm=False)
    rng = np.random.default_rng(0)
    rolled = adapter.augmented(series, rng)
    assert sorted(np.round(rolled).tolist()) == series.tolist() and not np.allclose(rolled, series)
    flipped = TimeSeriesAdapter(length=40, crop_scale=1.0, flip=1.0).augmented(series, rng)
    np.testing.assert_allclose(flipped, series[::-1])
    window = TimeSeriesAdapter(length=40, crop_scale=0.5).augmented(series, rng)
    assert np.all(np.diff(window) > 0) and window.max() - window.min() < 39 + 1e-9
    warped = TimeSeriesAdapter(length=40, crop_scale=1.0, warp=0.5).augmented(series, rng)
    assert np.all(np.diff(warped) >= 0) and warped[0] == 0 and warped[-1] == 39
    views = TimeSeriesAdapter(transform="rp", length=40, roll=1.0, flip=0.5, znorm=False).test_views(series, 4)
    assert len(views) == 8 and torch.equal(views[0], torch.arange(40.0))
    torch.testing.assert_close(views[4], torch.arange(40.0).flip(0))
    assert len(TimeSeriesAdapter(crop_scale=0.8).test_views(series, 4)) == 5
    assert len(TimeSeriesAdapter(augment=False, roll=1.0).test_views(series, 4)) == 1
    off = TimeSeriesAdapter(augment=False)
    torch.testing.assert_close(off.decode_train(series), off.decode(series))
    assert not off.decode_varies_in_training


@pytest.mark.parametrize("wavelet", ["cmor1.5-1.0", "morl", "mexh"])
def test_scalogram_equals_pywavelets(wavelet):
    import pywt

    series = np.random.default_rng(0).normal(size=96)
    adapter = TimeSeriesAdapter(transform="cwt", length=96, n_scales=20, wavelet=wavelet)
    scales = np.geomspace(1.0, 96 / 4, 20)
    expected, _ = pywt.cwt(series, scales, wavelet, method="fft")
    np.testing.assert_allclose(adapter.scalogram(series), np.abs(expected), atol=1e-12)


def test_gaf_and_rp_definitions():
    x = torch.tensor([[0.0, 1.0, 2.0, 4.0]])
    gasf = gramian_angular_field(x)
    scaled = torch.tensor([-1.0, -0.5, 0.0, 1.0])  # min-max to [-1, 1]
    torch.testing.assert_close(torch.diagonal(gasf[0]), 2 * scaled**2 - 1)  # cos(2 phi)
    gadf = gramian_angular_field(x, "difference")
    torch.testing.assert_close(torch.diagonal(gadf[0]), torch.zeros(4))
    rp = recurrence_plot(x)
    torch.testing.assert_close(rp[0], rp[0].T)
    assert rp[0, 0, 3] == 4.0
    assert recurrence_plot(x, threshold=1.0)[0, 0].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_bad_series_name_the_input(tmp_path):
    adapter = TimeSeriesAdapter(transform="gaf")
    with pytest.raises(BadInputError, match="missing or infinite"):
        adapter.decode(np.array([1.0, np.nan, 2.0]))
    text = tmp_path / "series.txt"
    text.write_text("1, 2, x")
    with pytest.raises(BadInputError, match="series.txt.*cannot read"):
        adapter.decode(str(text))
    with pytest.raises(ValueError, match="transform must be"):
        TimeSeriesAdapter(transform="fft")


def test_series_files(tmp_path):
    adapter = TimeSeriesAdapter(transform="rp", length=16)
    np.save(tmp_path / "s.npy", np.arange(10.0))
    (tmp_path / "s.csv").write_text(",".join(str(v) for v in range(10)))
    torch.testing.assert_close(adapter.decode(str(tmp_path / "s.npy")), adapter.decode(str(tmp_path / "s.csv")))


def test_hooks_register_the_modality_and_data_sets():
    found = {}
    plugin.register_modalities(lambda name, value: found.setdefault(name, value))
    plugin.register_datasets(lambda name, value: found.setdefault(name, value))
    assert found["timeseries"] is TimeSeriesAdapter
    assert {"ucr", "arrowhead", "osuleaf"} <= set(found)


@pytest.mark.skipif(not os.environ.get("XMODAL_DATA"), reason="XMODAL_DATA not set")
def test_official_ucr_splits():
    root = Path(os.environ["XMODAL_DATA"])
    if not (root / "ucr" / "ArrowHead").is_dir():
        pytest.skip("no ucr/ArrowHead under XMODAL_DATA")
    spec = ucr(root, "ArrowHead")
    assert (len(spec.train), len(spec.test), spec.classes) == (36, 175, ["0", "1", "2"])
    assert spec.train[0].source.shape == (251,) and spec.modality == "timeseries"
    assert spec.train[0].name == "ArrowHead_TRAIN.ts:18"
