"""A sampler that makes data order and augmentation a pure function of (seed, epoch, index).

That is what lets an interrupted run resume mid-epoch and continue exactly as if it had
never stopped, and what makes 1-process and N-process (DDP) runs see the same samples.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch.distributed as dist
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class SampleKey(NamedTuple):
    """What :class:`SeededSampler` yields: the dataset index and the seed for its augmentation."""

    index: int
    seed: int

    @classmethod
    def of(cls, key: int | SampleKey) -> SampleKey:
        """A plain index (any other sampler) is its own augmentation seed."""
        return key if isinstance(key, SampleKey) else cls(int(key), int(key))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A stable 31-bit seed for one sample of one epoch (independent of workers and ranks)."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


class SeededSampler(DistributedSampler):
    """``DistributedSampler`` that yields :class:`SampleKey` and can skip already-seen samples.

    Works without an initialised process group (one replica). Lightning leaves a
    ``DistributedSampler`` in place under DDP and calls :meth:`set_epoch` every epoch.
    :meth:`skip` makes the next iteration start after ``n`` samples of this rank's shard,
    which is how a run resumed from a mid-epoch checkpoint continues where it stopped.
    """

    def __init__(self, dataset: Dataset, shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(
            dataset,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self._skip = 0

    def skip(self, num_samples: int) -> None:
        """Skip the first ``num_samples`` samples of the next iteration only."""
        self._skip = max(0, int(num_samples))

    def __iter__(self) -> Iterator[SampleKey]:  # type: ignore[override]
        indices = list(super().__iter__())[self._skip :]
        self._skip = 0
        return iter([SampleKey(i, sample_seed(self.seed, self.epoch, i)) for i in indices])


def seeded_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    shuffle: bool,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """The DataLoader every task uses: a :class:`SeededSampler` (resumable, DDP-sharded) underneath."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=SeededSampler(dataset, shuffle=shuffle, seed=seed),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
        drop_last=drop_last,
        worker_init_fn=_worker_ignoring_stop_signals if num_workers > 0 else None,
    )


def _worker_ignoring_stop_signals(worker_id: int) -> None:
    """A DataLoader worker ignores SIGTERM and Ctrl-C; the main process stops at a step boundary and ends it.

    SLURM, ``timeout`` and a terminal signal every process of the job; a worker that died of it made the main
    process fail at once ("DataLoader worker ... is killed by signal") instead of saving its checkpoint.
    Then the seeding Lightning gives a loader without a ``worker_init_fn`` (``seed_everything(workers=True)``).
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id)
