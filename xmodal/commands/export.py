"""``xmodal export``: a trained classifier or embedder as ONNX (or TorchScript), checked.

The graph includes the modality's device transform (audio: the mel spectrogram), so
it takes decoded inputs. With ``--dataset`` the ONNX file is run with ONNX Runtime (in
a process without PyTorch) on that split and compared with PyTorch.

Examples:
    xmodal export --checkpoint best.ckpt --format onnx -o fsdd.onnx --dataset fsdd --split test
    xmodal export --checkpoint best.ckpt --format torchscript -o fsdd.pt
"""

from __future__ import annotations

import argparse
import json

import torch

from xmodal.data.scan import BadFiles
from xmodal.export import FORMATS, ExportWrapper, export_model, onnx_parity
from xmodal.retrieval.embed import decoded_batches, load_task
from xmodal.retrieval.sources import SPLITS, from_dataset


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xmodal export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a trained xmodal checkpoint")
    parser.add_argument("--format", default="onnx", choices=FORMATS)
    parser.add_argument("-o", "--output", help="output file (default: model.onnx / model.pt)")
    parser.add_argument("--no-transform", action="store_true",
                        help="export from the image batch (B, 3, H, W), without the device transform")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--sample", help="an input file to trace with (default: the adapter's fixed size)")
    parser.add_argument("--dataset", help="check ONNX Runtime against PyTorch on this data set")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--root", help="data root for --dataset")
    parser.add_argument("--limit", type=int, default=0, help="check at most this many inputs (0: all)")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest accepted |difference|")
    args = parser.parse_args(argv)
    task = load_task(args.checkpoint)
    output = args.output or ("model.onnx" if args.format == "onnx" else "model.pt")
    sample = task.adapter.decode(args.sample) if args.sample else None
    info = export_model(task, output, args.format, sample=sample,
                        include_transform=not args.no_transform, opset=args.opset)
    print(f"exported {info['task']} ({info['input']} input {info['input_shape']}, "
          f"{info['output_dim']} outputs) -> {output}")
    if args.dataset and args.format == "onnx":
        sources = from_dataset(args.dataset, args.split, task.adapter.name, root=args.root)
        items = sources.items[: args.limit] if args.limit else sources.items
        batches = [b for _, b in decoded_batches(items, task.adapter, 64, 0, "skip", BadFiles())]
        if args.no_transform:
            with torch.no_grad():
                batches = [task.device_transform(b) for b in batches]
        reference = ExportWrapper(task, include_transform=not args.no_transform)
        result = onnx_parity(output, reference, batches)
        ok = result["max_abs_diff"] <= args.tolerance
        print(json.dumps({**result, "tolerance": args.tolerance, "ok": ok}))
        return 0 if ok else 1
    return 0
