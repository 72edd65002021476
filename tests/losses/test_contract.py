"""The contract every registered loss honours, checked over ``losses.available()`` (later additions too).

Each loss is built with its defaults (``PARAMS`` adds required parameters) and called on its
family's inputs (``FAMILY_INPUTS``, after ``losses.registry.FAMILY_CALLS``; ``INPUTS`` replaces them
for a loss that needs other tensors). It must give

* a finite float32 scalar and finite gradients;
* with ``reduction``: "sum" = the sum of "none" and "mean" = the mean of "none" (``MEAN_OF_NONE``
  holds the losses whose documented mean is another function of the unreduced values);
* under bf16 autocast with bf16 inputs, a float32 value equal to the float32 value on those inputs;
* under ``torch.compile(fullgraph=True)`` (eager backend) the eager value and gradient; the losses
  in ``NOT_COMPILABLE`` are strict xfails and say why in a ``Compile:`` docstring line;
* a docstring with every constructor parameter in ``Args:``, a ``Shape:`` with the output and a
  runnable ``Example:`` (run by ``--doctest-modules``).

The float64 gradchecks and hand-computed values live in the family test files.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import torch
from dense_inputs import dense_inputs
from torch import Tensor, nn
from torch._dynamo.exc import TorchDynamoException

import losses
from losses.registry import FAMILY_CALLS

NAMES = losses.available()

# required constructor parameters (the dense inputs have C = 3 classes)
PARAMS: dict[str, dict[str, Any]] = {"class_balanced": {"samples_per_class": [5.0, 3.0, 2.0]}}

_INDEX_CHECK = "a data-dependent branch (graph break) on the index-target range check"
NOT_COMPILABLE: dict[str, str] = {
    **{
        name: f"region.py _index_gather: `int(idx.min()) < 0 or int(idx.max()) >= c`, {_INDEX_CHECK}"
        for name in (
            "dice",
            "generalized_dice",
            "jaccard",
            "log_cosh_dice",
            "lovasz",
            "sensitivity_specificity",
            "tversky",
            "focal_tversky",
            "combo",
            "exp_log",
            "unified_focal",
        )
    },
    "focal": f"classification.py softmax_focal_loss: `safe.min() < 0 or safe.max() >= c` on CPU, {_INDEX_CHECK}",
    "gradient_penalty": "torch.autograd.grad(create_graph=True) inside forward: dynamo does not trace autograd.grad",
}


def _root_mean_square(per_sample: Tensor) -> Tensor:
    return per_sample.square().mean().sqrt()


# reduction="mean" as a function of the reduction="none" values where that is not their mean
MEAN_OF_NONE: dict[str, Callable[[Tensor], Tensor]] = {
    "rmse": _root_mean_square,  # "none" is one RMSE per sample; "mean" the RMSE over all elements
    "rmsle": _root_mean_square,
}


# --------------------------------------------------------------------------- inputs


class Case(NamedTuple):
    """The positional arguments of one loss call and the leaf tensors whose gradients the contract checks."""

    args: tuple
    leaves: tuple[Tensor, ...]


def _pair(pred: Tensor, target: Tensor) -> Case:
    return Case((pred.requires_grad_(True), target), (pred,))


def _xyxy(g: torch.Generator, n: int = 4) -> Tensor:
    xy = 4 * torch.rand(n, 2, generator=g)
    return torch.cat((xy, xy + 0.5 + torch.rand(n, 2, generator=g)), dim=1)


def _boxes(crit: nn.Module, g: torch.Generator) -> Case:
    pred = _xyxy(g)
    return _pair(pred, pred + 0.3 * torch.randn(pred.shape, generator=g))  # overlapping, some corners off


def _rotated_boxes(crit: nn.Module, g: torch.Generator) -> Case:
    def boxes() -> Tensor:
        centre, size, angle = torch.rand(4, 2, generator=g), 0.5 + torch.rand(4, 2, generator=g), torch.rand(4, 1)
        return torch.cat((centre, size, angle), dim=1)

    return _pair(boxes(), boxes())


def _regression(crit: nn.Module, g: torch.Generator) -> Case:
    return _pair(torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g))


def _positive_regression(crit: nn.Module, g: torch.Generator) -> Case:
    return _pair(torch.rand(4, 3, generator=g), torch.rand(4, 3, generator=g))


def _margin(crit: nn.Module, g: torch.Generator) -> Case:
    return _pair(torch.randn(6, generator=g), torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0, 1.0]))


def _dense(crit: nn.Module, g: torch.Generator) -> Case:
    """(logits, target) in the loss's ``mode`` (multiclass when it has none)."""
    return _pair(*dense_inputs(getattr(crit, "mode", "multiclass"), shape=(2, 3, 4, 4), seed=g.initial_seed()))


def _discriminator_batches(crit: nn.Module, g: torch.Generator) -> Case:
    """A two-layer tanh discriminator (its weights are the leaves) with real and fake batches (4, 3)."""
    w1, w2 = torch.randn(3, 5, generator=g).requires_grad_(True), torch.randn(5, generator=g).requires_grad_(True)

    def discriminator(x: Tensor) -> Tensor:
        return torch.tanh(x @ w1) @ w2

    return Case((discriminator, torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)), (w1, w2))


FAMILY_INPUTS: dict[str, Callable[[nn.Module, torch.Generator], Case]] = {
    "regression": _regression,
    "overlap": _boxes,
    "margin": _margin,
    "classification": _dense,
    "region": _dense,
    "compound": _dense,
}
INPUTS: dict[str, Callable[[nn.Module, torch.Generator], Case]] = {
    "gwd": _rotated_boxes,  # (N, 5) cx, cy, w, h, theta
    "rmsle": _positive_regression,  # log1p needs values > -1
    "gradient_penalty": _discriminator_batches,  # (discriminator, real, fake)
}


def _build(name: str, **params: Any) -> nn.Module:
    entry = losses.get(name)
    given = {**PARAMS.get(name, {}), **params}
    required = [k for k, v in entry.parameters().items() if v is inspect.Parameter.empty and k not in given]
    assert not required, f"{name} needs parameter(s) {required}: add them to PARAMS in {__name__}"
    return losses.build(name, **given)


def _case(name: str, crit: nn.Module) -> Case:
    family = losses.get(name).family
    make = INPUTS.get(name) or FAMILY_INPUTS.get(family)
    assert make is not None, f"{name}: no contract inputs for family {family!r} {FAMILY_CALLS[family]}: add them"
    return make(crit, torch.Generator().manual_seed(0))


def _call(crit: Callable[..., Tensor], args: tuple) -> Tensor:
    """``crit(*args)`` with the global RNG seeded (and restored after), so random losses repeat their draws."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return crit(*args)


def _bf16(arg: Any) -> Any:
    return arg.detach().to(torch.bfloat16) if isinstance(arg, Tensor) and arg.is_floating_point() else arg


def _float(arg: Any) -> Any:
    return arg.float() if isinstance(arg, Tensor) and arg.is_floating_point() else arg


def _with_compile_xfail(names: list[str]) -> list:
    return [
        pytest.param(
            name,
            marks=pytest.mark.xfail(strict=True, raises=TorchDynamoException, reason=NOT_COMPILABLE[name]),
        )
        if name in NOT_COMPILABLE
        else name
        for name in names
    ]


@pytest.fixture
def fresh_dynamo():
    """Compiled graphs and guards from one test never serve another."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# --------------------------------------------------------------------------- numerics


def test_tables_name_registered_losses():
    for table in (PARAMS, NOT_COMPILABLE, MEAN_OF_NONE, INPUTS):
        assert set(table) <= set(NAMES), sorted(set(table) - set(NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_defaults_give_finite_float32_scalar_and_gradient(name):
    crit = _build(name)
    case = _case(name, crit)
    value = _call(crit, case.args)
    assert value.shape == () and value.dtype == torch.float32 and torch.isfinite(value)
    grads = torch.autograd.grad(value, case.leaves, allow_unused=True)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", [n for n in NAMES if "reduction" in losses.get(n).parameters()])
def test_reduction_sum_and_mean_agree_with_none(name):
    args = _case(name, _build(name)).args
    values = {r: _call(_build(name, reduction=r), args).detach() for r in ("mean", "sum", "none")}
    assert values["mean"].shape == () and values["sum"].shape == ()
    torch.testing.assert_close(values["none"].sum(), values["sum"])
    torch.testing.assert_close(MEAN_OF_NONE.get(name, torch.mean)(values["none"]), values["mean"])
    with pytest.raises(losses.LossConfigError, match="reduction"):
        _build(name, reduction="average")


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_computes_in_float32(name):
    crit = _build(name)
    args = tuple(_bf16(a) for a in _case(name, crit).args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = _call(crit, args)
    assert value.dtype == torch.float32
    # the same bf16-rounded numbers in float32: only the arithmetic's precision could differ
    expected = _call(crit, tuple(_float(a) for a in args))
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)


def _compiled_matches_eager(crit: nn.Module, compiled: Callable[..., Tensor], case: Case) -> None:
    eager, value = _call(crit, case.args), _call(compiled, case.args)
    torch.testing.assert_close(value, eager)
    for got, expected in zip(torch.autograd.grad(value, case.leaves), torch.autograd.grad(eager, case.leaves)):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", _with_compile_xfail(NAMES))
def test_compiles_to_one_graph(name, fresh_dynamo):
    crit = _build(name)
    _compiled_matches_eager(crit, torch.compile(crit, backend="eager", fullgraph=True), _case(name, crit))


@pytest.mark.slow
@pytest.mark.parametrize("name", _with_compile_xfail(["giou", "poly1", "dice"]))  # overlap, classification, region
def test_inductor_compiles_representative_losses(name, fresh_dynamo):
    from torch._inductor.exc import CppCompileError, InvalidCxxCompiler

    crit = _build(name)
    try:
        _compiled_matches_eager(crit, torch.compile(crit, fullgraph=True), _case(name, crit))
    except torch._dynamo.exc.BackendCompilerFailed as err:
        if isinstance(err.inner_exception, (InvalidCxxCompiler, CppCompileError)):
            pytest.skip(f"inductor cannot compile C++ here: {err.inner_exception}")
        raise


# --------------------------------------------------------------------------- documentation


def _where(name: str) -> str:
    cls = losses.get(name).cls
    return f"{name} ({cls.__module__}.{cls.__qualname__})"


@pytest.mark.parametrize("name", NAMES)
def test_args_document_every_constructor_parameter(name):
    card = losses.info(name)
    missing = [p for p in card.parameters if p not in card.args]
    unknown = [a for a in card.args if a not in card.parameters]
    assert not missing and not unknown, (
        f"{_where(name)}: Args: section lacks {missing or 'nothing'} and documents unknown {unknown or 'nothing'}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_docstring_has_shape_and_example(name):
    card, sections = losses.info(name), losses.get(name).doc_sections
    assert card.shape.get("output"), f"{_where(name)}: Shape: section needs a '- output: ...' line"
    assert ">>>" in sections.get("example", ""), f"{_where(name)}: Example: section has no runnable example"


@pytest.mark.parametrize("name", NAMES)
def test_compile_line_states_why_not_compilable(name):
    note = losses.info(name).compile
    if name in NOT_COMPILABLE:
        assert note, f"{_where(name)}: not compilable ({NOT_COMPILABLE[name]}); say why in a 'Compile: ...' line"
    else:
        assert not note, f"{_where(name)}: compiles, but its docstring says 'Compile: {note}'"
