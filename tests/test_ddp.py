"""Two-process DDP on CPU (gloo) from the command line: the same validation accuracy
as one process, metrics synchronised exactly across ranks, predictions gathered into
one CSV in data set order."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl

from xmodal.data.datamodule import XModalDataModule
from xmodal.data.paths import PACKAGED
from xmodal.tasks.classification import ClassificationTask

XMODAL = str(Path(sys.executable).parent / "xmodal")
DATA = ["--data.per_class", "4", "--data.val_fraction", "0.05", "--data.num_workers", "0",
        "--data.seed", "0"]
MODEL = ["--model.freeze", "all", "--model.lr", "0.01", "--model.early_stopping_patience", "null",
         "--model.restore_best", "false"]
EPOCHS = 3


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XMODAL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    env.pop("XMODAL_DATA", None)  # the packaged FSDD sample: same data everywhere
    done = subprocess.run([XMODAL, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _val_acc(metrics_csv: Path) -> float:
    with metrics_csv.open() as handle:
        values = [row["val/acc"] for row in csv.DictReader(handle) if row.get("val/acc")]
    return float(values[-1])


def _single_process(tmp_path: Path, ckpt: Path | None = None) -> tuple[float, int]:
    """Validation accuracy in this process: after training, or of a checkpoint."""
    os.environ["XMODAL_CACHE"] = str(tmp_path / "cache")
    pl.seed_everything(0)
    dm = XModalDataModule(modality="audio", per_class=4, val_fraction=0.05, num_workers=0,
                          batch_size=16, seed=0)
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    if ckpt is not None:
        task = ClassificationTask.load_from_checkpoint(ckpt)
        result = trainer.validate(task, dm, verbose=False)
    else:
        task = ClassificationTask(freeze="all", lr=0.01, early_stopping_patience=None,
                                  restore_best=False)
        trainer.fit(task, dm)
        result = trainer.validate(task, dm, verbose=False)
    return result[0]["val/acc"], len(dm.datasets["val"])


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XMODAL_DATA", raising=False)
    monkeypatch.setenv("XMODAL_CACHE", str(tmp_path / "cache"))
    _run(["fit", "--modality", "audio", *DATA, *MODEL, "--data.batch_size", "8",
          "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
          "--trainer.max_epochs", str(EPOCHS), "--trainer.enable_progress_bar", "false",
          "--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
          "--trainer.logger.save_dir", str(tmp_path / "logs"),
          "--trainer.default_root_dir", str(tmp_path / "runs"), "--test_after_fit", "false"], tmp_path)
    ddp_acc = _val_acc(next((tmp_path / "logs").rglob("metrics.csv")))
    last = next(tmp_path.rglob("last.ckpt"))

    # metric sync: the DDP-logged accuracy equals this checkpoint validated on one process
    # (up to one duplicated sample, which DistributedSampler pads an odd split with)
    same_weights_acc, val_size = _single_process(tmp_path, ckpt=last)
    assert abs(ddp_acc - same_weights_acc) <= 1.0 / val_size + 1e-6

    # training: one process, same effective batch (16 = 2 x 8), same seed: within noise
    single_acc, _ = _single_process(tmp_path)
    assert abs(ddp_acc - single_acc) <= 0.15, (ddp_acc, single_acc)

    # sharded prediction: both ranks' rows, once each, in data set order, in one CSV
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    names = sorted(p.name for p in (PACKAGED / "fsdd" / "recordings").iterdir())[:5]
    for name in names:
        (inputs / name).write_bytes((PACKAGED / "fsdd" / "recordings" / name).read_bytes())
    output = tmp_path / "predictions.csv"
    _run(["predict", "--ckpt_path", str(last), "--modality", "audio", "--data.predict_root", str(inputs),
          "--data.num_workers", "0", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
          "--trainer.strategy", "ddp", "--trainer.enable_progress_bar", "false",
          "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "pred"),
          "--predictions", str(output)], tmp_path)
    with output.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["path"]).name for r in rows] == names
    assert not list(tmp_path.rglob("*.rank*.csv"))
