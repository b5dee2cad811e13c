"""The kubelet's container usage on ketch's ``/metrics``, under cAdvisor's names (what the kubelet's
``/metrics/cadvisor`` serves and metrics-server reads):

- ``container_cpu_usage_seconds_total{namespace, pod, container}``: CPU time of the container's process tree;
- ``container_memory_working_set_bytes{namespace, pod, container}``: its resident memory.

Sampled from the running containers' process trees (psutil) when scraped. Only for kubelets whose
containers are local processes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ketch.kubelet import process
from ketch.runtime.metrics import REGISTRY


class ContainerUsage:
    def __init__(self, kubelet: Any) -> None:
        self.kubelet = kubelet

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        labels = ["namespace", "pod", "container"]
        cpu = CounterMetricFamily("container_cpu_usage_seconds", "CPU time of the container's processes", labels=labels)
        mem = GaugeMetricFamily("container_memory_working_set_bytes", "resident memory of the container's processes", labels=labels)
        for w in list(getattr(self.kubelet, "workers", {}).values()):
            if w.done:
                continue
            for cs in list(w.cs.values()):
                if not cs.pid or not cs.running:
                    continue
                seconds, rss = 0.0, 0
                for p in process.tree(cs.pid):
                    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                        t = p.cpu_times()
                        seconds += t.user + t.system
                        rss += p.memory_info().rss
                cpu.add_metric([w.ns, w.name, cs.name], seconds)
                mem.add_metric([w.ns, w.name, cs.name], rss)
        yield cpu
        yield mem


def register(kubelet: Any) -> None:
    if not getattr(kubelet, "local_processes", False):
        return
    with contextlib.suppress(ValueError):  # already registered in this process
        REGISTRY.register(ContainerUsage(kubelet))
