"""``xmodal search QUERY_FILE``: the nearest indexed items by Hamming distance.

Examples:
    xmodal search query.wav --index fsdd.index.npz --k 10
    xmodal search query.wav --index fsdd.index.npz --k 10 --rerank 100 --json hits.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xmodal.retrieval.engine import SearchEngine


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xmodal search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("queries", nargs="+", help="query files (or folders)")
    parser.add_argument("--index", default="index.npz", help="index built by `xmodal index`")
    parser.add_argument("--k", type=int, default=10, help="results per query")
    parser.add_argument("--rerank", type=int, default=0,
                        help="re-rank this many Hamming candidates by cosine on float vectors")
    parser.add_argument("--checkpoint", help="override the checkpoint recorded in the index")
    parser.add_argument("--backend", default="auto", choices=("auto", "faiss", "numpy"))
    parser.add_argument("--json", default="search_results.json", help="where to write the results")
    args = parser.parse_args(argv)
    engine = SearchEngine.load(args.index, checkpoint=args.checkpoint, backend=args.backend)
    hits = engine.search(args.queries, k=args.k, rerank=args.rerank)
    payload = {"index": str(args.index), "k": args.k, "rerank": args.rerank,
               "backend": engine.index.backend,
               "queries": [{"query": name, "results": result.rows()} for name, result in hits]}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(payload, indent=2))
    _print(hits)
    print(f"results written to {args.json}")
    return 0


def _print(hits) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    for name, result in hits:
        table = Table(title=f"nearest to {name}")
        rows = result.rows()
        columns = ["rank", "hamming"] + (["cosine"] if result.cosine is not None else []) \
            + (["label"] if result.labels is not None else []) + ["name"]
        for column in columns:
            table.add_column(column, justify="right" if column in ("rank", "hamming", "cosine") else "left")
        for row in rows:
            table.add_row(*(str(row[c]) for c in columns))
        console.print(table)
