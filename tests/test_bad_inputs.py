"""The bad-input corpus through every entry point, under ``error`` and ``skip``.

``tests/data/bad/expected.csv`` lists each corpus entry as ``bad`` (must be named in
the one-line error or in ``bad_files.csv``) or ``good`` (odd but valid: must be
trained on / predicted / embedded). Every run mixes the corpus with real FSDD clips
from the packaged sample and checks the counts: nothing bad slips through, nothing
good is lost, and no traceback reaches the user.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmodal.cli import main, run_lightning

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "bad"
SAMPLE = REPO / "xmodal" / "sample_data" / "fsdd" / "recordings"
TINY_MODEL = ["--model.backbone", "test_efficientnet", "--model.pretrained", "false"]
TINY_TRAINER = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
                "--trainer.enable_model_summary", "false", "--test_after_fit", "false",
                "--data.num_workers", "0", "--data.batch_size", "4", "--data.cache", "false"]
AUDIO = ["--data.modality", "audio", "--data.adapter",
         json.dumps({"sample_rate": 8000, "n_mels": 16, "n_fft": 128, "hop_length": 64})]


def expected(prefix: str, expect: str) -> list[str]:
    with (CORPUS / "expected.csv").open() as handle:
        return [row["file"] for row in csv.DictReader(handle)
                if row["file"].startswith(prefix) and row["expect"] == expect]


def bad_rows(folder: Path) -> list[str]:
    found = sorted(folder.rglob("*bad_files.csv"), key=lambda p: p.stat().st_mtime_ns)
    assert found, f"no bad_files.csv under {folder}"
    with found[-1].open() as handle:
        return [row["path"] for row in csv.DictReader(handle)]


def names_match(rows: list[str], entries: list[str]) -> None:
    """Each corpus entry is named by exactly one row, and no row names a good file."""
    for entry in entries:
        tail = entry.split("/", 1)[-1] if not entry.startswith("/") else entry
        hits = [row for row in rows if row.endswith(tail)]
        assert len(hits) == 1, f"{entry} named {len(hits)} times in {rows}"
    assert len(rows) == len(entries), rows


def usable_total(out: str) -> int:
    """Sum of the ``N usable`` counts check-data prints per split."""
    return sum(int(n) for n in re.findall(r"(\d+) usable", out))


def one_line_error(err: str, modality: str) -> str:
    """The single ``xmodal: error:`` line; no traceback printed anywhere."""
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("xmodal: error:")]
    assert len(lines) == 1, err[-3000:]
    if modality:
        assert f"({modality}):" in lines[0], lines[0]
    return lines[0]


# -- trees mixing the corpus with good files ---------------------------------------------


@pytest.fixture(scope="module")
def audio_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, list[str]]:
    """``train/{0,1}/``: 3 FSDD clips per digit, the audio corpus and a 1-hour file;
    ``val/{0,1}/``: one more clip each (so validation never depends on the shuffle)."""
    sys.path.insert(0, str(CORPUS))
    from make_corpus import one_hour_silence

    root = tmp_path_factory.mktemp("audio_tree")
    for digit in (0, 1):
        clips = sorted(SAMPLE.glob(f"{digit}_*.flac"))
        for split, chosen in (("train", clips[:3]), ("val", clips[3:4])):
            (root / split / str(digit)).mkdir(parents=True)
            for clip in chosen:
                shutil.copy(clip, root / split / str(digit) / clip.name)
    bad = expected("audio/", "bad")
    good = expected("audio/", "good")
    for index, entry in enumerate(bad + good):
        source = CORPUS / entry
        if source.is_file():
            shutil.copy(source, root / "train" / str(index % 2) / source.name)
    one_hour_silence(root / "train" / "0" / "one_hour_silence.flac")
    return root, 8 + len(good), bad


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, list[str]]:
    """``{train,val}/{ants,bees}/``: generated JPEGs (4 + 1 per class) plus the image corpus."""
    root = tmp_path_factory.mktemp("image_tree")
    rng = np.random.default_rng(0)
    for index, name in enumerate(("ants", "bees")):
        for split, count in (("train", 4), ("val", 1)):
            (root / split / name).mkdir(parents=True)
            for number in range(count):
                gradient = np.linspace(0, 255, 64)[None, :, None] * np.ones((48, 1, 3))
                noise = rng.normal(0, 20, (48, 64, 3)) + gradient + 40 * index
                Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8)).save(
                    root / split / name / f"{number}.jpg")
    bad = expected("images/", "bad")
    good = expected("images/", "good")
    for index, entry in enumerate(bad + good):
        shutil.copy(CORPUS / entry, root / "train" / ("ants", "bees")[index % 2] / Path(entry).name)
    return root, 10 + len(good), bad


def fit_args(runs: Path, policy: str, *data: str) -> list[str]:
    return ["fit", *data, *TINY_MODEL, *TINY_TRAINER, "--data.on_bad_file", policy,
            "--trainer.default_root_dir", str(runs), "--last_checkpoint.every_n_train_steps", "0"]


def fitted_counts(cli) -> int:  # noqa: ANN001
    return sum(len(cli.datamodule.datasets[split]) for split in ("train", "val"))


# -- audio --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audio_fit(audio_tree, tmp_path_factory):  # noqa: ANN001, ANN201
    """One skip-policy fit on the audio tree (its checkpoint feeds predict and embed)."""
    root, good, bad = audio_tree
    runs = tmp_path_factory.mktemp("audio_runs")
    cli = run_lightning(fit_args(runs, "skip", "--data.dataset", "folder", "--data.root", str(root),
                                 *AUDIO))
    return cli, runs


def test_fit_skip_audio_lists_every_bad_file_and_trains_on_every_good_one(audio_tree, audio_fit) -> None:
    root, good, bad = audio_tree
    cli, runs = audio_fit
    names_match(bad_rows(runs), bad)
    assert fitted_counts(cli) == good


def test_fit_error_audio_stops_with_one_line(audio_tree, tmp_path, capsys) -> None:
    root, _, bad = audio_tree
    code = main(fit_args(tmp_path, "error", "--data.dataset", "folder", "--data.root", str(root), *AUDIO))
    assert code == 2
    line = one_line_error(capsys.readouterr().err, "audio")
    assert any(Path(entry).name in line for entry in bad), line


def test_check_data_audio(audio_tree, tmp_path, capsys) -> None:
    root, good, bad = audio_tree
    code = main(["check-data", "--data.dataset", "folder", "--data.root", str(root), *AUDIO,
                 "--data.num_workers", "0", "--output", str(tmp_path)])
    assert code == 1
    assert usable_total(capsys.readouterr().out) == good
    names_match(bad_rows(tmp_path), bad)


def _predict_folder(tmp_path: Path, audio_tree) -> tuple[Path, int, list[str]]:  # noqa: ANN001
    root, _, bad = audio_tree
    folder = tmp_path / "to_predict"
    folder.mkdir()
    for path in sorted(root.rglob("*.*")):
        shutil.copy(path, folder / f"{path.parent.parent.name}_{path.name}")
    return folder, sum(1 for p in folder.iterdir()) - len(bad), bad


@pytest.mark.parametrize("policy", ["skip", "error"])
def test_predict_audio(policy, audio_tree, audio_fit, tmp_path, capsys) -> None:
    cli, runs = audio_fit
    folder, good, bad = _predict_folder(tmp_path, audio_tree)
    version = Path(cli.trainer.log_dir)
    out_dir = tmp_path / "predict_runs"
    args = ["predict", "--config", str(version / "config.yaml"),
            "--ckpt_path", str(next(version.rglob("last.ckpt"))),
            "--data.predict_root", str(folder), "--data.on_bad_file", policy,
            "--trainer.default_root_dir", str(out_dir), "--trainer.logger", "false"]
    code = main(args)
    err = capsys.readouterr().err
    if policy == "error":
        assert code == 2
        one_line_error(err, "audio")
        return
    assert code == 0, err[-2000:]
    names_match(bad_rows(out_dir), bad)
    with (out_dir / "predictions.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == good


@pytest.mark.parametrize("policy", ["skip", "error"])
def test_embed_audio(policy, audio_tree, audio_fit, tmp_path, capsys) -> None:
    cli, _ = audio_fit
    folder, good, bad = _predict_folder(tmp_path, audio_tree)
    checkpoint = next(Path(cli.trainer.log_dir).rglob("last.ckpt"))
    output = tmp_path / "vectors"
    code = main(["embed", "--checkpoint", str(checkpoint), "--on-bad-file", policy,
                 str(folder), "-o", str(output)])
    captured = capsys.readouterr()
    if policy == "error":
        assert code == 2
        one_line_error(captured.err, "audio")
        return
    assert code == 0, captured.err[-2000:]
    assert np.load(output.with_suffix(".npy")).shape[0] == good
    names_match(bad_rows(tmp_path), bad)


# -- images -------------------------------------------------------------------------------

IMAGE = ["--data.modality", "image", "--data.adapter", json.dumps({"image_size": 32})]


def test_fit_skip_images(image_tree, tmp_path) -> None:
    root, good, bad = image_tree
    cli = run_lightning(fit_args(tmp_path, "skip", "--data.dataset", "folder", "--data.root", str(root),
                                 *IMAGE))
    names_match(bad_rows(tmp_path), bad)
    assert fitted_counts(cli) == good


def test_fit_error_images_and_check_data(image_tree, tmp_path, capsys) -> None:
    root, good, bad = image_tree
    code = main(fit_args(tmp_path / "fit", "error", "--data.dataset", "folder", "--data.root", str(root),
                         *IMAGE))
    assert code == 2
    one_line_error(capsys.readouterr().err, "image")
    code = main(["check-data", "--data.dataset", "folder", "--data.root", str(root), *IMAGE,
                 "--data.num_workers", "0", "--output", str(tmp_path / "check")])
    assert code == 1
    assert usable_total(capsys.readouterr().out) == good
    names_match(bad_rows(tmp_path / "check"), bad)


# -- texts --------------------------------------------------------------------------------

TEXT = ["--data.dataset", "text_manifest", "--data.adapter", json.dumps({"image_size": [32, 64]})]


def _text_options(name: str, **extra: str) -> list[str]:
    return ["--data.options", json.dumps({"path": str(CORPUS / "text" / name), **extra})]


def test_fit_skip_texts(tmp_path) -> None:
    bad = expected("text/texts.csv", "bad")
    good = len(expected("text/texts.csv", "good"))
    cli = run_lightning(fit_args(tmp_path, "skip", *TEXT, *_text_options("texts.csv")))
    names_match(bad_rows(tmp_path), bad)
    assert fitted_counts(cli) == good


def test_fit_error_texts_and_check_data(tmp_path, capsys) -> None:
    code = main(fit_args(tmp_path / "fit", "error", *TEXT, *_text_options("texts.csv")))
    assert code == 2
    line = one_line_error(capsys.readouterr().err, "")
    assert "texts.csv:" in line
    code = main(["check-data", *TEXT, *_text_options("texts.csv"), "--data.num_workers", "0",
                 "--output", str(tmp_path / "check")])
    assert code == 1
    names_match(bad_rows(tmp_path / "check"), expected("text/texts.csv", "bad"))


def test_utf16_manifest_with_bom_is_read(tmp_path, capsys) -> None:
    code = main(["check-data", *TEXT, *_text_options("utf16_bom.csv"), "--data.num_workers", "0",
                 "--output", str(tmp_path)])
    assert code == 0
    assert "2 usable" in capsys.readouterr().out


# -- CSV manifests ------------------------------------------------------------------------

MANIFESTS = CORPUS / "manifests"


def test_manifest_missing_column_is_one_line(tmp_path, capsys) -> None:
    for command in (fit_args(tmp_path, "skip", "--data.manifest", str(MANIFESTS / "missing_column.csv"),
                             *AUDIO),
                    ["check-data", "--data.manifest", str(MANIFESTS / "missing_column.csv"), *AUDIO]):
        assert main(command) == 2
        line = one_line_error(capsys.readouterr().err, "")
        assert "missing_column.csv" in line and "'label'" in line


def test_dirty_manifest_skip_fit_and_check_data(tmp_path, capsys) -> None:
    bad = expected("manifests/dirty", "bad") + expected("/etc/passwd", "bad") + \
        expected("manifests/clips", "bad")
    cli = run_lightning(fit_args(tmp_path / "fit", "skip", "--data.manifest", str(MANIFESTS / "dirty.csv"),
                                 *AUDIO))
    names_match(bad_rows(tmp_path / "fit"), bad)
    assert fitted_counts(cli) == 4  # the 4 good training clips; the 2 test clips are not fitted
    assert cli.datamodule.class_names == ["0", "1"]  # the test-only label 7 made no class
    code = main(["check-data", "--data.manifest", str(MANIFESTS / "dirty.csv"), *AUDIO,
                 "--data.num_workers", "0", "--output", str(tmp_path / "check")])
    assert code == 1
    names_match(bad_rows(tmp_path / "check"), bad)


def test_dirty_manifest_error_names_the_row(tmp_path, capsys) -> None:
    code = main(fit_args(tmp_path, "error", "--data.manifest", str(MANIFESTS / "dirty.csv"), *AUDIO))
    assert code == 2
    line = one_line_error(capsys.readouterr().err, "")
    assert "dirty.csv:8" in line and "duplicate" in line


def test_check_data_reads_the_data_section_of_a_fit_config(audio_tree, tmp_path, capsys) -> None:
    root, good, bad = audio_tree
    config = tmp_path / "fit.yaml"
    config.write_text(
        "seed_everything: 3\n"
        "model:\n  class_path: xmodal.tasks.classification.ClassificationTask\n"
        "  init_args:\n    backbone: test_efficientnet\n"
        "trainer:\n  max_epochs: 1\n"
        f"data:\n  dataset: folder\n  root: {root}\n  modality: audio\n  num_workers: 0\n"
    )
    assert main(["check-data", "--config", str(config), "--output", str(tmp_path)]) == 1
    assert usable_total(capsys.readouterr().out) == good
    names_match(bad_rows(tmp_path), bad)


def test_warn_policy_skips_with_one_warning_per_file() -> None:
    from xmodal.adapters import create_adapter
    from xmodal.data.scan import BadFiles, scan
    from xmodal.data.spec import Item

    files = [CORPUS / entry for entry in expected("audio/", "bad") if (CORPUS / entry).is_file()]
    good = sorted(SAMPLE.glob("3_*.flac"))[:2]
    items = [Item(str(p), 0, str(p)) for p in files + good]
    report = BadFiles()
    with pytest.warns(UserWarning) as caught:
        result = scan(items, create_adapter({"modality": "audio"}), "warn", report, keep=False)
    assert len([w for w in caught if "skipping bad input" in str(w.message)]) == len(files)
    assert len(report.rows) == len(files) and len(result.items) == len(good)
