"""Katib hyperparameter tuning as a ketch component: Experiment, Suggestion and Trial controllers, the
Experiment admission hook (defaults, then Katib's webhook rules) and the metrics routes."""

from __future__ import annotations

from ketch.kinds.definitions import FieldError
from ketch.machinery.context import Context
from ketch.runtime import start_controllers


def _admit_experiment(obj: dict, old: dict | None) -> list[FieldError]:
    from ketch.tuning.spec import default_experiment, validate_experiment

    default_experiment(obj)  # Katib's mutating webhook, applied before its validating one
    return validate_experiment(obj, old)


def setup(ctx: Context) -> None:
    import ketch.tuning as pkg
    from ketch.tuning.observations import ObservationStore
    from ketch.tuning.routes import routes

    ctx.services["katib-observations"] = ObservationStore(ctx.settings.path("katib", "observations"))
    ctx.api.add_validator("kubeflow.org", "Experiment", _admit_experiment)
    ctx.add_routes(routes(ctx))
    start_controllers(ctx, pkg.__name__, pkg.__path__)
