"""Stubs generated from ``open_inference.proto`` (``python -m grpc_tools.protoc -I src --python_out=src
--grpc_python_out=src src/ketch/serving/modelserver/oip/open_inference.proto``)."""
