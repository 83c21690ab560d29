"""The xmodal command: LightningCLI parsing, a short real fit, predict, and errors."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xmodal.cli import main

SMALL = ["--data.per_class", "4", "--data.batch_size", "8", "--trainer.max_epochs", "1",
         "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--data.adapter", '{"n_mels": 32}', "--data.num_workers", "0"]


def test_print_config_resolves_modality_shortcut(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--modality", "audio", "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "modality: audio" in out and "ClassificationTask" in out and "max_epochs: 10" in out


def test_wrong_config_key_is_a_clear_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--modality", "audio", "--data.batchsize", "3"])
    assert exit_info.value.code != 0
    assert "batchsize" in capsys.readouterr().err


def test_unknown_modality_and_setting_exit_cleanly(capsys, tmp_path) -> None:
    assert main(["fit", "--modality", "smell", "--trainer.default_root_dir", str(tmp_path)]) == 2
    assert "unknown modality 'smell'" in capsys.readouterr().err
    code = main(["fit", "--modality", "audio", "--data.adapter", '{"n_mel": 3}',
                 "--trainer.default_root_dir", str(tmp_path)])
    assert code == 2
    assert "unknown audio adapter setting(s) n_mel" in capsys.readouterr().err


def test_test_report_leaves_out_metrics_the_task_does_not_log() -> None:
    from xmodal.cli import format_test_report

    assert format_test_report({"test/acc": 0.5, "test/f1": 0.25}) == "test accuracy: 0.5000  macro-F1: 0.2500"
    assert format_test_report({"test/acc": 0.75, "test/loss": 1.0}) == "test accuracy: 0.7500"  # hashing: no F1


def test_fit_then_predict_on_fsdd(tmp_path, data_root, capsys) -> None:
    runs = tmp_path / "runs"
    assert main(["fit", "--modality", "audio", "--data.root", str(data_root),
                 "--trainer.default_root_dir", str(runs), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out
    version = runs / "lightning_logs" / "version_0"
    assert (version / "checkpoints" / "last.ckpt").is_file()
    assert any(p.name.startswith("best") for p in (version / "checkpoints").iterdir())

    clips = tmp_path / "clips"
    clips.mkdir()
    for wav in sorted((data_root / "fsdd" / "recordings").glob("7_*_0.wav"))[:3]:
        (clips / wav.name).write_bytes(wav.read_bytes())
    output = tmp_path / "predictions.csv"
    assert main(["predict", "--config", str(version / "config.yaml"),
                 "--ckpt_path", str(version / "checkpoints" / "last.ckpt"),
                 "--data.predict_root", str(clips),
                 "--predictions", str(output)]) == 0
    rows = list(csv.DictReader(output.open()))
    assert [Path(r["path"]).name for r in rows] == sorted(p.name for p in clips.iterdir())
    assert all(r["label"] in [str(d) for d in range(10)] for r in rows)
    assert all(0.0 < float(r["probability"]) <= 1.0 for r in rows)


def test_fit_without_validation_trains_every_epoch_and_keeps_the_last(tmp_path, data_root, capsys,
                                                                      caplog) -> None:
    """``--data.val_fraction 0``: all of train, no validation, the CLI's early stopping
    (on a metric never logged) must not fail the fit, and the tested model is the last."""
    runs = tmp_path / "runs"  # the task's early_stopping_patience (5) is off too
    small = list(SMALL)
    small[small.index("--trainer.max_epochs") + 1] = "2"
    assert main(["fit", "--modality", "audio", "--data.root", str(data_root), "--data.val_fraction", "0",
                 "--trainer.default_root_dir", str(runs), *small]) == 0
    assert "test accuracy:" in capsys.readouterr().out
    assert "no validation data (val_fraction 0)" in caplog.text
    version = runs / "lightning_logs" / "version_0"
    header = next(csv.reader((version / "metrics.csv").open()))
    assert "train/loss" in header and not any(key.startswith("val/") for key in header)
    assert sorted(p.name for p in (version / "checkpoints").iterdir()) == ["last.ckpt"]
    last = torch.load(version / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 10  # 2 epochs of 40 clips, 8 a batch

    code = main(["fit", "--modality", "audio", "--data.val_fraction", "1",
                 "--trainer.default_root_dir", str(tmp_path / "r2")])
    assert code == 2 and "val_fraction must be at least 0 and below 1" in capsys.readouterr().err


def test_console_script_runs(tmp_path) -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "xmodal"), "--help"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "fit" in result.stdout and "plugins" in result.stdout
