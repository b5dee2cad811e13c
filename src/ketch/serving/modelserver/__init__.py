"""ketch's model server: KServe's V1 and V2 (Open Inference Protocol) REST and gRPC data planes over a
registry of model formats, with adaptive batching, Prometheus metrics and request logging.

Run one with ``python -m ketch.serving.modelserver --model-name NAME --model-dir DIR --http-port PORT``.
"""
