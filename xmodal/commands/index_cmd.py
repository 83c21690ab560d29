"""``xmodal index``: embed inputs, pack their binary codes and save a Hamming index.

With a hashing checkpoint the codes are the signs of its learned latent; otherwise
the sign of a PCA (or random) projection of the pretrained backbone's pooled features.

Examples:
    xmodal index --checkpoint hashing.ckpt --dataset fsdd --split train -o fsdd.index.npz
    xmodal index --modality audio --bits 64 clips/ -o clips.index.npz
"""

from __future__ import annotations

from xmodal.commands.retrieval_args import (input_command_parser, model_adapter, report_skipped,
                                            sources_from_args)
from xmodal.data.scan import BadFiles
from xmodal.retrieval.engine import SearchEngine


def main(argv: list[str]) -> int:
    parser = input_command_parser("xmodal index", __doc__)
    parser.add_argument("--bits", type=int, default=64, help="bits of untrained projection codes")
    parser.add_argument("--projection", default="itq", choices=("itq", "pca", "random"),
                        help="projection for untrained codes")
    parser.add_argument("--no-vectors", action="store_true",
                        help="do not keep float vectors (smaller index, no cosine re-rank)")
    parser.add_argument("--backend", default="auto", choices=("auto", "faiss", "numpy"))
    parser.add_argument("-o", "--output", default="index.npz", help="index file (.npz)")
    args = parser.parse_args(argv)
    sources = sources_from_args(args)
    report = BadFiles()
    engine = SearchEngine.build(
        sources, checkpoint=args.checkpoint, adapter=model_adapter(args, sources),
        backbone=args.backbone, layer=args.layer, bits=args.bits, projection=args.projection,
        keep_vectors=not args.no_vectors, backend=args.backend, batch_size=args.batch_size,
        num_workers=args.num_workers, on_bad_file=args.on_bad_file, report=report,
    )
    path = engine.save(args.output)
    index = engine.index
    print(f"indexed {len(index)} item(s): {index.bits}-bit {index.meta['codes']} codes, "
          f"{index.nbytes()} bytes of codes -> {path}")
    report_skipped(report, path)
    return 0
