"""A training loader that can resume part-way through an epoch.

Lightning restores the model, optimiser, scheduler and loop counters from a
checkpoint, but a plain shuffled DataLoader starts its epoch over with a new order.
:class:`ResumableSampler` draws each epoch's order from ``(seed, epoch)`` alone (never
from the global RNG) and can skip the batches already trained on;
:class:`ResumableLoader` exposes that position through the ``state_dict`` /
``load_state_dict`` interface Lightning saves in ``last.ckpt`` for stateful loaders.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Sampler


class ResumableSampler(Sampler[int]):
    """Shuffled indices, a fixed order per ``(seed, epoch)``, optionally skipping a prefix.

    Args:
        size: number of samples.
        seed: base seed of the shuffle.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, samples to skip)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of each epoch."""
        self.epoch = epoch

    def resume(self, epoch: int, skip: int) -> None:
        """Start the next pass ``skip`` samples into ``epoch``'s order.

        The skip is tied to its epoch: a pass over any other epoch (the saved epoch
        was already complete, say) starts at the beginning.
        """
        self.epoch = epoch
        self._resume = (epoch, skip)

    @property
    def skip(self) -> int:
        """Samples the next pass leaves out (0 unless a resume is pending)."""
        return self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0

    def order(self) -> list[int]:
        """This epoch's full order of sample indices."""
        generator = torch.Generator()
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        skip, self._resume = self.skip, None  # only the first pass after a resume starts late
        yield from self.order()[skip:]

    def __len__(self) -> int:
        # the full epoch: Lightning counts batches against it, resumed or not
        return self.size


class ResumableLoader(DataLoader):
    """DataLoader whose position inside an epoch is saved with the checkpoint.

    ``position`` (set after construction) returns the number of batches already
    trained on in the current epoch; the data module points it at the trainer's
    progress counter, which, unlike a count of fetched batches, ignores prefetching.
    """

    position: Callable[[], int] | None = None

    def state_dict(self) -> dict[str, Any]:
        batches = int(self.position()) if self.position is not None else 0
        return {"epoch": getattr(self.sampler, "epoch", 0), "batches": batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(self.sampler, ResumableSampler):
            return
        batches = int(state.get("batches", 0))
        if 0 < batches < len(self):  # a complete epoch resumes at the next one's start
            self.sampler.resume(int(state.get("epoch", 0)), batches * int(self.batch_size or 1))
