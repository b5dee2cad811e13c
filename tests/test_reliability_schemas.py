"""Kubeflow's kinds have structural schemas complete enough that ``kubectl apply`` (strict field validation)
refuses a misspelled field, as on a real cluster with the upstream CRDs, while the correct spelling applies."""

from __future__ import annotations

import pytest

ISVC = """apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {{name: strict-isvc}}
spec:
  predictor:
    minReplicas: 0
    serviceAccountName: default
    model:
      modelFormat: {{name: sklearn}}
      {field}: gs://kfserving-examples/models/sklearn/1.0/model
      resources: {{requests: {{cpu: 100m}}}}
"""
EXPERIMENT = """apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {{name: strict-exp}}
spec:
  objective: {{type: minimize, objectiveMetricName: loss}}
  algorithm: {{algorithmName: random}}
  {field}: 4
  parameters:
  - {{name: lr, parameterType: double, feasibleSpace: {{min: "0.01", max: "0.1"}}}}
  trialTemplate:
    primaryContainerName: training
    trialParameters: [{{name: lr, reference: lr}}]
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec: {{template: {{spec: {{restartPolicy: Never, containers: [{{name: training, image: python, command: [python, -c, "print('${{trialParameters.lr}}')"]}}]}}}}}}
"""
NOTEBOOK = """apiVersion: kubeflow.org/v1
kind: Notebook
metadata: {{name: strict-nb}}
spec:
  template:
    spec:
      {field}: [{{name: nb, image: jupyter/base-notebook}}]
"""
RUNTIME = """apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata: {{name: strict-rt}}
spec:
  {field}: [{{name: sklearn, autoSelect: true}}]
  containers: [{{name: kserve-container, image: kserve/sklearnserver}}]
"""
PYTORCHJOB = """apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {{name: strict-pj}}
spec:
  runPolicy: {{suspend: true}}
  pytorchReplicaSpecs:
    Master:
      {field}: 1
      template: {{spec: {{containers: [{{name: pytorch, image: python}}]}}}}
"""


@pytest.mark.parametrize("manifest, good, typo, where", [
    (ISVC, "storageUri", "storageURI", "spec.predictor.model.storageURI"),
    (EXPERIMENT, "maxTrialCount", "maxTrialCounts", "spec.maxTrialCounts"),
    (NOTEBOOK, "containers", "container", "spec.template.spec.container"),
    (RUNTIME, "supportedModelFormats", "supportedModelFormat", "spec.supportedModelFormat"),
    (PYTORCHJOB, "replicas", "replica", "spec.pytorchReplicaSpecs.Master.replica"),
], ids=["inferenceservice", "experiment", "notebook", "servingruntime", "pytorchjob"])
def test_strict_field_validation_refuses_misspelled_fields(shared_ketch, manifest, good, typo, where):
    k = shared_ketch
    r = k.kubectl("apply", "-f", "-", input=manifest.format(field=typo), check=False)
    assert r.returncode != 0, r.stdout
    assert f'unknown field "{where}"' in r.stderr, r.stderr
    r = k.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest.format(field=good), check=False)
    assert r.returncode == 0, r.stderr
