"""A training loader that can resume part-way through an epoch.

Lightning restores the model, optimiser, scheduler and loop counters from a
checkpoint, but a plain shuffled DataLoader starts its epoch over with a new order.
:class:`ResumableSampler` draws each epoch's order from ``(seed, epoch)`` alone (never
from the global RNG) and can skip the batches already trained on;
:class:`ResumableLoader` exposes that position through the ``state_dict`` /
``load_state_dict`` interface Lightning saves in ``last.ckpt`` for stateful loaders.
:class:`LengthGroupedSampler` is the same for variable-length sequences.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

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

    def generator(self) -> torch.Generator:
        """The random source of this epoch's order: ``(seed, epoch)`` alone."""
        generator = torch.Generator()
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        return generator

    def order(self) -> list[int]:
        """This epoch's full order of sample indices."""
        return torch.randperm(self.size, generator=self.generator()).tolist()

    def __iter__(self) -> Iterator[int]:
        skip, self._resume = self.skip, None  # only the first pass after a resume starts late
        yield from self.order()[skip:]

    def __len__(self) -> int:
        # the full epoch: Lightning counts batches against it, resumed or not
        return self.size


class LengthGroupedSampler(ResumableSampler):
    """A resumable shuffle whose consecutive ``batch_size`` chunks hold similar lengths.

    A batch of sequences costs as much as its longest member, so mixing a 20-character
    text with a 250-character one pads the short one tenfold. As in Hugging Face's
    ``group_by_length``: the epoch's random order is cut into groups of ``group``
    batches, each group is sorted by length and cut into batches, and the order of the
    full batches is shuffled again (a short remainder, dropped by ``drop_last``, goes
    last so it never shifts the batch boundaries). Still one fixed order per
    ``(seed, epoch)``, so resuming mid-epoch works as with :class:`ResumableSampler`.

    Args:
        lengths: length of every sample.
        batch_size: the loader's batch size.
        seed: base seed of the shuffle.
        group: batches per length-sorted group (larger: fewer pads, less randomness).
            By default a tenth of the epoch, at most 50: lengths often go with labels
            (spam is longer than ham), and an epoch sorted as a whole would give batches
            of one class.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0,
                 group: int | None = None) -> None:
        super().__init__(len(lengths), seed)
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.batch_size = int(batch_size)
        batches = len(self.lengths) // max(self.batch_size, 1)
        self.group = int(group) if group is not None else max(1, min(50, batches // 10))

    def order(self) -> list[int]:
        generator = self.generator()
        shuffled = torch.randperm(self.size, generator=generator)
        batches: list[torch.Tensor] = []
        for chunk in shuffled.split(self.batch_size * self.group):
            by_length = chunk[torch.argsort(self.lengths[chunk], descending=True, stable=True)]
            batches.extend(by_length.split(self.batch_size))
        full = [batch for batch in batches if len(batch) == self.batch_size]
        rest = [batch for batch in batches if len(batch) < self.batch_size]
        mixed = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        return torch.cat(mixed + rest).tolist() if batches else []


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
