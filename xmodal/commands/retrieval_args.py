"""Command-line options shared by ``embed``, ``index`` and ``export``: model and inputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmodal.errors import ConfigError
from xmodal.retrieval.embed import LAYER_HELP
from xmodal.retrieval.sources import SPLITS, Sources, from_dataset, from_paths

if TYPE_CHECKING:
    from xmodal.data.scan import BadFiles


def input_command_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The parser every command that reads inputs through a model starts from."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_options(parser)
    add_model_options(parser)
    return parser


def report_skipped(report: "BadFiles", beside: Path) -> None:
    """Write the skipped inputs next to the command's output and say where they are."""
    if report.rows:
        listing = report.write(beside.with_name(beside.stem + "_bad_files.csv"))
        print(f"skipped {len(report.rows)} unreadable input(s); list in {listing}")


def add_model_options(parser: argparse.ArgumentParser, layer: bool = True) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--checkpoint", help="a trained xmodal checkpoint (default: the pretrained backbone)")
    group.add_argument("--backbone", help="timm model for the pretrained path")
    group.add_argument("--modality", help="modality of the inputs (without --checkpoint)")
    group.add_argument("--adapter", default="{}", help="adapter settings as JSON")
    if layer:
        group.add_argument("--layer", default="auto", help=LAYER_HELP)
        group.add_argument("--pool", default="avg", choices=("avg", "max"), help="pooling of stageN layers")


def add_input_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("inputs")
    group.add_argument("inputs", nargs="*", help="files or folders")
    group.add_argument("--dataset", help="a registered data set (fsdd, hymenoptera, ...) or folder/csv")
    group.add_argument("--split", default="test", choices=SPLITS, help="split of --dataset")
    group.add_argument("--root", help="data root (default $XMODAL_DATA)")
    group.add_argument("--manifest", help="CSV manifest path,label[,split]")
    group.add_argument("--batch-size", type=int, default=64)
    group.add_argument("--num-workers", type=int, default=0, help="decoding workers")
    group.add_argument("--on-bad-file", default="skip", choices=("error", "skip", "warn"),
                       help="what to do with unreadable inputs (skipped ones are listed)")


def adapter_settings(args: argparse.Namespace) -> dict[str, Any]:
    try:
        settings = json.loads(args.adapter)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--adapter is not JSON: {exc}") from None
    if not isinstance(settings, dict):
        raise ConfigError("--adapter must be a JSON object")
    return settings


def sources_from_args(args: argparse.Namespace) -> Sources:
    """The inputs the user named: a data set split, a manifest, or files and folders."""
    modality = args.modality
    if not modality and args.checkpoint:
        from xmodal.retrieval.embed import checkpoint_hparams

        modality = (checkpoint_hparams(args.checkpoint).get("input_adapter") or {}).get("modality")
    if args.dataset or args.manifest:
        if args.inputs:
            raise ConfigError("give input files or --dataset/--manifest, not both")
        return from_dataset(args.dataset, args.split, modality, args.root, args.manifest)
    if not args.inputs:
        raise ConfigError("give input files/folders, or --dataset NAME [--split test]")
    sources = from_paths(args.inputs)
    sources.modality = modality or ""
    return sources


def model_adapter(args: argparse.Namespace, sources: Sources) -> dict[str, Any] | None:
    """Adapter settings for the pretrained path: data set defaults, then --adapter."""
    if args.checkpoint:
        return None
    modality = args.modality or sources.modality
    if not modality:
        raise ConfigError("say which modality the inputs are (--modality NAME) or pass --checkpoint")
    return {**sources.adapter_defaults, **adapter_settings(args), "modality": modality}
