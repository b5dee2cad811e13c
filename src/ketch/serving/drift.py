"""Drift and outlier tests over logged payloads, on scipy's statistics (the tests alibi-detect runs on its
numpy/scipy backend; alibi-detect itself pins numpy<2 and pulls transformers, opencv and numba, too heavy
for an optional extra).

- Drift, ``ks`` (continuous features): a two-sample Kolmogorov-Smirnov test per feature, reference against
  the window of recent request rows, as alibi-detect's ``KSDrift``; ``chi2`` (categorical features): a
  chi-squared test of the two samples' category counts per feature, as its ``ChiSquareDrift``. The
  per-feature p-values are combined with a ``bonferroni`` correction (drift when the smallest p-value is
  below ``pValue / features``) or ``fdr`` (Benjamini-Hochberg at ``pValue``), alibi-detect's two options.
  The drift score is the largest per-feature statistic (KS distance, or chi-squared).
- Outliers: the Mahalanobis distance of each row from the reference mean under the reference covariance;
  a row is an outlier when its distance's chi-squared tail probability (features degrees of freedom) is
  below ``outlierPValue``.

Imported only where a detector runs: the control plane does not import numpy otherwise.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field

import numpy as np


class DataError(ValueError):
    """Reference or payload data that cannot be read as a numeric matrix; the message says why."""


def load_reference(path: str) -> np.ndarray:
    """A reference data set: ``.npy``, ``.csv`` (numeric, an optional header row) or ``.json`` (rows, or
    ``{"instances": rows}``); a directory holding exactly one such file."""
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.endswith((".npy", ".csv", ".json")))
        if len(files) != 1:
            raise DataError(f"{path}: expected exactly one .npy, .csv or .json file, found {files or 'none'}")
        path = os.path.join(path, files[0])
    try:
        if path.endswith(".npy"):
            x = np.load(path, allow_pickle=False)
        elif path.endswith(".csv"):
            text = open(path, encoding="utf-8").read()
            first = text.splitlines()[0] if text else ""
            skip = 1 if first and not _numeric(first.split(",")[0]) else 0
            x = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=skip, ndmin=2)
        elif path.endswith(".json"):
            doc = json.load(open(path, encoding="utf-8"))
            x = np.asarray(doc["instances"] if isinstance(doc, dict) else doc, dtype=float)
        else:
            raise DataError(f"{path}: reference data must be .npy, .csv or .json")
    except (OSError, ValueError, KeyError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: {type(e).__name__}: {e}") from None
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2:
        raise DataError(f"{path}: reference data must be a matrix with at least 2 rows (shape {x.shape})")
    return x


def _numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def request_rows(event: dict) -> list[list[float]]:
    """The input rows of one logged request event: V1 ``instances``/``inputs`` or a V2 tensor (first input)."""
    data = event.get("data")
    if not isinstance(data, dict):
        return []
    rows = data.get("instances")
    if rows is None and isinstance(data.get("inputs"), list) and data["inputs"]:
        first = data["inputs"][0]
        if isinstance(first, dict) and "data" in first:  # V2
            try:
                arr = np.asarray(first["data"], dtype=float).reshape(first.get("shape") or [-1])
            except (ValueError, TypeError):
                return []
            return arr.reshape(arr.shape[0], -1).tolist() if arr.ndim >= 1 else []
        rows = data["inputs"]
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in r)]


@dataclass
class DriftResult:
    is_drift: bool
    p_value: float  # the smallest per-feature p-value
    threshold: float  # what it was compared with (after the correction)
    distance: float  # the drift score: the largest per-feature statistic
    feature_p_values: list[float] = field(default_factory=list)
    feature_distances: list[float] = field(default_factory=list)


def drift(reference: np.ndarray, window: np.ndarray, method: str = "ks", p_value: float = 0.05, correction: str = "bonferroni") -> DriftResult:
    from scipy import stats

    if window.shape[1] != reference.shape[1]:
        raise DataError(f"requests have {window.shape[1]} features, the reference data {reference.shape[1]}")
    ps, ds = [], []
    for j in range(reference.shape[1]):
        if method == "chi2":
            cats = np.union1d(reference[:, j], window[:, j])
            table = np.array([[np.sum(reference[:, j] == c) for c in cats], [np.sum(window[:, j] == c) for c in cats]])
            if len(cats) < 2:
                ps.append(1.0)
                ds.append(0.0)
                continue
            chi2, p, _dof, _exp = stats.chi2_contingency(table)
            ps.append(float(p))
            ds.append(float(chi2))
        else:
            r = stats.ks_2samp(reference[:, j], window[:, j])
            ps.append(float(r.pvalue))
            ds.append(float(r.statistic))
    n = len(ps)
    if correction == "fdr":
        order = np.argsort(ps)
        passed = [i for i, k in enumerate(order) if ps[k] < p_value * (i + 1) / n]
        is_drift = bool(passed)
        threshold = p_value * (max(passed) + 1) / n if passed else p_value / n
    else:
        threshold = p_value / n
        is_drift = min(ps) < threshold
    return DriftResult(is_drift, min(ps), threshold, max(ds), ps, ds)


@dataclass
class OutlierModel:
    mean: np.ndarray
    inv_cov: np.ndarray

    @classmethod
    def fit(cls, reference: np.ndarray) -> OutlierModel:
        cov = np.atleast_2d(np.cov(reference, rowvar=False))
        cov = cov + np.eye(cov.shape[0]) * 1e-6 * max(1.0, float(np.trace(cov)) / cov.shape[0])  # constant features
        return cls(reference.mean(axis=0), np.linalg.pinv(cov))

    def p_values(self, rows: np.ndarray) -> np.ndarray:
        from scipy import stats

        d = rows - self.mean
        m2 = np.einsum("ij,jk,ik->i", d, self.inv_cov, d)
        return stats.chi2.sf(m2, df=rows.shape[1])
