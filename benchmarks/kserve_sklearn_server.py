"""KServe's own Python model server serving a scikit-learn model, for benchmarks/serving.py.

Runs inside a virtualenv with ``kserve`` from PyPI (never ketch's environment: kserve pins many packages).
``sklearnserver`` is not on PyPI, so this reproduces what it does: ``joblib.load`` the one model file and
``predict`` through kserve's ``get_predict_input``/``get_predict_response`` helpers, on ``kserve.ModelServer``
with one worker and its default logging. Bound to 127.0.0.1 (KServe hard-codes 0.0.0.0).
"""

import argparse

import joblib
import uvicorn

_orig = uvicorn.Config.__init__


def _loopback(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003
    kw["host"] = "127.0.0.1"
    _orig(self, *a, **kw)


uvicorn.Config.__init__ = _loopback

import kserve  # noqa: E402
from kserve import Model, ModelServer  # noqa: E402
from kserve.utils.utils import get_predict_input, get_predict_response  # noqa: E402


class SKLearnModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path

    def load(self) -> bool:
        self._model = joblib.load(self.path)
        self.ready = True
        return True

    def predict(self, payload, headers=None):  # noqa: ANN001, ANN201
        instances = get_predict_input(payload)
        return get_predict_response(payload, self._model.predict(instances), self.name)


if __name__ == "__main__":
    p = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    p.add_argument("--model_path", required=True)
    args, _ = p.parse_known_args()
    m = SKLearnModel(args.model_name, args.model_path)
    m.load()
    ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start([m])
