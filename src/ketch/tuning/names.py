"""Kinds, labels and condition names shared by the tuning controllers."""

EXPERIMENT = ("kubeflow.org/v1beta1", "Experiment")
SUGGESTION = ("kubeflow.org/v1beta1", "Suggestion")
TRIAL = ("kubeflow.org/v1beta1", "Trial")
POD = ("v1", "Pod")
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
TRIAL_LABEL = "katib.kubeflow.org/trial"
TRIAL_TERMINAL = ("Succeeded", "Failed", "Killed", "MetricsUnavailable", "EarlyStopped")


def true_condition(obj: dict, *types: str) -> str | None:
    """The first of ``types`` whose condition is True on ``obj``."""
    conds = {c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []}
    for t in types:
        if conds.get(t) == "True":
            return t
    return None
