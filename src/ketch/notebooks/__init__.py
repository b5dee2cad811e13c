"""Notebooks: kubeflow.org/v1 Notebook, run as a Pod and reached at /notebook/<namespace>/<name>/."""
