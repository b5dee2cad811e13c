"""ketch: Kubeflow as one Python package, a small Kubernetes specialised for ML."""

__version__ = "0.1.0"
