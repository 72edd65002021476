"""scikit-learn baselines fitted on the same training split and the same fitted preprocessing as the network.

- linear: ``LogisticRegression`` (classification, C=1) or ``Ridge`` (regression, alpha=1) on the scaled numeric
  columns, the missing-value indicators and one-hot categories (unknown and missing included);
- ``HistGradientBoosting{Classifier,Regressor}`` with default settings on the scaled numeric columns, the
  indicators and the category codes as native categorical features.

Outputs are what :class:`tasks.tabular.metrics.TabularMetrics` reads: probabilities or values in the target's units.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from tasks.tabular.data import Encoded, Preprocessor
from tasks.tabular.metrics import TabularMetrics

BASELINES = ("linear", "hgb")
MAX_NATIVE_CATEGORIES = 255  # HistGradientBoosting's max_bins


def baseline_label(name: str, problem: str) -> str:
    if name == "linear":
        return "logistic regression" if problem == "classification" else "ridge regression"
    return "hist gradient boosting"


def _hgb_matrix(pre: Preprocessor, encoded: Encoded) -> tuple[np.ndarray, np.ndarray | None]:
    cards = pre.cardinalities
    if any(c > MAX_NATIVE_CATEGORIES for c in cards):
        return pre.one_hot(encoded), None
    matrix = np.concatenate([encoded.numeric.astype(np.float64), encoded.categorical.astype(np.float64)], axis=1)
    mask = np.array([False] * encoded.numeric.shape[1] + [True] * len(cards), dtype=bool)
    return matrix, (mask if mask.any() else None)


def fit_baselines(pre: Preprocessor, train: Encoded, seed: int = 0, threads: int | None = None) -> dict[str, Any]:
    """``{"linear": model, "hgb": model}`` fitted on the encoded training split (``threads``: OpenMP/BLAS limit)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    assert train.target is not None
    matrix, mask = _hgb_matrix(pre, train)
    if pre.problem == "classification":
        y = train.target
        linear = LogisticRegression(max_iter=5000)
        hgb = HistGradientBoostingClassifier(random_state=seed, categorical_features=mask)
    else:
        y = pre.decode_target(train.target.astype(np.float64))
        linear = Ridge(alpha=1.0)
        hgb = HistGradientBoostingRegressor(random_state=seed, categorical_features=mask)
    with warnings.catch_warnings(), threadpool_limits(threads):
        warnings.simplefilter("ignore")  # convergence chatter on tiny tables; the metrics tell the story
        linear.fit(pre.one_hot(train), y)
        hgb.fit(matrix, y)
    return {"linear": linear, "hgb": hgb}


def baseline_output(name: str, model: Any, pre: Preprocessor, encoded: Encoded) -> torch.Tensor:
    """Probabilities ``(N,)`` (two classes) / ``(N, C)``, or values in the target's units ``(N,)``."""
    matrix = pre.one_hot(encoded) if name == "linear" else _hgb_matrix(pre, encoded)[0]
    if pre.problem != "classification":
        return torch.as_tensor(model.predict(matrix), dtype=torch.float32)
    seen = model.predict_proba(matrix)
    probs = np.zeros((len(encoded), len(pre.classes)))
    probs[:, model.classes_.astype(int)] = seen  # a class absent from training keeps probability 0
    probs = torch.as_tensor(probs, dtype=torch.float32)
    return probs[:, 1] if len(pre.classes) == 2 else probs


def evaluate_baselines(
    pre: Preprocessor, encoded: dict[str, Encoded], splits: tuple[str, ...], seed: int = 0, threads: int | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """``{baseline: {split: {metric: value}}}`` for models fitted on ``encoded["train"]``."""
    models = fit_baselines(pre, encoded["train"], seed, threads)
    results: dict[str, dict[str, dict[str, float]]] = {}
    with threadpool_limits(threads):
        for name, model in models.items():
            results[name] = {}
            for split in splits:
                data = encoded[split]
                assert data.target is not None
                target = torch.as_tensor(data.target)
                if pre.problem != "classification":
                    target = torch.as_tensor(pre.decode_target(data.target.astype(np.float64)), dtype=torch.float32)
                metrics = TabularMetrics(pre.problem, max(2, len(pre.classes)))
                metrics.update(baseline_output(name, model, pre, data), target)
                results[name][split] = metrics.compute()
    return results
