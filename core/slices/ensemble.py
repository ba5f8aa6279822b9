"""Combining member classifiers: a stacking meta-learner and soft voting.

The meta-learner is a multinomial logistic regression on the members' log-probabilities,
fitted on held-out (validation) predictions only, never on a test set. It is stored as plain
JSON (coefficients and intercepts), so loading it runs no pickled code.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

_EPS = 1e-6


def _features(member_probs: list[np.ndarray]) -> np.ndarray:
    """``(N, M*K)`` log-probabilities of ``M`` members over ``K`` classes."""
    return np.concatenate([np.log(np.clip(p, _EPS, 1.0)) for p in member_probs], axis=1)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def soft_vote(member_probs: list[np.ndarray]) -> np.ndarray:
    """Unweighted mean of the members' probabilities ``(N, K)``."""
    return np.mean(np.stack(member_probs), axis=0)


@dataclass
class StackingEnsemble:
    """Logistic-regression meta-learner over ordered members' probabilities."""

    members: list[str]
    classes: list[str]
    coef: list[list[float]]          # (K, M*K)
    intercept: list[float]           # (K,)
    temperature: float = 1.0         # post-hoc calibration of the meta-learner's logits
    info: dict = field(default_factory=dict)
    member_tta: str = "none"         # test-time augmentation of the members it was fitted on

    def logits(self, member_probs: list[np.ndarray]) -> np.ndarray:
        if len(member_probs) != len(self.members):
            raise ValueError(f"expected {len(self.members)} members' probabilities, got {len(member_probs)}")
        return _features(member_probs) @ np.asarray(self.coef).T + np.asarray(self.intercept)

    def predict_proba(self, member_probs: list[np.ndarray], calibrated: bool = True) -> np.ndarray:
        """Ensemble probabilities ``(N, K)``; temperature-scaled unless ``calibrated`` is False."""
        return softmax(self.logits(member_probs), self.temperature if calibrated else 1.0)

    @classmethod
    def equal_weights(cls, members: list[str], classes: list[str]) -> "StackingEnsemble":
        """The meta-learner with nothing fitted: each class's logit is the mean of the members'
        log-probabilities of that class (their normalised geometric mean)."""
        k = len(classes)
        coef = np.zeros((k, len(members) * k))
        for m in range(len(members)):
            coef[np.arange(k), m * k + np.arange(k)] = 1.0 / len(members)
        return cls(members, classes, coef.tolist(), [0.0] * k, info={"combiner": "equal-weight log-linear pool"})

    @classmethod
    def fit(cls, member_probs: list[np.ndarray], labels: np.ndarray, members: list[str], classes: list[str],
            seed: int = 0, sample_weight: np.ndarray | None = None, groups: np.ndarray | None = None
            ) -> "StackingEnsemble":
        """Fit on held-out predictions; ``C`` chosen by 5-fold cross-validation (stratified, and
        grouped by patient when ``groups`` is given); ``sample_weight`` balances sources."""
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

        x = _features(member_probs)
        cv = _folds(labels, groups, 5, seed)
        search = LogisticRegressionCV(Cs=np.logspace(-3, 2, 11).tolist(), cv=cv, max_iter=5000,
                                      scoring="neg_log_loss", random_state=seed)
        search.fit(x, labels, sample_weight=sample_weight)
        c_value = float(search.C_[0])
        final = LogisticRegression(C=c_value, max_iter=5000, random_state=seed).fit(x, labels,
                                                                                   sample_weight=sample_weight)
        coef = np.zeros((len(classes), x.shape[1]))
        intercept = np.full(len(classes), -50.0)  # classes absent from the fit stay impossible
        coef[final.classes_] = final.coef_
        intercept[final.classes_] = final.intercept_
        return cls(members, classes, coef.tolist(), intercept.tolist(), info={"C": c_value})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> "StackingEnsemble":
        return cls(**json.loads(Path(path).read_text()))


def _folds(labels: np.ndarray, groups: np.ndarray | None, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds; grouped (no patient on both sides) when ``groups`` is given."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if groups is None:
        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels))
    return list(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(labels, labels, groups))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """Temperature minimising the (weighted) negative log-likelihood (Guo et al. 2017), in [0.05, 20]."""
    from scipy.optimize import minimize_scalar

    w = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))
        return float(-np.average(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0)), weights=w))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def out_of_fold_proba(member_probs: list[np.ndarray], labels: np.ndarray, members: list[str], classes: list[str],
                      folds: int = 5, seed: int = 0, sample_weight: np.ndarray | None = None,
                      groups: np.ndarray | None = None) -> np.ndarray:
    """Cross-validated meta-learner probabilities on the fitting set (an honest estimate of it);
    folds keep each patient of ``groups`` on one side."""
    out = np.zeros((len(labels), len(classes)))
    for fit_idx, pred_idx in _folds(labels, groups, folds, seed):
        model = StackingEnsemble.fit([p[fit_idx] for p in member_probs], labels[fit_idx], members, classes, seed,
                                     None if sample_weight is None else sample_weight[fit_idx],
                                     None if groups is None else groups[fit_idx])
        out[pred_idx] = model.predict_proba([p[pred_idx] for p in member_probs], calibrated=False)
    return out
