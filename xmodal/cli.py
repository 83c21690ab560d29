"""The ``xmodal`` command: LightningCLI for fit/validate/test/predict, plugins for the rest.

``xmodal fit --modality audio`` is shorthand for ``--data.modality audio``; every other
option follows LightningCLI conventions (``--config``, ``--print_config``, dotted
overrides). Other subcommands (``plugins``, ``preview``, ...) come from the
``register_commands`` hook, built-in ones included.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.cli import LightningCLI

from xmodal import plugins
from xmodal.callbacks import PredictionCSVWriter
from xmodal.checkpointing import (AtomicCheckpointIO, BestCheckpoint, LastCheckpoint, ResumeState,
                                  check_checkpoint, find_last_checkpoint)
from xmodal.data.datamodule import XModalDataModule
from xmodal.errors import XModalError, unwrap
from xmodal.tasks.base import BaseTask

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
GLOBAL_FLAGS_HELP = """global options (before the command):
  --strict-plugins          fail when a plugin cannot load, instead of skipping it
  --disable-plugin NAME     do not load plugin NAME (repeatable; or XMODAL_DISABLE_PLUGINS)
"""


class XModalCLI(LightningCLI):
    """LightningCLI with xmodal's defaults: classification head, best/last checkpoints,
    early stopping, a test run after fit, predictions written as CSV."""

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        """Add the samples/s progress bar unless progress bars are off or one is given."""
        from pytorch_lightning.callbacks import ProgressBar

        from xmodal.progress import ThroughputProgressBar

        given = [*callbacks, *(config.get("callbacks") or [])]
        if config.get("enable_progress_bar") is not False and not any(
                isinstance(c, ProgressBar) for c in given):
            callbacks = [*callbacks, ThroughputProgressBar()]
        return super()._instantiate_trainer(config, callbacks)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="after fit, evaluate the best checkpoint on the test split")
        parser.add_argument("--predictions", type=Optional[str], default=None,
                            help="CSV written by predict (default: predictions.csv in the log folder)")
        parser.set_defaults({
            "model": {"class_path": "xmodal.tasks.classification.ClassificationTask"},
        })
        # --last_checkpoint.every_n_train_steps N: refresh last.ckpt every N steps
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as exc:  # jsonargparse wraps errors of __init__
            inner = unwrap(exc)
            if inner is None:
                raise
            raise inner from None

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        trainer = super().instantiate_trainer(**kwargs)
        strategy = trainer.strategy
        if type(strategy.checkpoint_io).__name__ == "TorchCheckpointIO":  # not one the user chose
            strategy.checkpoint_io = AtomicCheckpointIO()  # temp file + fsync + rename per save
        return trainer

    def _parse_ckpt_path(self) -> None:
        """``last`` = the newest last.ckpt of any earlier run; every file is checked first.

        Each run logs to a new ``version_N`` folder, where Lightning's own ``"last"``
        would find nothing. The checkpoint is loaded with ``weights_only=True`` before
        Lightning reads its hyper-parameters, so a file that would run code is refused
        with one line.
        """
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else None
        ckpt_path = config.get("ckpt_path") if config is not None else None
        if ckpt_path not in (None, "best", "hpc", "registry"):
            if ckpt_path == "last":
                root = config.get("trainer", {}).get("default_root_dir") or "."
                found = find_last_checkpoint(root)
                if found is None:
                    print(f"xmodal: no last.ckpt under {root}; starting fresh", file=sys.stderr)
                    config["ckpt_path"] = None
                    return
                verb = "resuming from" if subcommand == "fit" else "using"
                print(f"xmodal: {verb} {found}", file=sys.stderr)
                ckpt_path = found
            config["ckpt_path"] = str(check_checkpoint(ckpt_path))
        super()._parse_ckpt_path()

    test_results: dict[str, float] = {}

    def before_predict(self) -> None:
        output = self.config[self.subcommand].get("predictions")
        for callback in self.trainer.callbacks:
            if isinstance(callback, PredictionCSVWriter) and output:
                callback.output = output

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit", True):
            return
        datamodule = self.datamodule
        if datamodule.spec is None or datamodule.spec.test is None:
            return
        checkpoint = self.trainer.checkpoint_callback
        ckpt_path = "best" if checkpoint is not None and checkpoint.best_model_path else None
        results = self.trainer.test(self.model, datamodule=datamodule, ckpt_path=ckpt_path,
                                    verbose=False)
        self.test_results = results[0] if results else {}
        if results and self.trainer.is_global_zero:
            print(format_test_report(results[0]))


def format_test_report(metrics: dict[str, Any]) -> str:
    """The one-line test report after fit, of the metrics the task logged (a hashing
    task has no macro-F1: it is left out rather than printed as nan)."""
    names = (("test/acc", "test accuracy"), ("test/f1", "macro-F1"))
    return "  ".join(f"{label}: {float(metrics[key]):.4f}" for key, label in names if key in metrics)


def trainer_defaults() -> dict[str, Any]:
    return {
        "max_epochs": 10,
        "default_root_dir": "xmodal_runs",
        "log_every_n_steps": 10,
        "callbacks": [
            BestCheckpoint(monitor="val/acc", mode="max", save_last=True,
                           filename="best-{epoch:02d}", enable_version_counter=False),
            EarlyStopping(monitor="val/acc", mode="max", patience=5),
            PredictionCSVWriter(),
            ResumeState(),
        ],
    }


def _pop_global_flags(argv: list[str]) -> list[str]:
    """Handle --strict-plugins / --disable-plugin NAME before plugins load."""
    rest, disabled = [], []
    iterator = iter(argv)
    for arg in iterator:
        if arg == "--strict-plugins":
            os.environ["XMODAL_STRICT_PLUGINS"] = "1"
        elif arg == "--disable-plugin":
            disabled.append(next(iterator, ""))
        elif arg.startswith("--disable-plugin="):
            disabled.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    if disabled:
        current = os.environ.get("XMODAL_DISABLE_PLUGINS", "")
        os.environ["XMODAL_DISABLE_PLUGINS"] = ",".join(filter(None, [current, *disabled]))
    return rest


def _expand_shortcuts(argv: list[str]) -> list[str]:
    out = []
    iterator = iter(argv)
    for arg in iterator:
        if arg == "--modality":
            out += ["--data.modality", next(iterator, "")]
        elif arg == "--profile":  # where the time goes (xmodal.profiling)
            out.append("--trainer.profiler=xmodal.profiling.StageProfiler")
        elif arg.startswith("--modality="):
            out.append("--data.modality=" + arg.split("=", 1)[1])
        else:
            out.append(arg)
    return out


def run_lightning(argv: list[str]) -> XModalCLI:
    """Run a LightningCLI subcommand (fit, validate, test, predict)."""
    plugins.heads()  # import every registered head, so `--model HashingTask` resolves by short name
    return XModalCLI(
        BaseTask,
        XModalDataModule,
        subclass_mode_model=True,
        subclass_mode_data=False,
        seed_everything_default=0,
        trainer_defaults=trainer_defaults(),
        save_config_kwargs={"overwrite": True},
        args=_expand_shortcuts(argv),
        auto_configure_optimizers=False,
    )


def _close_process_group() -> None:
    """Destroy a DDP process group before the interpreter exits.

    Lightning leaves the gloo/NCCL group alive after fit/predict; its C++ worker threads
    are then torn down during interpreter shutdown, which now and then aborts the
    process ("terminate called without an active exception", exit -6) after all the
    work was written."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def usage() -> str:
    lines = ["usage: xmodal [global options] COMMAND [options]", "", "commands:"]
    for name in LIGHTNING_COMMANDS:
        lines.append(f"  {name:<14} LightningCLI {name} (see xmodal {name} --help)")
    for name in plugins.commands().names():
        _, help_text = plugins.commands().get(name)
        lines.append(f"  {name:<14} {help_text}")
    return "\n".join(lines) + "\n\n" + GLOBAL_FLAGS_HELP


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xmodal`` console script."""
    argv = _pop_global_flags(list(sys.argv[1:] if argv is None else argv))
    try:
        plugins.load_plugins()
        if not argv or argv[0] in ("-h", "--help"):
            print(usage())
            return 0
        command, rest = argv[0], argv[1:]
        if command in LIGHTNING_COMMANDS:
            try:
                run_lightning(argv)
            finally:
                _close_process_group()
            return 0
        if command in plugins.commands().names():
            command_main, _ = plugins.commands().get(command)
            return int(command_main(rest) or 0)
        print(f"xmodal: error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    except XModalError as error:
        print(f"xmodal: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xmodal: interrupted; resume with --ckpt_path last", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
