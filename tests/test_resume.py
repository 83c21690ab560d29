"""Interrupted runs and determinism: SIGKILL mid-epoch, resume with --ckpt_path last.

Each fit runs ``xmodal fit`` in a subprocess on 3 FSDD clips per digit (from the
packaged sample), a tiny random-init timm model and 16 mel bands, on the CPU with
``trainer.deterministic``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "xmodal" / "sample_data" / "fsdd" / "recordings"
STEPS_PER_EPOCH = 5  # 20 training clips (3 per digit, 10 held out for validation), batch 4
ADAPTER = {"sample_rate": 8000, "n_mels": 16, "n_fft": 128, "hop_length": 64}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A class-per-folder data set: 3 packaged FSDD clips per digit."""
    root = tmp_path_factory.mktemp("digits")
    for digit in range(10):
        (root / str(digit)).mkdir()
        for path in sorted(SAMPLE.glob(f"{digit}_*.flac"))[:3]:
            shutil.copy(path, root / str(digit) / path.name)
    return root


def fit_command(data: Path, runs: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "xmodal.cli", "fit",
        "--data.dataset", "folder", "--data.root", str(data), "--data.modality", "audio",
        "--data.adapter", json.dumps(ADAPTER), "--data.num_workers", "0",
        "--data.batch_size", "4", "--data.cache", "false",
        "--model.backbone", "test_efficientnet", "--model.pretrained", "false",
        "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.deterministic", "true",
        "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(runs),
        "--trainer.default_root_dir", str(runs), "--test_after_fit", "false",
        "--last_checkpoint.every_n_train_steps", "1", "--seed_everything", "7",
        *extra,
    ]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests" / "support"), str(REPO),
                                         env.get("PYTHONPATH", "")])
    return env


def run_fit(data: Path, runs: Path, *extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run(fit_command(data, runs, *extra), env=environment(), cwd=runs.parent,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def final_metrics(runs: Path) -> dict[str, float]:
    """The last epoch's validation metrics from the newest run's metrics.csv."""
    newest = max(runs.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime_ns)
    rows = [row for row in csv.DictReader(newest.open()) if row.get("val/loss")]
    last = rows[-1]
    return {key: float(last[key]) for key in ("epoch", "val/loss", "val/acc")}


def final_weights(runs: Path) -> dict[str, torch.Tensor]:
    newest = max(runs.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime_ns)
    return torch.load(newest, map_location="cpu", weights_only=True)["state_dict"]


def test_two_runs_with_the_same_seed_give_identical_metrics(digits: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "runs", tmp_path / "b" / "runs"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    run_fit(digits, first)
    run_fit(digits, second)
    assert final_metrics(first) == final_metrics(second)
    weights_a, weights_b = final_weights(first), final_weights(second)
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def _last_step(runs: Path) -> int:
    found = list(runs.rglob("last.ckpt"))
    if not found:
        return -1
    try:
        return int(torch.load(found[0], map_location="cpu", weights_only=True)["global_step"])
    except Exception:  # being replaced right now: atomic rename means it is never torn
        return -1


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(digits: Path, tmp_path: Path,
                                                                    capsys) -> None:
    """The killed run is a real process; the reference and the resumed run run in-process
    (same code path, ``xmodal.cli.run_lightning``) to save two interpreter start-ups.

    Bit-identical, not close: the resumed run must see the same batches (the loader's
    saved position), draw the same SpecAugment masks (RNG states) and pick the same
    best epoch to roll back to (best checkpoint and score kept across the resume)."""
    from xmodal.cli import run_lightning

    reference, interrupted = tmp_path / "ref" / "runs", tmp_path / "int" / "runs"
    reference.mkdir(parents=True)
    interrupted.mkdir(parents=True)

    slow = ["--trainer.callbacks+=xmodal_test_callbacks.SlowSteps",
            "--trainer.callbacks.seconds", "1.0"]
    log = (tmp_path / "killed.log").open("w")  # a file, not a pipe nobody drains
    process = subprocess.Popen(fit_command(digits, interrupted, *slow), env=environment(),
                               cwd=interrupted.parent, stdout=log, stderr=subprocess.STDOUT)
    target = STEPS_PER_EPOCH + 2  # two steps into the second epoch

    def kill_when_due() -> None:  # a watcher thread, while this one trains the reference
        deadline = time.monotonic() + 1800
        while process.poll() is None and time.monotonic() < deadline:
            if _last_step(interrupted) >= target:
                process.send_signal(signal.SIGKILL)
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=kill_when_due, daemon=True)
    watcher.start()
    try:
        uninterrupted = run_lightning(fit_command(digits, reference)[3:])
        watcher.join(timeout=1800)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert process.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    killed_at = _last_step(interrupted)
    assert killed_at % STEPS_PER_EPOCH != 0, "the kill must land mid-epoch"

    capsys.readouterr()
    resumed = run_lightning(fit_command(digits, interrupted, "--ckpt_path", "last")[3:])
    assert "resuming from" in capsys.readouterr().err
    assert final_metrics(interrupted) == final_metrics(reference)
    weights_ref, weights_int = final_weights(reference), final_weights(interrupted)
    assert weights_ref.keys() == weights_int.keys()
    assert all(torch.equal(weights_ref[k], weights_int[k]) for k in weights_ref)
    # after fit: the same best checkpoint, and the model rolled back to the same epoch
    best_ref, best_int = (next(c for c in cli.trainer.checkpoint_callbacks if c.monitor)
                          for cli in (uninterrupted, resumed))
    assert Path(best_int.best_model_path).name == Path(best_ref.best_model_path).name
    assert torch.equal(best_int.best_model_score, best_ref.best_model_score)
    model_ref, model_int = uninterrupted.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(model_ref[k], model_int[k]) for k in model_ref)
