"""Text modality: rendering, fonts, manifests, bad rows, the built-in sets, a short fit."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal.adapters import create_adapter
from xmodal.adapters.text import TextAdapter
from xmodal.adapters.text_fonts import PACKAGED_FONTS, FontChain
from xmodal.data import XModalDataModule
from xmodal.data.text_manifest import read_text_rows
from xmodal.errors import BadInputError, ConfigError

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "xmodal" / "sample_data" / "sms_spam" / "sms_spam.csv"
#: Egyptian hieroglyph A001: in neither packaged font.
NO_FONT_HAS_IT = "\U00013000"


def small(**settings) -> TextAdapter:
    return TextAdapter(**{"image_size": [32, 128], "font_size": 10, **settings})


# -- rendering ---------------------------------------------------------------------------


def test_render_is_deterministic_per_text_and_settings() -> None:
    text = "Free entry in 2 a wkly comp to win FA Cup final tkts"
    first = small().decode(text)
    second = small().decode(text)  # a new adapter: nothing shared but the settings
    assert first.shape == (1, 32, 128) and first.dtype == torch.uint8
    assert torch.equal(first, second)
    assert not torch.equal(first, small().decode("f" + text[1:]))
    assert not torch.equal(first, small(font_size=11).decode(text))
    assert small().cache_key() != small(font_size=11).cache_key()


def test_text_is_nfc_normalised() -> None:
    assert torch.equal(small().decode("cafe\u0301"), small().decode("caf\u00e9"))


def test_cjk_glyphs_are_not_blank() -> None:
    adapter = TextAdapter(layout="grid", image_size=[32, 64], cell_size=16, font_size=14)
    image = adapter.decode("中文测试好评").numpy()[0]
    ink = [(image[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] < 128).sum()
           for r in range(2) for c in range(4)]
    assert all(count > 10 for count in ink[:6]), ink  # six characters, six inked cells
    assert ink[6] == 0 and ink[7] == 0  # the rest of the grid stays blank
    assert not adapter.lay_out("中文测试").missing


def test_lines_mix_scripts_from_the_fallback_chain() -> None:
    adapter = small()
    layout = adapter.lay_out("Hello Привет αβγ 你好")
    fonts = {index for *_, index in layout.runs}
    assert fonts == {0, 1}  # DejaVu for Latin/Cyrillic/Greek, Noto CJK for Chinese
    assert not layout.missing


def test_truncation_is_counted() -> None:
    adapter = small()
    assert not adapter.lay_out("short text").truncated
    assert adapter.lay_out("word " * 200).truncated
    grid = TextAdapter(layout="grid", image_size=[32, 32], cell_size=16)
    assert not grid.lay_out("一二三四").truncated
    assert grid.lay_out("一二三四五").truncated
    assert small(max_chars=5).lay_out("abcdefgh").truncated
    stats = adapter.render_stats(["short", "word " * 200, "x " * 500])
    assert (stats.total, stats.truncated) == (3, 2)
    assert "2 of 3 texts truncated" in adapter.input_report(["short", "word " * 200, "x " * 500])


def test_a_100_kb_text_renders_quickly_and_is_truncated() -> None:
    adapter = small()
    text = "spam " * 20_000
    start = time.perf_counter()
    image = adapter.decode(text)
    assert time.perf_counter() - start < 2.0
    assert image.shape == (1, 32, 128)
    assert adapter.lay_out(text).truncated


def test_missing_glyphs_are_counted_and_warned_never_blank() -> None:
    adapter = small()
    layout = adapter.lay_out(f"ok {NO_FONT_HAS_IT} ok {NO_FONT_HAS_IT}")
    assert layout.missing == [NO_FONT_HAS_IT, NO_FONT_HAS_IT]
    assert "\ufffd" in "".join(run[2] for run in layout.runs)
    with pytest.warns(UserWarning, match="U\\+13000"):
        note = adapter.input_report(["fine", f"bad {NO_FONT_HAS_IT}"])
    assert "1 of 2 texts have characters no font has" in note
    # the replacement mark is drawn: the image differs from the text without it
    assert not torch.equal(adapter.decode(f"a {NO_FONT_HAS_IT}"), adapter.decode("a"))


def test_emoji_render_or_are_reported() -> None:
    adapter = small()
    stats = adapter.render_stats(["great 😀 deal 🧠"])
    assert stats.truncated == 0
    layout = adapter.lay_out("great 😀 deal 🧠")
    drawn = "".join(run[2] for run in layout.runs)
    for ch in "😀🧠":  # each emoji is either drawn from a font or counted as missing
        assert (ch in drawn) != (ch in layout.missing)


def test_empty_and_non_text_inputs_are_bad_inputs() -> None:
    adapter = small()
    for value in ("", "   \n\t ", "\u200b\ufeff"):
        with pytest.raises(BadInputError, match="empty or whitespace-only"):
            adapter.decode(value)
    with pytest.raises(BadInputError, match="invalid UTF-8 at byte 2"):
        adapter.decode(b"ok\xff\xfe")
    with pytest.raises(BadInputError, match="expected a text"):
        adapter.decode(3.5)


def test_colours_and_inversion() -> None:
    plain = small().decode("x").numpy()
    inverted = small(invert=True).decode("x").numpy()
    assert plain.max() == 255 and inverted.min() == 0
    assert np.array_equal(255 - plain, inverted)
    grey = small(foreground=100, background=200).decode("x").numpy()
    assert grey.max() == 200 and grey.min() >= 100


def test_training_jitter_varies_and_can_be_off() -> None:
    adapter = small(size_jitter=1, shift_jitter=3)
    assert adapter.decode_varies_in_training
    torch.manual_seed(0)
    renders = {adapter.decode_train("jitter me").numpy().tobytes() for _ in range(6)}
    assert len(renders) > 1
    fixed = small(augment=False)
    assert not fixed.decode_varies_in_training
    assert torch.equal(fixed.decode_train("same"), fixed.decode("same"))


def test_random_train_font_from_a_list() -> None:
    mono = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
    if not Path(mono).is_file():
        pytest.skip("no second font on this machine")
    adapter = small(train_fonts=[mono], size_jitter=0, shift_jitter=0)
    torch.manual_seed(1)
    renders = {adapter.decode_train("iiii mmmm").numpy().tobytes() for _ in range(8)}
    assert len(renders) == 2  # the packaged font or the extra one


def test_device_transform_normalises_with_the_backbone_statistics() -> None:
    adapter = small()
    batch = torch.stack([adapter.decode("a"), adapter.decode("b")])
    config = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.25, 0.5)}
    images = adapter.device_transform(config)(batch)
    assert images.shape == (2, 3, 32, 128) and images.dtype == torch.float32
    white = images[0, :, 0, 0]  # a background pixel: 1.0 before normalisation
    assert torch.allclose(white, torch.tensor([1.0, 2.0, 1.0]))


def test_fonts_by_path_name_and_unknown() -> None:
    chain = FontChain([str(PACKAGED_FONTS / "DejaVuSans.ttf"), "Noto Sans CJK SC"])
    assert chain.font_index("a") == 0 and chain.font_index("中") == 1
    assert chain.font_index(NO_FONT_HAS_IT) == -1
    with pytest.raises(ConfigError, match="font 'No Such Font Family 123' not found"):
        small(fonts=["No Such Font Family 123"])
    with pytest.raises(ConfigError, match="unknown text adapter setting"):
        create_adapter({"modality": "text", "font_sise": 3})


def test_packaged_cjk_font_is_small_and_licensed() -> None:
    font = PACKAGED_FONTS / "NotoSansCJKsc-Regular-GB2312.otf"
    assert font.stat().st_size <= 4 * 1024 * 1024
    assert "OPEN FONT LICENSE" in (PACKAGED_FONTS / "NotoSansCJK-LICENSE.txt").read_text()
    assert (PACKAGED_FONTS / "DejaVuSans-LICENSE.txt").is_file()
    chain = FontChain(["Noto Sans CJK SC"])
    gb2312 = bytes([0xB0, 0xA1]).decode("gb2312") + bytes([0xF7, 0xFE]).decode("gb2312")
    assert all(chain.font_index(ch) == 0 for ch in gb2312 + "，。！？")


@settings(max_examples=50, deadline=None)
@given(text=st.text(max_size=300), layout=st.sampled_from(["lines", "grid"]))
def test_renderer_fuzz(text: str, layout: str) -> None:
    adapter = _FUZZ[layout]
    try:
        image = adapter.decode(text)
    except BadInputError as error:
        assert "empty" in error.reason
        return
    assert image.shape == (1, 32, 96) and image.dtype == torch.uint8
    assert torch.equal(image, adapter.decode(text))


_FUZZ = {"lines": TextAdapter(image_size=[32, 96], font_size=10),
         "grid": TextAdapter(layout="grid", image_size=[32, 96], cell_size=16)}


# -- manifests -----------------------------------------------------------------------------


def test_csv_manifest_reports_bad_rows_by_line(tmp_path) -> None:
    path = tmp_path / "texts.csv"
    path.write_bytes(
        b"label,text\n"
        b"ham,hello there\n"
        b"spam,bad byte \xff here\n"
        b"ham,   \n"
        b",no label\n"
        b'spam,"multi\nline"\n'
        b"ham,last one\n"
    )
    rows, bad = read_text_rows(path)
    assert [r.text for r in rows] == ["hello there", "multi\nline", "last one"]
    assert [r.index for r in rows] == [0, 4, 5]
    reasons = {error.source: error.reason for error in bad}
    assert reasons[f"{path}:3"].startswith("invalid UTF-8 byte 0xff")
    assert reasons[f"{path}:4"] == "empty or whitespace-only text"
    assert reasons[f"{path}:5"].startswith("empty label")
    assert rows[2].line == 8  # the quoted newline counts as a line


def test_missing_column_is_a_config_error(tmp_path) -> None:
    path = tmp_path / "texts.csv"
    path.write_text("category,text\nham,hi\n")
    with pytest.raises(ConfigError, match="no column 'label'; columns are 'category', 'text'"):
        read_text_rows(path)
    rows, _ = read_text_rows(path, label_column="category")
    assert rows[0].label == "ham"


def test_tsv_and_jsonl_manifests(tmp_path) -> None:
    tsv = tmp_path / "t.tsv"
    tsv.write_text("sentence\ttag\nguten Tag\tde\n")
    rows, bad = read_text_rows(tsv, "sentence", "tag")
    assert (rows[0].text, rows[0].label, bad) == ("guten Tag", "de", [])
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "好评", "label": 1}\n{"text": "x"\n{"label": 0}\n[1]\n'
                     '{"text": "差评", "label": 0}\n', encoding="utf-8")
    rows, bad = read_text_rows(jsonl)
    assert [(r.text, r.label) for r in rows] == [("好评", "1"), ("差评", "0")]
    assert [error.source.rsplit(":", 1)[1] for error in bad] == ["2", "3", "4"]
    assert "not valid JSON" in bad[0].reason and "no key 'text'" in bad[1].reason


def test_text_manifest_dataset_and_bad_row_policy(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # without a trainer the skip list is written to the cwd
    path = tmp_path / "mine.csv"
    with SAMPLE.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:30]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["label", "text"])
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({"label": "ham", "text": " "})
    options = {"path": str(path), "test_every": 5}
    data = XModalDataModule(dataset="text_manifest", modality="text", options=options,
                            adapter={"image_size": [32, 64], "augment": False}, num_workers=0)
    with pytest.raises(BadInputError, match=r"mine\.csv:32.*empty or whitespace-only"):
        data.setup("fit")
    data = XModalDataModule(dataset="text_manifest", modality="text", options=options,
                            adapter={"image_size": [32, 64], "augment": False}, num_workers=0,
                            on_bad_file="skip")
    data.setup("test")
    assert data.bad_files.rows == [(f"{path}:32", "empty or whitespace-only text")]
    assert f"{path}:32,empty or whitespace-only text" in (tmp_path / "bad_files.csv").read_text()
    assert len(data.datasets["test"]) == 6  # rows 0, 5, ..., 25
    assert data.class_names == ["ham", "spam"]


# -- built-in data sets, preview, fit ------------------------------------------------------


def test_packaged_sms_sample_and_split() -> None:
    from xmodal import plugins

    spec = plugins.datasets().get("sms_spam")(None)
    assert (len(spec.train), len(spec.test)) == (480, 120)
    assert spec.test[0].name.endswith("sms_spam.csv:2")  # data row 0 is test
    assert spec.test[1].name.endswith("sms_spam.csv:7")  # data row 5


def test_shared_data_sets_and_split(data_root) -> None:
    from xmodal import plugins

    sms = plugins.datasets().get("sms_spam")(data_root)
    assert (len(sms.train), len(sms.test), sms.classes) == (4459, 1115, ["ham", "spam"])
    chn = plugins.datasets().get("chnsenticorp")(data_root)
    assert chn.classes == ["negative", "positive"]
    assert len(chn.train) + len(chn.test) == 7765  # one empty review skipped, reported
    assert (len(chn.train), len(chn.test)) == (6211, 1554)


def test_preview_writes_the_png(tmp_path) -> None:
    from PIL import Image

    from xmodal.cli import main

    out = tmp_path / "p.png"
    assert main(["preview", "--modality", "text", "Привет, 你好", "-o", str(out),
                 "--adapter", json.dumps({"image_size": [32, 128]})]) == 0
    image = Image.open(out)
    assert image.size == (128, 32) and np.asarray(image).min() < 100
    folder = tmp_path / "set"
    assert main(["preview", "--modality", "text", "--dataset", "sms_spam", "--count", "3",
                 "-o", str(folder)]) == 0
    assert len(list(folder.glob("*.png"))) == 3


def test_tiny_fit_from_a_yaml_config(tmp_path) -> None:
    from xmodal.cli import run_lightning

    path = tmp_path / "tiny.csv"
    with SAMPLE.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = [r for r in rows if r["label"] == "spam"][:16] + [r for r in rows if r["label"] == "ham"][:16]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["label", "text"])
        writer.writeheader()
        writer.writerows(rows)
    config = tmp_path / "tiny.yaml"
    config.write_text(f"""
seed_everything: 0
trainer:
  max_epochs: 1
  limit_train_batches: 2
  limit_val_batches: 1
  limit_test_batches: 1
  enable_progress_bar: false
  default_root_dir: {tmp_path / 'runs'}
data:
  dataset: text_manifest
  modality: text
  batch_size: 8
  num_workers: 0
  options: {{path: {path}, test_every: 4}}
  adapter: {{image_size: [32, 96], font_size: 10}}
model:
  class_path: xmodal.tasks.classification.ClassificationTask
  init_args: {{freeze: 4, lr: 0.01}}
""")
    cli = run_lightning(["fit", "--config", str(config)])
    assert cli.model.hparams.class_names == ["ham", "spam"]
    assert cli.model.adapter.config()["image_size"] == [32, 96]
    assert 0.0 <= float(cli.test_results["test/acc"]) <= 1.0
