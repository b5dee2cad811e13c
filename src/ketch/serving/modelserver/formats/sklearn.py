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
        self._fn = self._model.predict_proba if proba else self._model.predict
        self.ready = True
        return True

    def predict_array(self, x: np.ndarray) -> np.ndarray:
        return self._fn(x)


def create(name: str, model_dir: str) -> SKLearnModel:
    return SKLearnModel(name, model_dir)
