"""Training throughput: a raw hand-written loop, the naive librosa pipeline and ``xmodal fit``.

One process, one table: train samples/s for freeze levels none / half / all of

- ``raw``: a hand-written loop, data already in memory on the device, torchaudio
  log-mel on the device, timm backbone + linear head (bf16 autocast and channels_last
  on GPU);
- ``naive``: librosa log-mel in ``Dataset.__getitem__``, a standard DataLoader, the
  same model and optimiser;
- ``xmodal``: ``Trainer.fit`` on :class:`~xmodal.data.datamodule.XModalDataModule` with
  :class:`~xmodal.tasks.classification.ClassificationTask`, measured in epoch 2 (decode
  cache warm; the frozen-prefix feature cache on by default where it applies).

Input: 5 s clips at 16 kHz written as WAV files in a temporary folder (synthetic tones
in noise, 10 classes), 128 mels, hop 160, n_fft 400. Batch 128 on GPU, smaller on CPU.
It also measures the frozen-prefix cache's epoch speed-up at "half" frozen (the first
ceil(stages / 2) stages) and the peak RSS of the default FSDD fit
(``xmodal fit --modality audio``, with ``XMODAL_DATA`` when set), and writes
``bench/results/throughput.json``.

Usage::

    nice -n 10 .venv/bin/python bench/throughput.py              # CPU: small and short
    .venv/bin/python bench/throughput.py --batch 128 --batches 20  # GPU defaults
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import soundfile as sf
import torch
import torchaudio
from torch import nn

from xmodal import backbones

SAMPLE_RATE, SECONDS, N_MELS, HOP, N_FFT, CLASSES = 16000, 5.0, 128, 160, 400, 10
ADAPTER = {"sample_rate": SAMPLE_RATE, "duration": SECONDS, "n_mels": N_MELS, "hop_length": HOP,
           "n_fft": N_FFT, "spec_augment": False, "time_shift": 0.0}
RESULTS = Path(__file__).resolve().parent / "results" / "throughput.json"


# -- data ------------------------------------------------------------------------------


def write_clips(folder: Path, count: int, seed: int = 0) -> list[tuple[Path, int]]:
    """``count`` 5 s WAV clips in ``folder/<class>/``: a class-specific tone in noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SAMPLE_RATE * SECONDS)) / SAMPLE_RATE
    clips = []
    for index in range(count):
        label = index % CLASSES
        tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * label) * t + rng.uniform(0, np.pi))
        signal = (tone + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)
        path = folder / f"class{label}" / f"clip{index:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, signal, SAMPLE_RATE, subtype="PCM_16")
        clips.append((path, label))
    return clips


class NaiveDataset(torch.utils.data.Dataset):
    """What people write first: librosa load + log-mel for every sample, every epoch."""

    def __init__(self, clips: list[tuple[Path, int]]) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        import librosa

        path, label = self.clips[index]
        signal, _ = librosa.load(path, sr=SAMPLE_RATE, duration=SECONDS)
        signal = librosa.util.fix_length(signal, size=int(SAMPLE_RATE * SECONDS))
        mel = librosa.feature.melspectrogram(y=signal, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP,
                                             n_mels=N_MELS)
        logmel = librosa.power_to_db(mel)
        logmel = (logmel - logmel.mean()) / (logmel.std() + 1e-5)
        image = np.repeat(logmel[None], 3, axis=0).astype(np.float32)
        return torch.from_numpy(image), label


# -- the hand-written model --------------------------------------------------------------


class LogMel(nn.Module):
    """torchaudio log-mel on the device, per-clip normalised, 3 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP,
                                                        n_mels=N_MELS)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        spec = torch.log(self.mel(waves.float()) + 1e-6)
        spec = (spec - spec.mean(dim=(1, 2), keepdim=True)) / (spec.std(dim=(1, 2), keepdim=True) + 1e-5)
        return spec.unsqueeze(1).expand(-1, 3, -1, -1)


def hand_model(freeze: int | str, device: torch.device) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    backbone = backbones.create_backbone(backbones.DEFAULT_BACKBONE, pretrained=True)
    backbones.freeze_stages(backbone, freeze)
    backbone.train()
    backbones.set_frozen_bn_eval(backbone)
    head = nn.Linear(backbone.num_features, CLASSES)
    backbone.to(device)
    head.to(device)
    if device.type == "cuda":
        backbone.to(memory_format=torch.channels_last)
    params = [p for p in [*backbone.parameters(), *head.parameters()] if p.requires_grad]
    return backbone, head, torch.optim.AdamW(params, lr=1e-3)


def train_loop(batches: Any, backbone: nn.Module, head: nn.Module, optimizer: torch.optim.Optimizer,
               device: torch.device, warmup: int, measured: int, to_image: nn.Module | None) -> dict[str, float]:
    """Samples/s over ``measured`` steps after ``warmup`` steps (data loading included), in
    wall time and per CPU second of this process (robust on a shared, loaded machine)."""
    use_bf16 = device.type == "cuda"
    loss_fn = nn.CrossEntropyLoss()
    start, seen = None, 0
    for step, (inputs, labels) in enumerate(batches):
        if step == warmup:
            _sync(device)
            start, cpu_start, seen = time.perf_counter(), time.process_time(), 0
        if step >= warmup + measured:
            break
        inputs = inputs.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            images = to_image(inputs) if to_image is not None else inputs
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(head(backbone(images)).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += labels.shape[0]
    _sync(device)
    return {"samples_per_s": seen / (time.perf_counter() - start),
            "samples_per_cpu_s": round(seen / max(1e-9, time.process_time() - cpu_start), 3)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_raw(clips: list[tuple[Path, int]], freeze: int | str, device: torch.device, batch: int,
            warmup: int, measured: int) -> dict[str, float]:
    waves = torch.stack([torch.from_numpy(sf.read(p, dtype="float32")[0]) for p, _ in clips]).to(device)
    labels = torch.tensor([label for _, label in clips], device=device)
    backbone, head, optimizer = hand_model(freeze, device)
    to_image = LogMel().to(device)
    generator = torch.Generator().manual_seed(0)

    def batches() -> Any:
        while True:
            order = torch.randperm(len(clips), generator=generator)
            for start in range(0, len(order) - batch + 1, batch):
                index = order[start:start + batch].to(device)
                yield waves[index], labels[index]

    return train_loop(batches(), backbone, head, optimizer, device, warmup, measured, to_image)


def run_naive(clips: list[tuple[Path, int]], freeze: int | str, device: torch.device, batch: int,
              warmup: int, measured: int, workers: int) -> dict[str, float]:
    loader = torch.utils.data.DataLoader(NaiveDataset(clips), batch_size=batch, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         pin_memory=device.type == "cuda")
    backbone, head, optimizer = hand_model(freeze, device)
    return train_loop(iter(loader), backbone, head, optimizer, device, warmup, measured, None)


# -- xmodal ------------------------------------------------------------------------------


class EpochTimer(pl.Callback):
    """Batch-end times of the last training epoch."""

    def __init__(self) -> None:
        self.marks: list[float] = []
        self.cpu: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync(pl_module.device)
        self.marks = [time.perf_counter()]
        self.cpu = [time.process_time()]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        _sync(pl_module.device)
        self.marks.append(time.perf_counter())
        self.cpu.append(time.process_time())


def run_xmodal(root: Path, cache: Path, freeze: int | str, device: torch.device, batch: int,
               warmup: int, measured: int, feature_cache: bool | str = "auto") -> dict[str, float]:
    """Epoch 2 of ``Trainer.fit``: samples/s after ``warmup`` batches, and the epoch time."""
    from xmodal.data.datamodule import XModalDataModule
    from xmodal.feature_cache import FeatureCache
    from xmodal.tasks.classification import ClassificationTask

    pl.seed_everything(0, verbose=False)
    dm = XModalDataModule(dataset="folder", root=str(root), modality="audio", adapter=dict(ADAPTER),
                          batch_size=batch, val_fraction=0.0, cache_dir=str(cache))
    cuda = device.type == "cuda"
    task = ClassificationTask(freeze=freeze, lr=1e-3, feature_cache=feature_cache, channels_last=cuda,
                              early_stopping_patience=None, restore_best=False)
    timer = EpochTimer()
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=warmup + measured, limit_val_batches=0,
                         num_sanity_val_steps=0, accelerator="gpu" if cuda else "cpu", devices=1,
                         precision="bf16-mixed" if cuda else "32-true", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer])
    trainer.fit(task, dm)
    marks = timer.marks
    rate = measured * batch / (marks[warmup + measured] - marks[warmup])
    cpu_rate = measured * batch / max(1e-9, timer.cpu[warmup + measured] - timer.cpu[warmup])
    cache_cb = next((c for c in trainer.callbacks if isinstance(c, FeatureCache)), None)
    return {"samples_per_s": rate, "samples_per_cpu_s": round(cpu_rate, 3), "epoch_s": marks[-1] - marks[0],
            "feature_cache_build_s": cache_cb.seconds if cache_cb is not None else 0.0,
            "feature_cache_used": bool(cache_cb is not None and cache_cb.seconds > 0)}


# -- peak memory of the default fit ---------------------------------------------------------


def _tree_rss_kb(pid: int) -> int:
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def default_fit_peak_rss(device: torch.device, limit_batches: int | None) -> dict[str, Any]:
    """Peak RSS (process tree, MB) of ``xmodal fit --modality audio`` in a fresh cache."""
    exe = str(Path(sys.executable).parent / "xmodal")
    args = [exe, "fit", "--modality", "audio", "--trainer.enable_progress_bar", "false",
            "--test_after_fit", "false"]
    if limit_batches:
        args += ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(limit_batches),
                 "--trainer.limit_val_batches", str(limit_batches)]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "XMODAL_CACHE": str(Path(tmp) / "cache")}
        args += ["--trainer.default_root_dir", str(Path(tmp) / "runs")]
        start = time.perf_counter()
        process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        peak = [0]

        def poll() -> None:
            while process.poll() is None:
                peak[0] = max(peak[0], _tree_rss_kb(process.pid))
                time.sleep(0.2)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        _, err = process.communicate()
        watcher.join()
        if process.returncode != 0:
            raise RuntimeError(f"default fit failed: {err[-2000:]}")
    return {"peak_rss_mb": peak[0] / 1024, "command": " ".join(args[1:]), "seconds": time.perf_counter() - start,
            "data": os.environ.get("XMODAL_DATA") or "packaged FSDD sample"}


# -- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch", type=int, default=None, help="batch size (GPU 128, CPU 8)")
    parser.add_argument("--batches", type=int, default=None, help="measured batches (GPU 20, CPU 2)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up batches (GPU 5, CPU 1)")
    parser.add_argument("--freeze", nargs="*", default=["none", "half", "all"])
    parser.add_argument("--pipelines", nargs="*", default=["raw", "naive", "xmodal"])
    parser.add_argument("--naive-workers", type=int, default=0,
                        help="DataLoader workers of the naive pipeline (default 0, DataLoader's own "
                             "default; -1: xmodal's default)")
    parser.add_argument("--rss-batches", type=int, default=5,
                        help="limit the default FSDD fit to this many batches (0: the full default fit)")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)

    from xmodal.data.datamodule import default_num_workers

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    gpu = device.type == "cuda"
    batch = args.batch or (128 if gpu else 8)
    measured = args.batches or (20 if gpu else 2)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    workers = default_num_workers() if args.naive_workers < 0 else args.naive_workers
    device_name = torch.cuda.get_device_name(device) if gpu else f"cpu ({os.cpu_count()} cores)"
    stages = backbones.num_stages(backbones.create_backbone(pretrained=False))
    levels = {"none": "none", "half": math.ceil(stages / 2), "all": "all"}

    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    out = Path(args.output)
    header = {"device": device_name, "batch_size": batch, "measured_batches": measured,
              "warmup_batches": warmup, "input": {"seconds": SECONDS, **ADAPTER},
              "backbone": backbones.DEFAULT_BACKBONE, "naive_num_workers": workers}

    def save(peak: float | None, complete: bool) -> dict[str, Any]:
        """Written after every measurement, so a run cut short keeps what it measured."""
        result = {**header, "rows": rows, "peak_rss_mb": peak, **extra, "complete": complete,
                  "machine_load_1min": os.getloadavg()[0]}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        return result

    # the CPU acceptance questions first (xmodal vs naive, the feature cache at half),
    # then the remaining rows, then the default fit's memory
    order = [(lv, pl_) for lv in ("half", "all", "none") for pl_ in ("naive", "xmodal")] + \
            [(lv, "raw") for lv in ("half", "all", "none")]
    todo = [(lv, p) for lv, p in order if lv in args.freeze and p in args.pipelines]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "clips"
        clips = write_clips(root, batch * (warmup + measured))  # one epoch = the measured batches
        cache = Path(tmp) / "cache"
        for level, pipeline in todo:
            freeze = levels[level]
            started = time.perf_counter()
            info: dict[str, Any] = {}
            if pipeline == "raw":
                info = run_raw(clips, freeze, device, batch, warmup, measured)
            elif pipeline == "naive":
                info = run_naive(clips, freeze, device, batch, warmup, measured, workers)
            else:
                info = run_xmodal(root, cache, freeze, device, batch, warmup, measured)
            rate = info.pop("samples_per_s")
            rows.append({"device": device_name, "freeze": level, "freeze_stages": freeze,
                         "pipeline": pipeline, "samples_per_s": round(rate, 3), **info})
            print(f"{level:>5} {pipeline:>7}: {rate:9.3f} samples/s  ({time.perf_counter() - started:.0f} s)",
                  flush=True)
            save(None, False)
            if level == "half" and pipeline == "xmodal":
                without = run_xmodal(root, cache, levels["half"], device, batch, warmup, measured,
                                     feature_cache=False)
                with_row = rows[-1]
                extra["feature_cache_half"] = {
                    "freeze_stages": levels["half"],
                    "samples_per_s_with": with_row["samples_per_s"],
                    "samples_per_s_without": round(without["samples_per_s"], 3),
                    "speedup": round(with_row["samples_per_s"] / without["samples_per_s"], 2),
                    "speedup_cpu_time": round(with_row["samples_per_cpu_s"] / without["samples_per_cpu_s"], 2),
                    "epoch_s_with": round(with_row["epoch_s"], 3),
                    "epoch_s_without": round(without["epoch_s"], 3),
                    "build_s_once": round(with_row["feature_cache_build_s"], 2),
                }
                print(f"feature cache at half: {extra['feature_cache_half']['speedup']:.2f}x", flush=True)
                save(None, False)
    peak = None
    if not args.skip_rss:
        rss = default_fit_peak_rss(device, args.rss_batches or None)
        peak = round(rss["peak_rss_mb"], 1)
        extra["default_fit"] = rss

    print_table(rows, extra, peak)
    result = save(peak, True)
    print(f"written {out}")
    return result


def print_table(rows: list[dict[str, Any]], extra: dict[str, Any], peak: float | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"train samples/s on {rows[0]['device'] if rows else '?'}")
    for column in ("freeze", "raw", "naive", "xmodal", "xmodal / raw", "xmodal / naive"):
        table.add_column(column, justify="right")
    for level in dict.fromkeys(r["freeze"] for r in rows):
        rate = {r["pipeline"]: r["samples_per_s"] for r in rows if r["freeze"] == level}

        def ratio(a: str, b: str) -> str:
            return f"{rate[a] / rate[b]:.2f}x" if a in rate and b in rate else "-"

        table.add_row(level, *(f"{rate[p]:.1f}" if p in rate else "-" for p in ("raw", "naive", "xmodal")),
                      ratio("xmodal", "raw"), ratio("xmodal", "naive"))
    console = Console()
    console.print(table)
    if "feature_cache_half" in extra:
        fc = extra["feature_cache_half"]
        console.print(f"frozen-prefix feature cache at half ({fc['freeze_stages']} stages frozen): "
                      f"{fc['speedup']:.2f}x samples/s ({fc['samples_per_s_without']:.1f} -> "
                      f"{fc['samples_per_s_with']:.1f}); built once in {fc['build_s_once']:.1f} s")
    if peak is not None:
        console.print(f"peak RSS of the default FSDD fit ({extra['default_fit']['data']}): {peak:.0f} MB")


if __name__ == "__main__":
    main()
