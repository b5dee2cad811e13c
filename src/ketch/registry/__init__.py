"""Model registry: Kubeflow Model Registry's REST API over registered models, versions and artifacts."""
