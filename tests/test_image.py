"""The image modality: decoding, colour modes, EXIF, bad files, hymenoptera, a short fit."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xmodal import plugins
from xmodal.adapters import create_adapter
from xmodal.adapters.image import ImageAdapter, read_image
from xmodal.data.scan import BadFiles, scan
from xmodal.data.spec import Item
from xmodal.errors import BadInputError

BAD = Path(__file__).parent / "data" / "bad" / "images"
#: the unusable files of tests/data/bad/images (the folder also holds loadable oddities)
BAD_NAMES = ("truncated.jpg", "empty.jpg", "text_named.jpg", "one_pixel.png", "bomb_20000px.png")
DATA = Path(os.environ["XMODAL_DATA"]) if os.environ.get("XMODAL_DATA") else None


def _photo(path: Path, size=(64, 48), mode="RGB", fmt=None, seed=0, **save_kwargs) -> Path:
    """A small real image file: smooth gradients plus noise, saved by Pillow."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
    rgb = np.clip(rgb + rng.normal(0, 20, rgb.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, fmt, **save_kwargs)
    return path


# -- registration and settings ---------------------------------------------------------


def test_image_modality_is_registered_with_hymenoptera_default():
    cls = plugins.modalities().get("image")
    assert cls is ImageAdapter
    assert cls.default_dataset == "hymenoptera"
    assert cls.fixed_shape and ImageAdapter().decode_varies_in_training
    assert not ImageAdapter(augment=False).decode_varies_in_training
    assert "hymenoptera" in plugins.datasets().names()


def test_defaults_match_the_default_backbones_timm_data_config():
    import timm

    from xmodal import backbones

    model = timm.create_model(backbones.DEFAULT_BACKBONE, pretrained=False, num_classes=0)
    config = backbones.data_config(model)
    adapter = ImageAdapter()
    assert config["input_size"] == (3, adapter.image_size, adapter.image_size)
    assert config["interpolation"] == adapter.interpolation
    assert config["crop_pct"] == pytest.approx(adapter.crop_pct)


def test_unknown_or_invalid_settings_are_config_errors():
    from xmodal.errors import ConfigError

    with pytest.raises(ConfigError, match="image_sise"):
        create_adapter({"modality": "image", "image_sise": 64})
    with pytest.raises(ConfigError, match="interpolation"):
        create_adapter({"modality": "image", "interpolation": "lanczos5"})
    with pytest.raises(ConfigError, match="crop_scale"):
        create_adapter({"modality": "image", "crop_scale": [0.9, 0.1]})


# -- decoding ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode,fmt", [
    ("L", "PNG"), ("P", "PNG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("LA", "PNG"),
    ("I;16", "PNG"), ("1", "PNG"), ("RGB", "GIF"), ("RGB", "WEBP"), ("RGB", "BMP"),
])
def test_every_colour_mode_becomes_rgb(tmp_path, mode, fmt):
    path = _photo(tmp_path / f"x.{fmt.lower()}", mode=mode, fmt=fmt)
    image = read_image(path)
    assert image.mode == "RGB" and image.size == (64, 48)
    decoded = ImageAdapter(image_size=32).decode(path)
    assert decoded.dtype == torch.uint8 and decoded.shape == (3, 32, 32)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    array = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    pixels = np.asarray(read_image(path))
    assert pixels.min() < 10 and pixels.max() > 245  # a ramp, not a white sheet
    assert 100 < pixels.mean() < 155


def test_transparent_pixels_are_composited_on_white(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)  # black, fully transparent
    rgba[:, 10:] = (255, 0, 0, 255)  # right half opaque red
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    pixels = np.asarray(read_image(path))
    assert (pixels[:, :10] == 255).all()
    assert (pixels[:, 10:] == (255, 0, 0)).all()


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)  # stored: 40 wide, 20 high, red on the left
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, "JPEG", exif=exif.tobytes(), quality=95)
    upright = np.asarray(read_image(path))
    assert upright.shape[:2] == (40, 20)  # displayed portrait
    assert upright[:20, :, 0].mean() > 200 > upright[20:, :, 0].mean()  # red now on top


def test_eval_decode_is_deterministic_and_train_decode_is_not(tmp_path):
    path = _photo(tmp_path / "p.jpg", size=(80, 60))
    adapter = ImageAdapter(image_size=32, train_size=24)
    first = adapter.decode(path)
    torch.manual_seed(123)
    second = ImageAdapter(image_size=32, train_size=24).decode(path)
    assert first.shape == (3, 32, 32) and torch.equal(first, second)
    torch.manual_seed(0)
    views = [adapter.decode_train(path) for _ in range(6)]
    assert all(view.shape == (3, 24, 24) and view.dtype == torch.uint8 for view in views)
    assert any(not torch.equal(views[0], view) for view in views[1:])


def test_randaugment_from_timm_runs(tmp_path):
    path = _photo(tmp_path / "p.png")
    adapter = ImageAdapter(image_size=32, randaugment="rand-m9-mstd0.5")
    assert adapter.decode_train(path).shape == (3, 32, 32)


def test_cache_key_ignores_training_only_settings():
    base = ImageAdapter(image_size=64)
    assert base.cache_key() == ImageAdapter(image_size=64, color_jitter=0.0, hflip=0.0).cache_key()
    assert base.cache_key() != ImageAdapter(image_size=96).cache_key()


def test_device_transform_normalises_with_the_backbones_mean_and_std():
    adapter = ImageAdapter(image_size=8)
    module = adapter.device_transform({"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.5, 0.5)})
    batch = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)
    out = module(batch)
    assert out.dtype == torch.float32
    assert torch.allclose(out[:, 0], torch.tensor(2.0)) and torch.allclose(out[:, 1], torch.tensor(1.0))
    own = ImageAdapter(image_size=8, mean=[0, 0, 0], std=[1, 1, 1]).device_transform({"mean": (0.5,) * 3})
    assert torch.allclose(own(batch), torch.ones(2, 3, 8, 8))


# -- bad inputs -------------------------------------------------------------------------


@pytest.mark.parametrize("name,reason", [
    ("truncated.jpg", "truncated"),
    ("empty.jpg", "empty"),
    ("text_named.jpg", "holds text"),
    ("one_pixel.png", "1x1 px, below min_size"),
    ("bomb_20000px.png", "decompression-bomb"),
])
def test_bad_files_give_a_clear_error_naming_the_file(name, reason):
    with pytest.raises(BadInputError) as info:
        ImageAdapter(image_size=32).decode(BAD / name)
    assert name in str(info.value) and reason in info.value.reason


def test_bomb_limit_is_a_setting_and_pillows_own_limit_is_restored(tmp_path):
    limit = Image.MAX_IMAGE_PIXELS
    path = _photo(tmp_path / "p.png")  # 64x48 = 3072 px
    with pytest.raises(BadInputError, match="3,072 pixels, over the max_pixels limit of 1,000"):
        ImageAdapter(image_size=16, max_pixels=1000).decode(path)
    assert Image.MAX_IMAGE_PIXELS == limit


def test_one_pixel_image_is_accepted_when_min_size_allows(tmp_path):
    decoded = ImageAdapter(image_size=16, min_size=1).decode(BAD / "one_pixel.png")
    assert decoded.shape == (3, 16, 16) and (decoded[0] == 200).all()


def test_scan_skips_and_reports_every_bad_file(tmp_path):
    good = _photo(tmp_path / "good.jpg")
    paths = [good, *(BAD / name for name in BAD_NAMES)]
    items = [Item(str(p), 0, str(p)) for p in paths]
    report = BadFiles()
    result = scan(items, ImageAdapter(image_size=16), "skip", report)
    assert [item.name for item in result.items] == [str(good)]
    assert result.array.shape == (1, 3, 16, 16)
    assert {Path(name).name for name, _ in report.rows} == {p.name for p in paths[1:]}
    rows = list(csv.reader(report.write(tmp_path / "bad_files.csv").open()))
    assert rows[0] == ["path", "reason"] and len(rows) == len(paths)


# -- hymenoptera ------------------------------------------------------------------------


@pytest.mark.skipif(DATA is None or not (DATA / "hymenoptera").is_dir(), reason="XMODAL_DATA/hymenoptera absent")
def test_hymenoptera_splits_and_the_gif_placeholder():
    factory = plugins.datasets().get("hymenoptera")
    spec = factory(DATA)
    assert (len(spec.train), len(spec.val)) == (244, 153)
    assert spec.test is spec.val and spec.classes == ["ants", "bees"]
    assert spec.on_bad_file == "skip" and spec.modality == "image"
    assert [Path(error.source).name for error in spec.bad] == ["imageNotFound.gif"]
    kept = factory(DATA, keep_placeholders=True)
    gif = [item for item in kept.train if item.name.endswith(".gif")]
    assert len(kept.train) == 245 and len(gif) == 1 and not kept.bad
    assert ImageAdapter(image_size=32).decode(gif[0].source).shape == (3, 32, 32)  # loadable


# -- a short fit through the CLI --------------------------------------------------------


def test_short_fit_on_a_folder_of_images(tmp_path):
    from xmodal.cli import main

    root = tmp_path / "pics"
    for label, seed in (("cats", 0), ("dogs", 100)):
        (root / label).mkdir(parents=True)
        for i in range(6):
            _photo(root / label / f"{i}.jpg", size=(40 + i, 36), seed=seed + i)
    (root / "dogs" / "broken.jpg").write_bytes(b"")
    code = main([
        "fit", "--modality", "image", "--data.dataset", "folder", "--data.root", str(root),
        "--data.adapter", "{image_size: 32, train_size: 32}", "--data.batch_size", "4",
        "--data.num_workers", "0", "--data.val_fraction", "0.34", "--data.on_bad_file", "skip",
        "--data.cache_dir", str(tmp_path / "cache"), "--trainer.max_epochs", "1",
        "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false",
        "--test_after_fit", "false",
    ])
    assert code == 0
    bad = list((tmp_path / "runs").rglob("bad_files.csv"))
    assert bad and "broken.jpg" in bad[0].read_text()
    assert list((tmp_path / "runs").rglob("*.ckpt"))


def test_preview_writes_the_evaluation_view(tmp_path):
    source = _photo(tmp_path / "p.jpg", size=(80, 60))
    adapter = ImageAdapter(image_size=32)
    out = adapter.preview(source, tmp_path / "preview" / "p.png")
    assert np.array_equal(np.asarray(Image.open(out)), adapter.decode(source).permute(1, 2, 0).numpy())


def test_csv_manifest_of_images_with_a_bad_row(tmp_path, monkeypatch, capsys):
    from xmodal.data.datamodule import XModalDataModule

    monkeypatch.chdir(tmp_path)  # no trainer: bad_files.csv goes to the working folder

    rows = ["path,label,split"]
    for i in range(4):
        for label in ("ant", "bee"):
            _photo(tmp_path / f"{label}{i}.png", size=(30 + i, 20), seed=i)
            rows.append(f"{label}{i}.png,{label},{'val' if i == 3 else 'train'}")
    (tmp_path / "text.jpg").write_text("not a picture")
    rows.append("text.jpg,ant,train")
    (tmp_path / "photos.csv").write_text("\n".join(rows) + "\n")
    data = XModalDataModule(manifest=str(tmp_path / "photos.csv"), modality="image",
                            adapter={"image_size": 16}, num_workers=0, cache=False,
                            on_bad_file="skip", batch_size=4)
    data.setup("fit")
    assert data.class_names == ["ant", "bee"]
    assert len(data.datasets["train"]) == 6 and len(data.datasets["val"]) == 2
    assert [Path(name).name for name, _ in data.bad_files.rows] == ["text.jpg"]
    data.report_bad_files()  # as setup does again for the test after fit
    summaries = [line for line in capsys.readouterr().err.splitlines() if "bad input(s)" in line]
    assert summaries == [f"xmodal: skipped 1 bad input(s); list in {tmp_path / 'bad_files.csv'}"]
    batch = next(iter(data.train_dataloader()))
    assert batch["input"].shape == (4, 3, 16, 16) and batch["input"].dtype == torch.uint8
    val = next(iter(data.val_dataloader()))
    assert val["input"].shape == (2, 3, 16, 16)


@pytest.mark.parametrize("name", ["alpha_named.jpg", "cmyk.jpg", "gif_named.jpg", "tiff_named.jpg",
                                  "webp_named.jpg"])
def test_other_formats_named_like_a_photo_are_loaded(name):
    path = BAD / name
    if not path.is_file():
        pytest.skip(f"{name} is not in tests/data/bad/images")
    decoded = ImageAdapter(image_size=16).decode(path)  # the content decides, not the suffix
    assert decoded.shape == (3, 16, 16) and decoded.dtype == torch.uint8
