"""ONNX export check: FSDD and hymenoptera classifiers, ONNX Runtime vs PyTorch on the test sets.

Each classifier is the full pipeline (adapter device transform -> EfficientNet-Lite0 ->
linear head) exported with ``xmodal.export.export_model`` (``torch.export``-based
exporter, opset 18; the audio mel spectrogram is inside the graph). The ``.onnx`` file
then runs in a separate Python process that imports only ``onnxruntime`` and
``numpy`` (it asserts ``torch`` was never imported), on every item of the test split
(FSDD: official test split; hymenoptera: val), and its logits are compared with
PyTorch's.

By default the classifiers are linear probes (the backbone frozen, the head fitted
on pooled features of the training split, cached by ``bench/retrieval.py``) so the
bench runs on a CPU; ``--checkpoint-fsdd`` / ``--checkpoint-hymenoptera`` export a
checkpoint from ``xmodal fit`` instead.

Run: ``XMODAL_DATA=../shared/data nice -n 10 python bench/onnx_parity.py``
Writes ``bench/results/onnx_parity.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval import DATASETS, features  # noqa: E402

from xmodal.data.scan import BadFiles  # noqa: E402
from xmodal.export import ExportWrapper, export_model, onnx_parity  # noqa: E402
from xmodal.retrieval.embed import decoded_batches, load_task  # noqa: E402
from xmodal.retrieval.sources import from_dataset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "onnx_parity.json"
TOLERANCE = 1e-3


def linear_probe(dataset: str, epochs: int = 200) -> torch.nn.Module:
    """A ClassificationTask whose head is fitted on cached pooled features (full batch)."""
    from xmodal.tasks.classification import ClassificationTask

    train_split, _ = DATASETS[dataset]
    sources = from_dataset(dataset, train_split)
    x, y, _ = features(dataset, train_split, None, None)
    task = ClassificationTask(freeze="all", class_names=sources.class_names,
                              input_adapter={**sources.adapter_defaults, "modality": sources.modality})
    head = task.head[-1]
    optimiser = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    for _ in range(epochs):
        loss = torch.nn.functional.cross_entropy(head(xt), yt)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return task.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--checkpoint-fsdd")
    parser.add_argument("--checkpoint-hymenoptera")
    parser.add_argument("--output-dir", default=None, help="keep the .onnx files here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    results: dict = {"tolerance": TOLERANCE}
    if RESULTS.is_file():  # keep entries of data sets not run this time
        results = {**json.loads(RESULTS.read_text()), **results}
    out_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="xmodal-onnx-"))
    for dataset in args.datasets:
        checkpoint = getattr(args, f"checkpoint_{dataset}", None)
        task = load_task(checkpoint) if checkpoint else linear_probe(dataset)
        _, eval_split = DATASETS[dataset]
        sources = from_dataset(dataset, eval_split)
        batches, labels = [], []
        for indices, batch in decoded_batches(sources.items, task.adapter, 32, 0, "skip", BadFiles()):
            batches.append(batch)
            labels.extend(sources.items[i].label for i in indices)
        path = out_dir / f"{dataset}.onnx"
        start = time.perf_counter()
        info = export_model(task, path, "onnx", sample=batches[0][0])
        export_s = time.perf_counter() - start
        parity = onnx_parity(path, ExportWrapper(task), batches, return_outputs=True)
        labels_np = np.array(labels)
        entry = {
            "classifier": checkpoint or "linear probe on frozen pretrained features",
            "max_abs_diff_logits": parity["max_abs_diff"],
            "ok": parity["max_abs_diff"] <= TOLERANCE,
            "items": parity["items"], "split": eval_split,
            "onnx_accuracy": float((parity["onnx"].argmax(1) == labels_np).mean()),
            "torch_accuracy": float((parity["torch"].argmax(1) == labels_np).mean()),
            "predictions_equal": bool((parity["onnx"].argmax(1) == parity["torch"].argmax(1)).all()),
            "onnx_runs_without_torch": True,  # the runner process asserts it
            "input": info["input"], "input_shape": info["input_shape"], "opset": info["opset"],
            "export_s": round(export_s, 1), "onnx_mb": round(path.stat().st_size / 2**20, 2),
        }
        results[dataset] = entry
        print(f"{dataset:<12} max|Δ logits| {entry['max_abs_diff_logits']:.2e}  ok={entry['ok']}  "
              f"acc onnx {entry['onnx_accuracy']:.4f} / torch {entry['torch_accuracy']:.4f}  "
              f"({entry['items']} {eval_split} items, {entry['input']} input)")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
