"""The Ray kubelet's clean-up when what it waits on is cancelled (a Pod deleted, the kubelet stopping), on a
real one-CPU Ray instance in this process: a reservation Ray cannot place yet is killed, a container the
node's warm worker was still starting is forgotten (its process ended) once started, a placement group still
pending is removed; a placed group's bundle nodes are read once (off the event loop), and a dead node's
containers share one membership sync. The kubelet is built bare (no API server): only the parts these paths
read are set on it."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from types import SimpleNamespace

import pytest

from conftest import run_async

ray = pytest.importorskip("ray")

from ketch.kubelet import exits, ray_workers  # noqa: E402
from ketch.kubelet.ray_kubelet import RAY_NAMESPACE, RayKubelet, _Gang, container_key  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=1, namespace=RAY_NAMESPACE, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.nodes()[0]
    finally:
        ray.shutdown()


def bare(entry: dict) -> RayKubelet:
    k = RayKubelet.__new__(RayKubelet)
    k.workers, k.members, k.node_workers, k.gangs, k.containers, k.pending = {}, {"n1": entry}, {}, {}, {}, {}
    k.lost, k._syncing, k.home_id = set(), None, secrets.token_hex(4)
    k.sees_home, k.laid = {entry["NodeID"]: True}, {}  # its node sees this home: no files shipped (where ketch ships them)
    k._worker_cls, k._reservation_cls = ray.remote(ray_workers.NodeWorker), ray.remote(ray_workers.Reservation)
    k.workers["uid1"] = SimpleNamespace(pod={"metadata": {"name": "p", "annotations": {}}, "spec": {"nodeName": "n1"}})
    return k


def wait(fn, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def gone(name: str) -> bool:
    try:
        ray.get_actor(name, namespace=RAY_NAMESPACE)
    except ValueError:
        return True
    return False


async def spawn_and_cancel(k: RayKubelet, tmp_path, argv: list[str], requests: dict | None, after: float) -> str:
    """Start a container, cancel its spawn ``after`` seconds in; the key it had."""
    exit_file = str(tmp_path / "main.1.exit")
    fd = os.open(str(tmp_path / "out"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        t = asyncio.ensure_future(k.spawn(argv, {"PATH": os.environ["PATH"]}, str(tmp_path), fd, fd, requests=requests,
                                          exit_file=exit_file, pod_uid="uid1"))
        await asyncio.sleep(after)
        assert not t.done(), "the spawn ended before it could be cancelled"
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
    finally:
        os.close(fd)
    return container_key("uid1", exit_file)


async def await_until(fn, timeout: float, what: str) -> None:
    """As ``wait``, with the event loop running (the clean-up callbacks run on it)."""
    end = time.monotonic() + timeout
    while not await asyncio.to_thread(fn):
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def test_a_reservation_ray_cannot_place_is_killed_when_the_spawn_is_cancelled(cluster, tmp_path):
    k = bare(cluster)

    blocker = k._reservation_cls.options(num_cpus=1).remote()  # the one CPU is taken: a reservation of it waits
    ray.get(blocker.gpu_ids.remote())

    async def go():
        key = await spawn_and_cancel(k, tmp_path, ["sleep", "30"], {"cpu": 1.0}, after=2.0)
        await await_until(lambda: gone(ray_workers.reservation_name(k.home_id, key)), 15, "the reservation actor to be killed")

    try:
        run_async(go)
    finally:
        ray.kill(blocker)


def test_a_container_still_being_started_is_ended_once_started_when_the_spawn_is_cancelled(cluster, tmp_path):
    k = bare(cluster)  # a home of its own: its node's worker is made now, so the spawn is still under way at 0.3 s

    async def go():
        key = await spawn_and_cancel(k, tmp_path, ["sleep", "60"], None, after=0.3)
        # it did start (its supervisor records its end in the exit file) and was ended long before its 60 s
        await await_until(lambda: exits.read_exit(tmp_path / "main.1.exit") is not None, 30, "the started container to be ended")
        code = exits.read_exit(tmp_path / "main.1.exit")[0]
        assert code == -signal.SIGKILL, code  # killed by the worker forgetting it
        assert key not in await k.node_workers[cluster["NodeID"]].list.remote()

    run_async(go)


def test_a_pending_placement_group_is_removed_when_its_making_is_cancelled(cluster):
    k = bare(cluster)
    gang = _Gang("g-cancel", "PACK", 1)
    pods = [{"metadata": {}, "spec": {"containers": [{"resources": {"requests": {"cpu": "4"}}}]}}]  # cannot be placed

    async def go():
        t = asyncio.create_task(k._make_group(gang, pods))
        end = time.monotonic() + 20
        while gang.pg is None:
            assert time.monotonic() < end and not t.done(), gang.error
            await asyncio.sleep(0.1)
        pg = gang.pg
        await asyncio.sleep(0.5)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        await asyncio.sleep(1.0)
        return pg

    pg = run_async(go)
    wait(lambda: ray.util.placement_group_table(pg)["state"] == "REMOVED", 15, "the placement group to be removed")


def test_a_placed_groups_bundle_nodes_are_read_once_and_give_the_pods_node(cluster):
    k = bare(cluster)
    gang = _Gang("g-ok", "PACK", 1)
    pod = {"metadata": {"annotations": {}}, "spec": {"containers": [{"resources": {"requests": {"cpu": "10m"}}}]}}
    k.gangs["g-ok"] = gang

    async def go():
        await asyncio.wait_for(k._make_group(gang, [pod]), 60)
        return k._gang_node(pod, ("g-ok", "PACK", 1, 0))

    assert run_async(go) == ("n1", "")
    assert gang.ready and gang.bundles == {0: cluster["NodeID"]}
    ray.util.remove_placement_group(gang.pg)


def test_a_dead_nodes_containers_share_one_membership_sync(cluster):
    k = bare(cluster)
    calls = []

    async def sync_nodes():  # stands in for ray.nodes() + apply_membership: the node is found dead
        calls.append(1)
        await asyncio.sleep(0.3)
        k.lost.add("n1")

    k.sync_nodes = sync_nodes

    async def go():
        await asyncio.gather(*(k._lost_actor("n1") for _ in range(30)))

    run_async(go)
    assert len(calls) == 1
