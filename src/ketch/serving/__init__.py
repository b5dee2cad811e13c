"""Serving: KServe InferenceService, the model server, the inference gateway."""
