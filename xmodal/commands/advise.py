"""``xmodal advise``: which fine-tuning strategy fits this data set, and why."""

from __future__ import annotations

import argparse
import json

from xmodal import backbones, plugins
from xmodal.errors import ConfigError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xmodal advise", description=__doc__)
    parser.add_argument("--dataset", help="registered data set, folder or csv (default: the modality's)")
    parser.add_argument("--modality", choices=plugins.modalities().names())
    parser.add_argument("--root", help="data root (default $XMODAL_DATA)")
    parser.add_argument("--manifest", help="CSV manifest (path,label[,split])")
    parser.add_argument("--adapter", default="{}", help="adapter settings as JSON")
    parser.add_argument("--per-class", type=int, help="use at most this many training items per class")
    parser.add_argument("--backbone", default=backbones.DEFAULT_BACKBONE, help="timm model name")
    parser.add_argument("--weights", help="local weights file for the backbone")
    parser.add_argument("--sample", type=int, default=20, help="examples per class for the linear probe")
    parser.add_argument("--image-size", type=int, help="probe at this square input size (faster)")
    parser.add_argument("--compare-scratch", action="store_true",
                        help="also run short scratch vs pretrained fits and warn on negative transfer")
    parser.add_argument("--scratch-epochs", type=int, default=3, help="epochs of each short fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    try:
        settings = json.loads(args.adapter)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--adapter is not JSON: {exc}") from None
    from xmodal.advise import advise
    from xmodal.data import XModalDataModule

    data = XModalDataModule(dataset=args.dataset, modality=args.modality, adapter=settings,
                            root=args.root, manifest=args.manifest, per_class=args.per_class,
                            seed=args.seed)
    advice = advise(data, backbone=args.backbone, weights=args.weights, sample_per_class=args.sample,
                    image_size=args.image_size, seed=args.seed, scratch_check=args.compare_scratch,
                    scratch_epochs=args.scratch_epochs)
    if args.json:
        print(json.dumps(advice.to_dict(), indent=2, default=str))
    else:
        print(advice.report())
    return 0
