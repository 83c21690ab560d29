"""``xmodal plugins``: what is installed, from which package, implementing which hooks."""

from __future__ import annotations

import argparse
import json

from xmodal import plugins


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xmodal plugins", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--all", action="store_true", help="include xmodal's built-in plugins")
    args = parser.parse_args(argv)
    info = plugins.plugin_info()
    if not args.all:
        info = [p for p in info if not p["name"].startswith("xmodal.default_plugins.")]
    provides = {
        "modalities": plugins.modalities(), "datasets": plugins.datasets(),
        "heads": plugins.heads(), "weight_sources": plugins.weight_sources(),
        "commands": plugins.commands(),
    }
    for entry in info:
        entry["provides"] = {
            kind: [r.name for r in registry.entries.values() if r.plugin == entry["name"]]
            for kind, registry in provides.items()
        }
        entry["provides"] = {k: v for k, v in entry["provides"].items() if v}
    if args.json:
        print(json.dumps({"plugins": info, "errors": plugins.load_errors}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="xmodal plugins")
    for column in ("name", "package", "version", "hooks", "provides"):
        table.add_column(column)
    for entry in info:
        provided = "; ".join(f"{k}: {', '.join(v)}" for k, v in entry["provides"].items())
        table.add_row(entry["name"], entry["package"], entry["version"],
                      ", ".join(entry["hooks"]), provided)
    Console(width=160).print(table)
    for error in plugins.load_errors:
        print(error)
    return 0
