"""Notebooks: kubeflow.org/v1 Notebook."""
