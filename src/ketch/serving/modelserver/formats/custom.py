"""Custom Python models: ``--model-class module:Class`` (or format ``custom`` with a ``model.py`` in the
model dir defining one ``ketch.serving.Model`` subclass). The class is built with ``(name)`` and, when its
constructor accepts it, ``model_dir``; transformers also get ``predictor_host`` from the server."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys

from ketch.serving.modelserver.model import Model

FORMATS = ("custom", "python")


def load_class(spec: str | None, model_dir: str) -> type[Model]:
    if spec:
        mod_name, _, cls_name = spec.partition(":")
        if os.path.isdir(model_dir) and model_dir not in sys.path:
            sys.path.insert(0, model_dir)
        mod = importlib.import_module(mod_name)
        return getattr(mod, cls_name)
    path = os.path.join(model_dir, "model.py")
    if not os.path.exists(path):
        raise RuntimeError(f"custom model: {path} not found and no --model-class given")
    s = importlib.util.spec_from_file_location("ketch_custom_model", path)
    assert s and s.loader
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    found = [c for c in vars(mod).values() if inspect.isclass(c) and issubclass(c, Model) and c.__module__ == mod.__name__]
    if len(found) != 1:
        raise RuntimeError(f"custom model: {path} must define exactly one Model subclass, found {len(found)}")
    return found[0]


def build(cls: type[Model], name: str, model_dir: str, predictor_host: str | None = None) -> Model:
    params = inspect.signature(cls.__init__).parameters
    kw = {}
    if "model_dir" in params:
        kw["model_dir"] = model_dir
    if "predictor_host" in params:
        kw["predictor_host"] = predictor_host
    m = cls(name, **kw)
    if predictor_host and not m.predictor_host:
        m.predictor_host = predictor_host
    return m


def create(name: str, model_dir: str) -> Model:
    return build(load_class(os.environ.get("KETCH_MODEL_CLASS"), model_dir), name, model_dir)
