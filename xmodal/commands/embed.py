"""``xmodal embed``: one vector per input, written as ``.npy`` + a CSV manifest.

Examples:
    xmodal embed --modality audio --dataset fsdd --split test -o fsdd_test
    xmodal embed --checkpoint best.ckpt --layer stage4 clips/ -o clips
"""

from __future__ import annotations

from xmodal.commands.retrieval_args import (input_command_parser, model_adapter, report_skipped,
                                            sources_from_args)
from xmodal.data.scan import BadFiles
from xmodal.retrieval.embed import build_embed_model, embed_items, write_embeddings


def main(argv: list[str]) -> int:
    parser = input_command_parser("xmodal embed", __doc__)
    parser.add_argument("-o", "--output", default="embeddings",
                        help="output path without suffix: writes OUTPUT.npy, OUTPUT.csv, OUTPUT.json")
    args = parser.parse_args(argv)
    sources = sources_from_args(args)
    model = build_embed_model(args.checkpoint, model_adapter(args, sources), args.backbone,
                              layer=args.layer, pool=args.pool)
    report = BadFiles()
    vectors, items = embed_items(model, sources.items, args.batch_size, args.num_workers,
                                 args.on_bad_file, report)
    class_names = sources.class_names or model.info.get("class_names") or None
    paths = write_embeddings(args.output, vectors, items, class_names if sources.class_names else None,
                             sources.split, {**model.info, "adapter": model.adapter.config()})
    print(f"embedded {len(items)} input(s) -> {vectors.shape[1]}-d vectors: "
          f"{paths['vectors']} + {paths['manifest']}")
    report_skipped(report, paths["vectors"])
    return 0
