"""The model servers' own series on ketch's ``/metrics``: KServe's names per model, with the replica's
place added.

Each replica serves ``/metrics`` on its own loopback port (KServe's ``request_preprocess_seconds``,
``request_predict_seconds``, ``request_postprocess_seconds``, ``request_explain_seconds``, ketch's
``ketch_model_requests_total``, ``ketch_model_request_duration_seconds``, ``ketch_model_batch_size``, the
logger's ``kserve_logger_*``). In Kubernetes Prometheus would discover and scrape each Pod; on one machine
the ports are ketch's business, so ketch scrapes every ready replica every
``KETCH_SERVING_SCRAPE_INTERVAL`` seconds (default 15) and re-exports those families with the labels
``namespace``, ``inferenceservice``, ``component``, ``revision`` and ``endpoint`` added: one scrape of
ketch sees every model.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ketch.runtime.metrics import REGISTRY
from ketch.serving.router import Router

log = logging.getLogger(__name__)
KEEP = ("request_preprocess_seconds", "request_predict_seconds", "request_postprocess_seconds", "request_explain_seconds",
        "ketch_model_", "kserve_logger_")
EXTRA = ("namespace", "inferenceservice", "component", "revision", "endpoint")


class Federation:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.families: dict[str, list[Metric]] = {}  # endpoint -> its families, labels added

    async def scrape_once(self, client: Any) -> None:
        targets = [(r.namespace, r.name, comp, t.revision, ep) for r in list(self.router.routes.values())
                   for comp, ts in r.components.items() for t in ts for ep in t.endpoints]

        async def one(ns: str, isvc: str, comp: str, rev: str, ep: str) -> tuple[str, list[Metric] | None]:
            try:
                r = await client.get(f"http://{ep}/metrics")
                if r.status_code != 200:
                    return ep, None
            except Exception:  # noqa: BLE001 - a replica going away mid-scrape is normal
                return ep, None
            out = []
            for fam in text_string_to_metric_families(r.text):
                if not fam.name.startswith(KEEP):
                    continue
                m = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                extra = dict(zip(EXTRA, (ns, isvc, comp, rev, ep), strict=True))
                for s in fam.samples:
                    m.add_sample(s.name, {**s.labels, **extra}, s.value, s.timestamp)
                out.append(m)
            return ep, out

        results = await asyncio.gather(*(one(*t) for t in targets))
        self.families = {ep: fams for ep, fams in results if fams is not None}

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        merged: dict[str, Metric] = {}
        for fams in list(self.families.values()):
            for f in fams:
                m = merged.get(f.name)
                if m is None:
                    m = merged[f.name] = Metric(f.name, f.documentation, f.type, f.unit)
                m.samples.extend(f.samples)
        yield from merged.values()


def _factory(ctx: Any) -> Callable[[], Coroutine[Any, Any, None]]:
    fed = Federation(ctx.services.setdefault("serving-router", Router()))
    try:
        REGISTRY.register(fed)
    except ValueError:
        pass
    interval = float(os.environ.get("KETCH_SERVING_SCRAPE_INTERVAL", "15"))

    async def loop() -> None:
        import httpx

        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                await fed.scrape_once(client)
                await asyncio.sleep(interval)

    return loop


TASKS = [_factory]
