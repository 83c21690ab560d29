"""Tests of the xmodal-timeseries plugin: the .ts reader, the transforms, the data sets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.errors import BadInputError
from xmodal_timeseries import plugin
from xmodal_timeseries.adapter import TimeSeriesAdapter, gramian_angular_field, recurrence_plot
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


@pytest.mark.parametrize("transform", ["cwt", "gaf", "rp", "stack"])
def test_every_transform_gives_standardised_images(transform):
    adapter = TimeSeriesAdapter(transform=transform, length=64, image_size=32, n_scales=16)
    series = [np.sin(np.linspace(0, f, 100)) for f in (3, 9)]
    batch = torch.stack([adapter.decode(s) for s in series])
    assert batch.shape == ((2, 17, 64) if transform in ("cwt", "stack") else (2, 64))
    images = adapter.device_transform({})(batch)
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
    assert images.mean(dim=(2, 3)).abs().max() < 1e-4
    assert not torch.allclose(images[0], images[1])  # different series, different images
    augmented = adapter.train_augment()(images)
    assert augmented.shape == images.shape and not torch.allclose(augmented, images)


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
