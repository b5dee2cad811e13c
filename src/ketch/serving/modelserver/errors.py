"""The data plane's errors, each carrying the HTTP status and gRPC code KServe answers with.

Handlers raise these; the REST and gRPC front ends turn them into ``{"error": "..."}`` bodies or gRPC
statuses, so every error path answers the same way whichever protocol asked.
"""

from __future__ import annotations


class ServingError(Exception):
    status = 500
    grpc_code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServingError):
    status = 400
    grpc_code = "INVALID_ARGUMENT"


class ModelNotFound(ServingError):
    status = 404
    grpc_code = "NOT_FOUND"

    def __init__(self, name: str) -> None:
        super().__init__(f"Model with name {name} does not exist.")


class ModelNotReady(ServingError):
    status = 503
    grpc_code = "UNAVAILABLE"

    def __init__(self, name: str) -> None:
        super().__init__(f"Model with name {name} is not ready.")


class NotImplementedByServer(ServingError):
    status = 501
    grpc_code = "UNIMPLEMENTED"


class InferenceError(ServingError):
    status = 500
    grpc_code = "INVALID_ARGUMENT"  # as KServe's gRPC server maps it
