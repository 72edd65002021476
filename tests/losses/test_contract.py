"""The contract every registered loss honours, checked over ``losses.available()`` (later additions too).

Each loss is built with its defaults (``PARAMS`` adds required parameters) and called on its
family's inputs (``FAMILY_INPUTS``: after ``losses.registry.FAMILY_CALLS``, or the tensors the loss
declares in its ``INPUTS`` attribute; ``INPUTS`` here replaces them for a loss that needs other
tensors). It must give

* a finite float32 scalar and finite gradients (for its inputs and its own parameters);
* with ``reduction``: "sum" = the sum of "none" and "mean" = the mean of "none" (``MEAN_OF_NONE``
  holds the losses whose documented mean is another function of the unreduced values);
* under bf16 autocast with bf16 inputs, a float32 value equal to the float32 value on those inputs;
* under ``torch.compile(fullgraph=True)`` (eager backend) the eager value and gradient; the losses
  in ``NOT_COMPILABLE`` are strict xfails and say why in a ``Compile:`` docstring note;
* a docstring with every constructor parameter in ``Args:``, a ``Shape:`` with the output and a
  runnable ``Example:`` (run by ``--doctest-modules``).

The float64 gradchecks and hand-computed values live in the family test files.
"""

from __future__ import annotations

import copy
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
PARAMS: dict[str, dict[str, Any]] = {
    "class_balanced": {"samples_per_class": [5.0, 3.0, 2.0]},
    # heads and centres owning class parameters: the sizes the face task injects (labels of _embeddings)
    **{n: {"num_classes": 3, "embedding_size": 8}
       for n in (*losses.available(family="angular"), "center", "center_invariant")},
}

NOT_COMPILABLE: dict[str, str] = {
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


def _boxes(crit: nn.Module, g: torch.Generator) -> Case:
    xy = 4 * torch.rand(4, 2, generator=g)
    pred = torch.cat((xy, xy + 0.5 + torch.rand(4, 2, generator=g)), dim=1)  # valid xyxy boxes
    return _pair(pred, pred + 0.3 * torch.randn(pred.shape, generator=g))  # overlapping, some corners off


def _rotated_boxes(crit: nn.Module, g: torch.Generator) -> Case:
    def boxes() -> Tensor:  # cx, cy in [0, 1), w, h in [0.5, 1.5), theta in [0, 1) rad
        u = torch.rand(4, 5, generator=g)
        return torch.cat((u[:, :2], 0.5 + u[:, 2:4], u[:, 4:]), dim=1)

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


def _images(crit: nn.Module, g: torch.Generator) -> Case:
    """(pred, target) images (2, 1, 24, 24) in [0, 1]: two scales for ms_ssim's 11-pixel window."""
    return _pair(torch.rand(2, 1, 24, 24, generator=g), torch.rand(2, 1, 24, 24, generator=g))


def _vae(crit: nn.Module, g: torch.Generator) -> Case:
    """(reconstruction, input) images (2, 1, 4, 4) and the posterior's mu, logvar (2, 3): all leaves but the input."""
    pred, target = torch.randn(2, 1, 4, 4, generator=g), torch.rand(2, 1, 4, 4, generator=g)
    mu, logvar = torch.randn(2, 3, generator=g), 0.5 * torch.randn(2, 3, generator=g)
    leaves = tuple(t.requires_grad_(True) for t in (pred, mu, logvar))
    return Case((pred, target, mu, logvar), leaves)


_DETACHED = ("real", "fake", "real_features")  # what the adversarial losses treat as data (no gradient)


def _adversarial(crit: nn.Module, g: torch.Generator) -> Case:
    """What an adversarial loss declares in ``INPUTS``: discriminator scores (4, 1) and features (4, 6)
    (leaves unless in ``_DETACHED``), real and fake samples (4, 3) and a two-layer tanh discriminator
    (its weights are leaves)."""
    assert getattr(crit, "INPUTS", None), f"{type(crit).__name__}: adversarial losses declare their INPUTS"
    args: list[Any] = []
    leaves: list[Tensor] = []
    for name in crit.INPUTS:
        if name == "discriminator":
            w1, w2 = torch.randn(3, 5, generator=g), torch.randn(5, generator=g)
            leaves += [w1.requires_grad_(True), w2.requires_grad_(True)]
            args.append(lambda x, w1=w1, w2=w2: torch.tanh(x @ w1) @ w2)
        elif name in ("real", "fake"):
            args.append(torch.randn(4, 3, generator=g))
        else:
            args.append(torch.randn(4, 1 if name.endswith("logits") else 6, generator=g))
            if name not in _DETACHED:
                leaves.append(args[-1].requires_grad_(True))
    return Case(tuple(args), tuple(leaves))


_POSITIVE = ("sigma", "var", "rate", "alpha", "df")  # distribution parameters
_WINDOW_SCALES = ("scale", "sq_scale")  # one naive scale per window


def _forecast(crit: nn.Module, g: torch.Generator) -> Case:
    """The tensors a forecasting loss declares in ``INPUTS`` (``(pred, target)`` without), for N=3 windows of T=4 steps.

    Targets are positive (valid counts and percentage-error denominators); every input but the
    target and the data scales is a leaf.
    """
    n, t = 3, 4
    names = getattr(crit, "INPUTS", None) or ("pred", "target")

    def tensor(name: str) -> Tensor:
        if name == "quantiles":
            return torch.randn(n, t, len(crit.quantiles), generator=g).sort(-1).values
        if name == "samples":
            return torch.randn(n, t, 8, generator=g)
        if name == "target":
            return 0.5 + 2 * torch.rand(n, t, generator=g)
        if name in _WINDOW_SCALES:
            return 0.5 + torch.rand(n, generator=g)
        if name in _POSITIVE:
            return 0.5 + torch.rand(n, t, generator=g)
        return torch.randn(n, t, generator=g)  # pred, loc, log_rate

    args = {name: tensor(name) for name in names}
    leaves = tuple(v.requires_grad_(True) for k, v in args.items() if k != "target" and k not in _WINDOW_SCALES)
    return Case(tuple(args.values()), leaves)


def _embeddings(crit: nn.Module, g: torch.Generator) -> Case:
    """(embeddings (6, 8), labels (6,)): two samples of each of 3 classes."""
    return _pair(torch.randn(6, 8, generator=g), torch.tensor([0, 0, 1, 1, 2, 2]))


def _embeddings_eval(crit: nn.Module, g: torch.Generator) -> Case:
    """A head with running statistics in eval mode (they update in training only), so repeated calls agree."""
    crit.eval()
    return _embeddings(crit, g)


FAMILY_INPUTS: dict[str, Callable[[nn.Module, torch.Generator], Case]] = {
    "regression": _regression,
    "overlap": _boxes,
    "margin": _margin,
    "classification": _dense,
    "region": _dense,
    "compound": _dense,
    "forecasting": _forecast,
    "angular": _embeddings,
    "metric": _embeddings,
    "image": _images,
    "adversarial": _adversarial,
}
INPUTS: dict[str, Callable[[nn.Module, torch.Generator], Case]] = {
    "gwd": _rotated_boxes,  # (N, 5) cx, cy, w, h, theta
    "rmsle": _positive_regression,  # log1p needs values > -1
    "curricularface": _embeddings_eval,  # running t
    "adaface": _embeddings_eval,  # running feature-norm mean and std
    "vae": _vae,  # (recon, input, mu, logvar)
}


def _build(name: str, **params: Any) -> nn.Module:
    entry = losses.get(name)
    given = {**PARAMS.get(name, {}), **params}
    required = [k for k, v in entry.parameters().items() if v is inspect.Parameter.empty and k not in given]
    assert not required, f"{name} needs parameter(s) {required}: add them to PARAMS in {__name__}"
    with torch.random.fork_rng(devices=[]):  # losses owning random-initialised parameters build identically
        torch.manual_seed(0)
        return losses.build(name, **given)


def _leaves(crit: nn.Module, case: Case) -> tuple[Tensor, ...]:
    """The case's leaves and the loss's own trainable parameters (class centres ...)."""
    return case.leaves + tuple(p for p in crit.parameters() if p.requires_grad)


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
    grads = torch.autograd.grad(value, _leaves(crit, case))
    assert all(torch.isfinite(g).all() for g in grads)


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
    twin = copy.deepcopy(crit)  # the same parameters and state (running statistics) for the float32 call
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = _call(crit, args)
    assert value.dtype == torch.float32
    # the same bf16-rounded numbers in float32: only the arithmetic's precision could differ
    expected = _call(twin, tuple(_float(a) for a in args))
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)


def _compiled_matches_eager(name: str, backend: str) -> None:
    """Value and gradients of ``torch.compile(loss, fullgraph=True)`` equal eager's (on a deep copy: same state)."""
    crit = _build(name)
    case = _case(name, crit)
    twin = copy.deepcopy(crit)
    eager, value = _call(crit, case.args), _call(torch.compile(twin, backend=backend, fullgraph=True), case.args)
    torch.testing.assert_close(value, eager)
    grads = torch.autograd.grad(value, _leaves(twin, case))
    for got, expected in zip(grads, torch.autograd.grad(eager, _leaves(crit, case)), strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", _with_compile_xfail(NAMES))
def test_compiles_to_one_graph(name, fresh_dynamo):
    _compiled_matches_eager(name, backend="eager")


@pytest.mark.slow
@pytest.mark.parametrize("name", _with_compile_xfail(["giou", "poly1", "dice"]))  # overlap, classification, region
def test_inductor_compiles_representative_losses(name, fresh_dynamo):
    from torch._inductor.exc import CppCompileError, InvalidCxxCompiler

    try:
        _compiled_matches_eager(name, backend="inductor")
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
