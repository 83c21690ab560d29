"""``xmodal preview``: write what the network sees for one input as a PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xmodal import plugins
from xmodal.adapters import create_adapter
from xmodal.errors import ConfigError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xmodal preview", description=__doc__)
    parser.add_argument("source", nargs="?", help="a file (audio, image) or a text")
    parser.add_argument("--modality", required=True, choices=plugins.modalities().names())
    parser.add_argument("--adapter", default="{}", help="adapter settings as JSON")
    parser.add_argument("--dataset", help="preview items of this data set instead")
    parser.add_argument("--root", help="data root for --dataset")
    parser.add_argument("--count", type=int, default=4, help="items to preview from --dataset")
    parser.add_argument("-o", "--output", default="preview.png",
                        help="PNG path (with --dataset: a folder)")
    args = parser.parse_args(argv)
    try:
        settings = json.loads(args.adapter)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--adapter is not JSON: {exc}") from None
    if args.dataset:
        from xmodal.data import XModalDataModule

        data = XModalDataModule(dataset=args.dataset, modality=args.modality,
                                adapter=settings, root=args.root)
        spec = data.prepare_spec()
        folder = Path(args.output if args.output != "preview.png" else "preview")
        chosen = (spec.test or spec.train)[: args.count]
        stems = [Path(str(item.name)).stem for item in chosen]
        unique = len(set(stems)) == len(stems)  # rows of one manifest share a stem
        for number, (item, stem) in enumerate(zip(chosen, stems)):
            name = stem if unique else f"{stem}-{number:03d}"
            out = data.adapter.preview(item.source, folder / f"{name}.png")
            print(out)
        return 0
    if args.source is None:
        parser.error("give an input or --dataset")
    adapter = create_adapter({"modality": args.modality, **settings})
    print(adapter.preview(args.source, args.output))
    return 0
