"""ONNX: one ``.onnx`` file run by onnxruntime on CPU; the first output is the prediction.

The input matrix is cast to the dtype the graph's first input declares, so V1 JSON numbers (float64) work
against float32 graphs as users expect.
"""

from __future__ import annotations

import numpy as np

from ketch.serving.modelserver.model import ArrayModel

FORMATS = ("onnx",)
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(float16)": np.float16}


class ONNXModel(ArrayModel):
    suffixes = (".onnx",)

    def load(self) -> bool:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self._sess = ort.InferenceSession(self.model_file(), sess_options=opts, providers=["CPUExecutionProvider"])
        inp = self._sess.get_inputs()[0]
        self._input = inp.name
        self._dtype = _ORT_TYPES.get(inp.type, np.float32)
        self.ready = True
        return True

    def predict_array(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run(None, {self._input: np.asarray(x, dtype=self._dtype)})[0]

    def get_input_types(self) -> list[dict]:
        return [{"name": i.name, "datatype": i.type, "shape": [d if isinstance(d, int) else -1 for d in i.shape]} for i in self._sess.get_inputs()]


def create(name: str, model_dir: str) -> ONNXModel:
    return ONNXModel(name, model_dir)
