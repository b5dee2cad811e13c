"""LightGBM: one ``.bst`` (text model) file, loaded as a ``lightgbm.Booster``."""

from __future__ import annotations

import numpy as np

from ketch.serving.modelserver.model import ArrayModel

FORMATS = ("lightgbm",)


class LightGBMModel(ArrayModel):
    suffixes = (".bst", ".txt")

    def load(self) -> bool:
        import lightgbm as lgb

        self._booster = lgb.Booster(model_file=self.model_file())
        self.ready = True
        return True

    def predict_array(self, x: np.ndarray) -> np.ndarray:
        return self._booster.predict(np.asarray(x, dtype=np.float64), num_threads=1)


def create(name: str, model_dir: str) -> LightGBMModel:
    return LightGBMModel(name, model_dir)
