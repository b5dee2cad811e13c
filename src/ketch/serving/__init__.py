"""Serving: KServe InferenceService, the model server, the inference gateway."""


def __getattr__(name: str):  # noqa: ANN202 - lazy, so the control plane does not import numpy
    """``from ketch.serving import Model`` for custom models and transformers."""
    if name in ("Model", "ArrayModel"):
        from ketch.serving.modelserver import model

        return getattr(model, name)
    if name in ("InferRequest", "InferResponse", "InferInput", "InferOutput"):
        from ketch.serving.modelserver import tensors

        return getattr(tensors, name)
    raise AttributeError(name)
