"""PyTorch: a TorchScript file (``.pt``/``.pth``, ``torch.jit.save``) or an exported program
(``.pt2``, ``torch.export.save``), run under ``torch.inference_mode`` on CPU."""

from __future__ import annotations

import numpy as np

from ketch.serving.modelserver.model import ArrayModel

FORMATS = ("pytorch", "torchscript")


class PyTorchModel(ArrayModel):
    suffixes = (".pt", ".pth", ".pt2")

    def load(self) -> bool:
        import torch

        self._torch = torch
        torch.set_num_threads(1)
        path = self.model_file()
        if path.endswith(".pt2"):
            self._module = torch.export.load(path).module()
        else:
            self._module = torch.jit.load(path, map_location="cpu")
            self._module.eval()
        self.ready = True
        return True

    def predict_array(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            t = torch.as_tensor(np.asarray(x, dtype=np.float32))
            out = self._module(t)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.detach().numpy()


def create(name: str, model_dir: str) -> PyTorchModel:
    return PyTorchModel(name, model_dir)
