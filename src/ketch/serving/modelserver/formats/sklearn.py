"""scikit-learn: exactly one ``.joblib``/``.pkl``/``.pickle`` in the model dir, loaded with joblib.

``PREDICT_PROBA=true`` answers with class probabilities instead of labels, as KServe's sklearnserver does.
"""

from __future__ import annotations

import os

import numpy as np

from ketch.serving.modelserver.model import ArrayModel

FORMATS = ("sklearn", "scikit-learn")


class SKLearnModel(ArrayModel):
    suffixes = (".joblib", ".pkl", ".pickle")

    def load(self) -> bool:
        import joblib

        self._model = joblib.load(self.model_file())
        proba = os.environ.get("PREDICT_PROBA", "").lower() == "true" and hasattr(self._model, "predict_proba")
        self._fn = self._model.predict_proba if proba else (_linear_predict(self._model) or self._model.predict)
        self.ready = True
        return True

    def predict_array(self, x: np.ndarray) -> np.ndarray:
        return self._fn(x)


def _linear_predict(model: object):  # noqa: ANN202
    """For scikit-learn's own linear models, ``predict`` as the arithmetic it is (scores = X @ coef.T + b;
    a class by sign or argmax), skipping sklearn's per-call validation, which costs more than the model on
    one row. Anything but a finite numeric matrix of the right width still goes through sklearn, so errors
    read the same."""
    from sklearn.base import ClassifierMixin, RegressorMixin

    if not type(model).__module__.startswith("sklearn.linear_model") or not hasattr(model, "coef_"):
        return None
    coef = np.asarray(model.coef_, dtype=np.float64)
    bias = np.asarray(model.intercept_, dtype=np.float64)
    width = coef.shape[-1]
    slow = model.predict
    if isinstance(model, ClassifierMixin) and hasattr(model, "classes_") and coef.ndim == 2:
        classes = model.classes_
        coef_t = coef.T.copy()

        def predict(x: np.ndarray) -> np.ndarray:
            if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != width or x.dtype.kind not in "fiu" or not np.isfinite(x).all():
                return slow(x)
            s = x @ coef_t + bias
            return classes[(s[:, 0] > 0).astype(np.intp)] if s.shape[1] == 1 else classes[s.argmax(axis=1)]

        return predict
    if isinstance(model, RegressorMixin) and coef.ndim == 1:

        def regress(x: np.ndarray) -> np.ndarray:
            if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != width or x.dtype.kind not in "fiu" or not np.isfinite(x).all():
                return slow(x)
            return x @ coef + bias

        return regress
    return None


def create(name: str, model_dir: str) -> SKLearnModel:
    return SKLearnModel(name, model_dir)
