"""Leader election over a real Lease in a real store (runtime/leader.py), with short durations: candidates in
one process here, as several ketch processes would be on one database (tests/test_multi_ketch.py runs it
across real processes)."""

from __future__ import annotations

import asyncio
import time

import pytest

from conftest import run_async
from ketch.kinds.meta import now_micro
from ketch.machinery.api import Api
from ketch.machinery.client import Client
from ketch.runtime.leader import LEASE, ElectionConfig, LeaderElector
from ketch.store import open_store

# Short, but not so short that a loaded 2-core CI machine misses a renewal (a missed renew deadline is a
# lost lead, which these tests would read as a failure).
FAST = {"lease_duration": 2.5, "renew_deadline": 1.5, "retry_period": 0.1}


@pytest.fixture
def api(tmp_path):
    a = Api(open_store(tmp_path / "ketch.db"))
    a.create(a.rd("v1", "Namespace"), "", {"metadata": {"name": "kube-system"}})
    yield a
    a.store.close()


class Candidate:
    def __init__(self, api: Api, name: str) -> None:
        self.elector = LeaderElector(api, ElectionConfig(identity=name, **FAST))
        self.events: list[str] = []
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        async def lead() -> None:
            self.events.append("lead")

        async def stand_down() -> None:
            self.events.append("stand-down")

        self.task = asyncio.create_task(self.elector.run(lead, stand_down))

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


run = run_async  # its loop in a thread of its own (conftest.py says why)


def lease(api: Api) -> dict:
    return Client(api).get(LEASE, "kube-system", "ketch-controller-manager")


async def until(pred, timeout: float) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


def test_durations_that_do_not_fit_are_refused_by_name():
    with pytest.raises(ValueError, match="renew deadline"):
        ElectionConfig(lease_duration=15, renew_deadline=2, retry_period=2)
    with pytest.raises(ValueError, match="lease duration"):
        ElectionConfig(lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError, match="retry period"):
        ElectionConfig(retry_period=0)


def test_one_leads_the_other_waits_and_takes_over_when_it_is_released(api):
    async def main() -> None:
        a, b = Candidate(api, "a"), Candidate(api, "b")
        a.start()
        await until(lambda: a.elector.leading, 5)
        b.start()
        await asyncio.sleep(FAST["lease_duration"] + 0.5)  # longer than the lease: a renews, so b never takes it
        assert a.elector.leading and not b.elector.leading and b.events == []
        assert lease(api)["spec"]["holderIdentity"] == "a"
        await a.stop()  # a clean stop releases the Lease
        assert lease(api)["spec"]["holderIdentity"] == ""
        took = await until(lambda: b.elector.leading, 5)
        assert took < FAST["lease_duration"], "a released Lease is taken at once, not once it would have expired"
        spec = lease(api)["spec"]
        assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
        await b.stop()

    run(main)


def test_a_lease_held_by_a_dead_holder_is_taken_after_it_expires(api):
    """A holder that stops renewing (a kill -9) keeps the Lease for leaseDurationSeconds, counted from when
    the candidate saw it last change, not from the renewTime it names."""
    stamp = now_micro()
    Client(api).create({"apiVersion": LEASE[0], "kind": LEASE[1], "metadata": {"name": "ketch-controller-manager", "namespace": "kube-system"},
                        "spec": {"holderIdentity": "ghost", "leaseDurationSeconds": 1, "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0}})

    async def main() -> None:
        c = Candidate(api, "c")
        c.start()
        took = await until(lambda: c.elector.leading, 8)
        assert took >= 1.0, f"took the Lease after {took:.2f}s, before it expired"
        spec = lease(api)["spec"]
        assert spec["holderIdentity"] == "c" and spec["leaseTransitions"] == 1
        await c.stop()

    run(main)


def test_a_leader_that_finds_another_holder_stands_down_at_once(api):
    async def main() -> None:
        a = Candidate(api, "a")
        a.start()
        await until(lambda: a.elector.leading, 5)
        cur = lease(api)
        cur["spec"]["holderIdentity"] = "usurper"  # e.g. a took too long to renew and another took over
        Client(api).update(cur)
        lost = await until(lambda: not a.elector.leading, 5)
        assert lost < FAST["renew_deadline"] and a.events == ["lead", "stand-down"]
        # The usurper never renews: once its lease runs out, a leads again.
        await until(lambda: a.elector.leading, 10)
        assert a.events == ["lead", "stand-down", "lead"]
        await a.stop()

    run(main)
