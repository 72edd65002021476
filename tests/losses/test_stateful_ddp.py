"""Every stateful loss holds one state on every DDP rank, equal to 1 process on the global batch.

"Stateful" is enumerated, not listed: every registered loss whose module owns buffers or
parameters (class centres, margin-head weights, running statistics, GHM histograms, EMA buffers,
fixed tables), and every adaptive ``balance`` of a composite. A new one is covered the day it is
registered. Two gloo processes each take half of the contract inputs (``test_contract``), run
three training steps under DDP (forward, backward, SGD on the loss's own parameters; a composite
advances its epoch between steps and trains a linear model, its GradNorm shared layer) and save
their ``state_dict``; one process runs the same steps on the whole batch, and the state's change
must agree (a slow EMA would hide a wrong update).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_contract import _build

import losses
from losses.compose import _BALANCES

ADAPTIVE_BALANCES = [b for b in _BALANCES if b != "fixed"]
STATEFUL = [n for n in losses.available() if any(True for _ in _build(n).state_dict())]
CASES = [*STATEFUL, *(f"balance:{b}" for b in ADAPTIVE_BALANCES)]
STEPS = 3

# the worker and the single-process reference share this code (the test imports it, the worker execs it)
STEP_CODE = textwrap.dedent(
    """
    import torch, torch.distributed as dist
    import losses
    from losses.balance import term_gradients
    from torch.nn.parallel import DistributedDataParallel
    from test_contract import _build, _case, _regression

    class Balanced(torch.nn.Module):
        '''A composite's training step as a task runs it, on a linear model (its shared layer for GradNorm).'''

        def __init__(self, composite):
            super().__init__()
            self.composite = composite
            self.layer = torch.nn.Linear(3, 3)

        def forward(self, x, target):
            pred = self.layer(x)
            if self.composite.gradnorm is None:
                return self.composite(pred, target)
            total, terms = self.composite.forward_terms(pred, target, detach=False)
            grads, _ = term_gradients(list(terms.values()), list(self.layer.parameters()))
            return total + self.composite.gradnorm_loss(terms, grads)

        def set_epoch(self, epoch):
            self.composite.set_epoch(epoch)
            if self.composite.gradnorm is not None:
                self.composite.gradnorm.renormalise()

    def make(case):
        '''(loss module in training mode, global positional inputs) for a registered name or a balance.'''
        if case.startswith("balance:"):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                crit = Balanced(losses.build("mae + mse", balance=case.split(":", 1)[1]))
            args = _regression(crit, torch.Generator().manual_seed(0)).args
        else:
            crit = _build(case)
            args = _case(case, crit).args
        return crit.train(), [a.detach() if isinstance(a, torch.Tensor) else a for a in args]

    def shard(args, rank, world):
        n = next(a.shape[0] for a in args if isinstance(a, torch.Tensor) and a.dim() > 0)
        part = slice(rank * n // world, (rank + 1) * n // world)
        return [a[part] if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == n else a for a in args]

    def train(case, rank=0, world=1):
        '''STEPS training steps of ``case`` on this rank's shard: (state_dict before, state_dict after).'''
        crit, args = make(case)
        before = {k: v.detach().clone() for k, v in crit.state_dict().items()}
        args = shard(args, rank, world)
        params = [p for p in crit.parameters() if p.requires_grad]
        model = crit
        if world > 1 and params:  # buffers are the loss's own business: DDP must not broadcast rank 0's copy
            model = DistributedDataParallel(crit, broadcast_buffers=False)
        optimizer = torch.optim.SGD(params, lr=0.5) if params else None
        for step in range(STEPS):
            if hasattr(crit, "set_epoch"):
                crit.set_epoch(step)
            inputs = [a.clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point()
                      else a for a in args]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(step)
                loss = model(*inputs)
            loss.backward()
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad()
        return before, {k: v.detach().clone() for k, v in crit.state_dict().items()}
    """
)

WORKER = textwrap.dedent(
    """
    import sys
    rank, store, out, tests_dir, steps, cases = sys.argv[1:7]
    sys.path.insert(0, tests_dir)
    STEPS = int(steps)
    exec(open(sys.argv[7]).read())
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=int(rank), world_size=2)
    torch.save({case: train(case, int(rank), 2) for case in cases.split(",")}, out)
    dist.destroy_process_group()
    """
)


def _single_process(cases: list[str]) -> dict[str, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    scope: dict = {"STEPS": STEPS}
    exec(STEP_CODE, scope)
    return {case: scope["train"](case) for case in cases}


def test_stateful_losses_are_enumerated():
    # the angular heads, the centres, the running statistics, the GHM histograms and the balances are all there
    assert {"arcface", "curricularface", "adaface", "center", "ghm_c", "ghm_r"} <= set(STATEFUL)
    assert {"dwa", "uncertainty", "gradnorm"} <= set(ADAPTIVE_BALANCES)


@pytest.mark.slow  # two subprocesses importing torch: ~10 s idle
def test_every_stateful_loss_agrees_across_ranks_and_with_one_process(tmp_path):
    (tmp_path / "steps.py").write_text(STEP_CODE)
    (tmp_path / "worker.py").write_text(WORKER)
    tests_dir = str(Path(__file__).parent)
    procs = [
        subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(rank), str(tmp_path / "store"),
                          str(tmp_path / f"rank{rank}.pt"), tests_dir, str(STEPS), ",".join(CASES),
                          str(tmp_path / "steps.py")])
        for rank in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    single = _single_process(CASES)
    failures = []
    for case in CASES:
        before, after = single[case]
        for key, expected in after.items():
            a, b = ranks[0][case][1][key], ranks[1][case][1][key]
            if not torch.allclose(a, b, rtol=0, atol=0, equal_nan=True):
                failures.append(f"{case}.{key}: ranks differ ({a} vs {b})")
                continue
            # compare the updates, not the states: a slow EMA hides a wrong statistic inside its old value
            change, expected_change = (a.double() - before[key].double()), (expected.double() - before[key].double())
            if not torch.allclose(change, expected_change, rtol=1e-4, atol=1e-7, equal_nan=True):
                failures.append(f"{case}.{key}: 2 ranks changed it by {change}, 1 process by {expected_change}")
    assert not failures, "\n".join(failures)
