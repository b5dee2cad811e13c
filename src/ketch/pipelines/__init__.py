"""Kubeflow Pipelines: KFP v2 IR execution, the KFP v2beta1 REST API, runs, schedules, artifacts and lineage."""
