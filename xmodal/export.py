"""Export a trained model (adapter device transform + backbone + head) to ONNX or TorchScript.

The exported graph takes what the adapter's ``decode`` returns, batched (for audio:
``(B, samples)`` waveforms), so a deployment needs only ONNX Runtime and the decoder.
The audio spectrogram (``torch.stft``) exports with the ``torch.export``-based
exporter (``dynamo=True``, opset 18, needs ``onnxscript``); when a modality's
transform does not export, ``include_transform=False`` exports from the image batch
``(B, 3, H, W)`` instead and records that in the sidecar JSON.

:func:`onnx_parity` runs the file in a separate Python process that imports only
``onnxruntime`` and ``numpy``, proving the file stands alone, and compares its
outputs with PyTorch's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from xmodal.errors import ConfigError

FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 18

#: Runs an ONNX model with onnxruntime + numpy only (no torch, no xmodal).
_ORT_RUNNER = r"""
import sys
import numpy as np
import onnxruntime as ort
model, inputs, outputs = sys.argv[1:4]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
with np.load(inputs) as data:
    results = [session.run(None, {name: data[key]})[0] for key in sorted(data.files, key=int)]
np.savez(outputs, *results)
assert "torch" not in sys.modules, "onnxruntime run imported torch"
print("onnxruntime", ort.__version__, "ok")
"""


class ExportWrapper(nn.Module):
    """``transform -> backbone -> head`` in eval mode, as one exportable module."""

    def __init__(self, task: nn.Module, include_transform: bool = True) -> None:
        super().__init__()
        self.transform = task.device_transform if include_transform else None
        self.backbone = task.backbone
        self.head = task.head

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        images = self.transform(inputs) if self.transform is not None else inputs
        return self.head(self.backbone(images))


def example_batch(task: Any, sample: torch.Tensor | None = None, batch: int = 2) -> torch.Tensor:
    """A decoded batch to trace with: ``sample`` repeated, or zeros of the adapter's size."""
    if sample is None:
        samples = getattr(task.adapter, "num_samples", None)
        if samples is None:
            raise ConfigError(f"the {task.adapter.name} adapter's input size is not fixed: pass a "
                              "sample input (--sample FILE or --dataset)")
        sample = torch.zeros(int(samples))
    return torch.stack([torch.as_tensor(sample).float()] * batch)


def export_model(
    task: Any,
    path: str | Path,
    fmt: str = "onnx",
    sample: torch.Tensor | None = None,
    include_transform: bool = True,
    opset: int = DEFAULT_OPSET,
) -> dict[str, Any]:
    """Export ``task`` (a trained :class:`~xmodal.tasks.BaseTask`) and write a sidecar JSON.

    Returns:
        The sidecar's contents: format, file, input kind and shape, outputs, classes,
        adapter settings, whether the device transform is inside the graph.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if getattr(task, "sequence_pool", None) is not None:
        raise ConfigError("export: the text layout glyphs draws glyphs in Python inside the "
                          "model and cannot be traced; export a lines or grid model")
    task = task.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = example_batch(task, sample)
    if not include_transform:
        with torch.no_grad():
            example = task.device_transform(example)
    wrapper = ExportWrapper(task, include_transform).eval()
    if fmt == "onnx":
        _export_onnx(wrapper, example, path, opset)
    else:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapper, example)
        traced.save(str(path))
    with torch.no_grad():
        out_dim = int(wrapper(example).shape[-1])
    info = {
        "format": fmt, "file": path.name,
        "input": "decoded" if include_transform else "image",
        "input_shape": ["batch", *example.shape[1:]],
        "output_dim": out_dim,
        "task": type(task).__name__,
        "class_names": list(task.hparams.class_names or []),
        "adapter": task.adapter.config(),
        "backbone": task.hparams.backbone,
        "opset": opset if fmt == "onnx" else None,
    }
    path.with_suffix(".json").write_text(json.dumps(info, indent=2, default=str))
    return info


def _export_onnx(wrapper: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs `pip install onnx onnxruntime onnxscript` "
                          "(or `pip install xmodal[export]`)") from None
    batch = torch.export.Dim("batch", min=1, max=4096)
    dims = {0: batch}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapper, (example,), dynamo=True, opset_version=opset,
            input_names=["input"], output_names=["output"],
            dynamic_shapes=(dims,), verbose=False,
        )
    program.save(str(path))


def onnx_parity(path: str | Path, reference: nn.Module, batches: Iterable[torch.Tensor],
                python: str | None = None, return_outputs: bool = False) -> dict[str, Any]:
    """Max |ONNX Runtime - PyTorch| over ``batches``, with ONNX Runtime in its own process.

    Returns:
        ``{"max_abs_diff": float, "items": int, "batches": int}``, plus ``onnx`` and
        ``torch`` (the concatenated outputs) with ``return_outputs``.
    """
    reference = reference.eval()
    batches = [torch.as_tensor(b).float() for b in batches]
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inputs, **{str(i): b.numpy() for i, b in enumerate(batches)})
        run = subprocess.run([python or sys.executable, "-c", _ORT_RUNNER, str(path), str(inputs), str(outputs)],
                             capture_output=True, text=True)
        if run.returncode:
            raise ConfigError(f"onnxruntime could not run {path}: {run.stderr.strip().splitlines()[-1:]}")
        with np.load(outputs) as data:
            onnx_out = [data[f"arr_{i}"] for i in range(len(batches))]
    diff = 0.0
    expected_all = []
    with torch.no_grad():
        for batch, got in zip(batches, onnx_out):
            expected = reference(batch).float().numpy()
            expected_all.append(expected)
            diff = max(diff, float(np.abs(expected - got).max()))
    result: dict[str, Any] = {"max_abs_diff": diff, "items": int(sum(len(b) for b in batches)),
                              "batches": len(batches)}
    if return_outputs:
        result["onnx"] = np.concatenate(onnx_out)
        result["torch"] = np.concatenate(expected_all)
    return result
