"""ClusterRole aggregation: a ClusterRole with an ``aggregationRule`` holds the union of the rules of the
ClusterRoles its label selectors match (``admin``/``edit``/``view``, Kubeflow's ``kubeflow-*``), rewritten
whenever any ClusterRole changes, as Kubernetes' clusterrole-aggregation controller does."""

from __future__ import annotations

from ketch.machinery import rbac_defaults
from ketch.machinery.errors import StatusError
from ketch.runtime import Controller, Key, Result


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation"
    kind = ("rbac.authorization.k8s.io/v1", "ClusterRole")
    workers = 1

    async def reconcile(self, key: Key) -> Result | None:
        try:
            rbac_defaults.apply_aggregation(self.api)
        except StatusError as e:
            if e.code == 409:  # an aggregated role moved on under us: look again
                return Result(requeue_after=0.05)
            raise
        return None


CONTROLLERS = [ClusterRoleAggregationController]
