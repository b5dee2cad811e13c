"""XGBoost: one ``.bst``, ``.json`` or ``.ubj`` booster file, predicted through a DMatrix."""

from __future__ import annotations

import os

import numpy as np

from ketch.serving.modelserver.model import ArrayModel

FORMATS = ("xgboost",)


class XGBoostModel(ArrayModel):
    suffixes = (".bst", ".json", ".ubj")

    def load(self) -> bool:
        import xgboost as xgb

        self._xgb = xgb
        self._booster = xgb.Booster(params={"nthread": int(os.environ.get("NTHREAD", "1"))}, model_file=self.model_file())
        self.ready = True
        return True

    def predict_array(self, x: np.ndarray) -> np.ndarray:
        return self._booster.predict(self._xgb.DMatrix(np.asarray(x, dtype=np.float32)))


def create(name: str, model_dir: str) -> XGBoostModel:
    return XGBoostModel(name, model_dir)
