"""Callbacks the tests add to ``xmodal fit`` subprocesses (on PYTHONPATH there)."""

from __future__ import annotations

import time

from pytorch_lightning.callbacks import Callback


class SlowSteps(Callback):
    """Sleep after each training step, so a test can SIGKILL the run mid-epoch."""

    def __init__(self, seconds: float = 0.5) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        time.sleep(self.seconds)
