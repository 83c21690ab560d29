"""``xmodal fit --profile``: where the time goes, in a few lines.

:class:`StageProfiler` is Lightning's :class:`~pytorch_lightning.profilers.SimpleProfiler`
(every hook timed) with a short report that groups its actions into the stages of
xmodal's data path: decoding (the data module's up-front scan or cache load, and
decoding on access in workers), host-to-device transfer, the device transform
(spectrogram, normalisation, SpecAugment), the backbone, the rest of the forward pass,
backward and the optimiser. ``BaseTask`` times the device transform and the backbone
through the trainer's profiler, so the groups add up without extra synchronisation.
"""

from __future__ import annotations

import time
from typing import Callable

from pytorch_lightning.profilers import SimpleProfiler

Matcher = Callable[[str], bool]


def _has(*parts: str) -> Matcher:
    return lambda action: all(part in action for part in parts)


#: (label, matcher, indent) in report order; indented rows are part of the row above.
GROUPS: list[tuple[str, Matcher, int]] = [
    ("decode: data module setup (up-front decode or cache load)",
     _has("[LightningDataModule]", ".setup"), 0),
    ("feature cache: frozen prefix computed once", _has("FeatureCache.on_fit_start"), 0),
    ("data loading: next batch (decode on access, collate)",
     lambda a: a.endswith("_dataloader_next") or a.endswith("].val_next"), 0),
    ("host -> device transfer", _has("batch_to_device"), 0),
    ("training_step (forward + loss + metrics)", _has("[Strategy]", ".training_step"), 0),
    ("validation_step", _has("[Strategy]", ".validation_step"), 0),
    ("device transform (train + val)", _has("xmodal: device transform"), 1),
    ("backbone forward (train + val)", _has("xmodal: backbone"), 1),
    ("backward", _has("[Strategy]", ".backward"), 0),
    ("optimizer step (without forward/backward)", lambda a: False, 0),
]


class StageProfiler(SimpleProfiler):
    """SimpleProfiler with a grouped report: decode, transform, forward, backward.

    Args:
        full: append Lightning's full per-hook table after the grouped one.
        **kwargs: see :class:`~pytorch_lightning.profilers.SimpleProfiler`.
    """

    def __init__(self, full: bool = False, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.full = full

    def totals(self) -> dict[str, float]:
        """Seconds per group label (plus ``"total"``, the wall time profiled)."""
        durations = self.recorded_durations
        totals = {}
        for label, match, _ in GROUPS:
            totals[label] = sum(sum(v) for action, v in durations.items() if match(action))
        step = sum(sum(v) for a, v in durations.items() if a.endswith(".optimizer_step"))
        zero = sum(sum(v) for a, v in durations.items() if a.endswith(".optimizer_zero_grad"))
        inside = totals["training_step (forward + loss + metrics)"] + totals["backward"] + zero
        totals["optimizer step (without forward/backward)"] = max(0.0, step - inside)
        totals["total"] = time.perf_counter() - self.start_time
        return totals

    def summary(self) -> str:
        totals = self.totals()
        total = max(totals["total"], 1e-9)
        stage = getattr(self._stage, "value", self._stage) or "run"
        lines = ["", f"xmodal profile ({stage}): where the time went", "-" * 78,
                 f"{'stage':<60}{'seconds':>9}{'share':>9}"]
        for label, _, indent in GROUPS:
            seconds = totals[label]
            name = ("  of which " if indent else "") + label
            lines.append(f"{name:<60}{seconds:>9.2f}{100 * seconds / total:>8.1f}%")
        lines.append(f"{'total (wall time profiled)':<60}{totals['total']:>9.2f}{100.0:>8.1f}%")
        report = "\n".join(lines)
        if self.full:
            report += "\n" + super().summary()
        return report
