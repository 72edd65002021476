"""Loss state that the math says is global is synchronised across DDP ranks (2 gloo processes)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

import losses

WORKER = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    import losses
    rank, world, store, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    logits, target = torch.load(sys.argv[5])
    shard = slice(rank * len(target) // world, (rank + 1) * len(target) // world)
    crit = losses.build("ghm_c", bins=5, momentum=0.5).train()
    values = [crit(logits[shard], target[shard]) for _ in range(2)]  # two steps: momentum state evolves
    torch.save({"acc_sum": crit.acc_sum, "loss": values[-1]}, out)
    dist.destroy_process_group()
    """
)


def test_ghm_histogram_is_the_global_batch_histogram(tmp_path):
    torch.manual_seed(0)
    logits, target = torch.randn(64, 5) * 3, torch.randint(0, 5, (64,))
    torch.save((logits, target), tmp_path / "batch.pt")
    (tmp_path / "worker.py").write_text(WORKER)
    procs = [
        subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(rank), "2", str(tmp_path / "store"),
                          str(tmp_path / f"rank{rank}.pt"), str(tmp_path / "batch.pt")])
        for rank in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    single = losses.build("ghm_c", bins=5, momentum=0.5).train()
    values = [single(logits, target) for _ in range(2)]
    for result in ranks:  # every rank holds the histogram of the whole batch
        torch.testing.assert_close(result["acc_sum"], single.acc_sum)
    # DDP averages the ranks' losses (equal shard sizes): that is the single-process loss
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, values[-1])
