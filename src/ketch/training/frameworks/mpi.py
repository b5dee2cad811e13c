"""MPIJob (``kubeflow.org/v2beta1``, mpi-operator's semantics): a Launcher that runs ``mpirun`` and Workers
that host the remote ranks.

As mpi-operator v2 does, the job owns a ConfigMap ``<job>-config`` mounted at ``/etc/mpi`` in the launcher,
holding the ``hostfile`` (one ``<job>-worker-<i>.<job>.<ns>.svc`` per worker with ``slotsPerWorker``
slots, in the format of ``mpiImplementation``: OpenMPI ``host slots=N``, Intel/MPICH ``host:N``; the
launcher first with ``runLauncherAsWorker``) and ``discover_hosts.sh``, and a Secret ``<job>-ssh`` with a
key pair mounted at ``sshAuthMountPath``. The launcher's env points the MPI implementation at them.

ketch runs no sshd: the ConfigMap also holds ``kubexec.sh``, the remote-shell agent the launcher's MPI
uses instead of ssh (``OMPI_MCA_plm_rsh_agent``, ``I_MPI_HYDRA_BOOTSTRAP_EXEC``, ``HYDRA_LAUNCHER_EXEC``),
which runs each remote daemon inside its worker Pod through ``pods/exec`` (``ketch.training.mpi_exec``).
A worker whose command is ``sshd`` (or that has none) therefore just stays up until it is deleted.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import ketch
from ketch.kinds.definitions import FieldError
from ketch.training.frameworks.base import Framework, Topology, active_count, env, succeeded_count

CONFIG_MOUNT = "/etc/mpi"
CONFIG_VOLUME = "mpi-job-config"
SSH_VOLUME = "ssh-auth"
# Every pod runs on this one machine under the same hostname, so MPI's per-node files (session
# directories, shared-memory segments named after the host) would collide between "nodes": each pod
# gets its own temporary directory for them.
TMP_VOLUME, TMP_MOUNT = "mpi-tmp", "/var/run/ketch-mpi"
ROLE = "training.kubeflow.org/job-role"
IMPLEMENTATIONS = ("OpenMPI", "Intel", "MPICH")
# Stays up as a worker whose sshd would wait for connections; exits 0 when the pod is deleted.
IDLE = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]
AGENT = (f'#!/bin/sh\nPYTHONPATH="{Path(ketch.__file__).resolve().parent.parent}${{PYTHONPATH:+:$PYTHONPATH}}" '
         f'exec "{sys.executable}" -m ketch.training.mpi_exec "$@"\n')


def pod_name(job: str, rtype: str, index: int) -> str:
    return f"{job}-launcher" if rtype == "Launcher" else f"{job}-worker-{index}"


def _slots(spec: dict) -> int:
    return int(spec.get("slotsPerWorker") or 1)


def _impl(spec: dict) -> str:
    return spec.get("mpiImplementation") or "OpenMPI"


def hosts(t: Topology) -> list[str]:
    ns, name = t.job["metadata"].get("namespace", "default"), t.name
    rows = [f"{name}-launcher"] if t.spec.get("runLauncherAsWorker") else []
    rows += [pod_name(name, "Worker", i) for i in range(t.replicas("Worker"))]
    return [f"{r}.{name}.{ns}.svc" for r in rows]


def hostfile(t: Topology) -> str:
    slots = _slots(t.spec)
    fmt = "{h} slots={n}\n" if _impl(t.spec) == "OpenMPI" else "{h}:{n}\n"
    return "".join(fmt.format(h=h, n=slots) for h in hosts(t))


def _ssh_keys() -> dict[str, str] | None:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # the mount is optional: without the library there is no key pair to offer
        return None
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return {"ssh-privatekey": base64.b64encode(private).decode(), "ssh-publickey": base64.b64encode(public).decode()}


def _objects(t: Topology) -> list[dict]:
    labels = {"training.kubeflow.org/job-name": t.name}
    slots = _slots(t.spec)
    out = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{t.name}-config", "labels": labels},
            "data": {"hostfile": hostfile(t), "kubexec.sh": AGENT,
                     "discover_hosts.sh": "#!/bin/sh\n" + "".join(f"echo {h}:{slots}\n" for h in hosts(t))}}]
    keys = _ssh_keys()
    if keys:
        out.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/ssh-auth",
                    "metadata": {"name": f"{t.name}-ssh", "labels": labels}, "data": keys})
    return out


def _rendezvous(t: Topology) -> list[dict]:
    """MASTER_ADDR/PORT for frameworks that rendezvous beside MPI (torch DDP under mpirun, as mpi-operator
    users set them by hand): the address of the Pod that hosts rank 0 and a real port of its own on this
    host, since the Pods' DNS names do not resolve for host processes."""
    first = ("Launcher", 0) if t.spec.get("runLauncherAsWorker") or not t.replicas("Worker") else ("Worker", 0)
    host, port = t.addr(*first)
    return [env("MASTER_ADDR", host), env("MASTER_PORT", port)]


def _env(t: Topology, rtype: str, index: int) -> list[dict]:
    if rtype != "Launcher":
        # Not on the launcher: mpirun hands its own OMPI_MCA_* to every rank, which would put all
        # "nodes" back in one directory; without it there, each worker's own value reaches its ranks.
        return [env("K_MPI_JOB_ROLE", "worker"), env("TMPDIR", TMP_MOUNT), env("OMPI_MCA_btl_vader_backing_directory", TMP_MOUNT),
                *_rendezvous(t)]
    agent, hf, slots = f"{CONFIG_MOUNT}/kubexec.sh", f"{CONFIG_MOUNT}/hostfile", _slots(t.spec)
    out = [env("K_MPI_JOB_ROLE", "launcher"), env("TMPDIR", TMP_MOUNT), *_rendezvous(t)]
    impl = _impl(t.spec)
    if impl == "OpenMPI":
        out += [env("OMPI_MCA_plm_rsh_agent", agent), env("OMPI_MCA_orte_default_hostfile", hf),
                env("OMPI_MCA_orte_keep_fqdn_hostnames", "true"), env("OMPI_MCA_orte_set_default_slots", slots)]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # ranks run as ketch's user, which here is root
            out += [env("OMPI_ALLOW_RUN_AS_ROOT", "1"), env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")]
    elif impl == "Intel":
        out += [env("I_MPI_HYDRA_HOST_FILE", hf), env("I_MPI_HYDRA_BOOTSTRAP", "rsh"),
                env("I_MPI_HYDRA_BOOTSTRAP_EXEC", agent), env("I_MPI_PERHOST", slots)]
    else:
        out += [env("HYDRA_HOST_FILE", hf), env("HYDRA_LAUNCHER", "rsh"), env("HYDRA_LAUNCHER_EXEC", agent)]
    return out


def _runs_sshd(c: dict) -> bool:
    argv = list(c.get("command") or []) or list(c.get("args") or [])
    return not argv or os.path.basename(str(argv[0])) == "sshd"


def _decorate(t: Topology, rtype: str, index: int, pod: dict) -> None:
    pod["metadata"]["labels"][ROLE] = "launcher" if rtype == "Launcher" else "worker"
    spec = pod["spec"]
    ssh_path = t.spec.get("sshAuthMountPath") or "/root/.ssh"
    ours = (CONFIG_VOLUME, SSH_VOLUME, TMP_VOLUME)
    vols = [v for v in spec.get("volumes") or [] if v.get("name") not in ours]
    vols.append({"name": TMP_VOLUME, "emptyDir": {}})
    vols.append({"name": SSH_VOLUME, "secret": {"secretName": f"{t.name}-ssh", "optional": True, "defaultMode": 0o600, "items": [
        {"key": "ssh-privatekey", "path": "id_rsa"}, {"key": "ssh-publickey", "path": "id_rsa.pub"},
        {"key": "ssh-publickey", "path": "authorized_keys"}]}})
    if rtype == "Launcher":
        vols.append({"name": CONFIG_VOLUME, "configMap": {"name": f"{t.name}-config", "items": [
            {"key": "hostfile", "path": "hostfile", "mode": 0o444}, {"key": "kubexec.sh", "path": "kubexec.sh", "mode": 0o555},
            {"key": "discover_hosts.sh", "path": "discover_hosts.sh", "mode": 0o555}]}})
    spec["volumes"] = vols
    containers = spec.get("containers") or []
    for n, c in enumerate(containers):
        mounts = [m for m in c.get("volumeMounts") or [] if m.get("name") not in ours]
        mounts.append({"name": SSH_VOLUME, "mountPath": ssh_path})
        if n == 0:
            mounts.append({"name": TMP_VOLUME, "mountPath": TMP_MOUNT})
            if rtype == "Launcher":
                mounts.append({"name": CONFIG_VOLUME, "mountPath": CONFIG_MOUNT})
        c["volumeMounts"] = mounts
    if rtype == "Worker" and containers and _runs_sshd(containers[0]):
        containers[0]["command"], containers[0]["args"] = IDLE, []


def _defer(t: Topology, rtype: str, index: int, pods: dict[str, dict]) -> bool:
    if rtype != "Launcher" or t.spec.get("launcherCreationPolicy") != "WaitForWorkersReady":
        return False
    workers = [pods.get(pod_name(t.name, "Worker", i)) for i in range(t.replicas("Worker"))]
    return not all(p is not None and (p.get("status") or {}).get("phase") == "Running" for p in workers)


def _validate(spec: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    if spec.get("slotsPerWorker") is not None and int(spec["slotsPerWorker"]) < 1:
        errs.append(FieldError("spec.slotsPerWorker", "FieldValueInvalid", "must be at least 1", spec["slotsPerWorker"]))
    p = spec.get("sshAuthMountPath")
    if p is not None and not str(p).startswith("/"):
        errs.append(FieldError("spec.sshAuthMountPath", "FieldValueInvalid", "must be an absolute path", p))
    return errs


FRAMEWORK = Framework(
    kind="MPIJob",
    version="v2beta1",
    specs_field="mpiReplicaSpecs",
    replica_types=("Launcher", "Worker"),
    container="",  # mpi-operator wires the first container of each replica
    port_name="mpi-port",
    default_port=9999,
    default_restart="Never",
    default_restarts={"Launcher": "OnFailure"},
    env=_env,
    env_all_containers=False,
    succeeded=lambda t, st: succeeded_count(st, "Launcher") >= 1,
    running=lambda t, st: active_count(st, "Launcher") > 0,
    validate=_validate,
    pod_name=pod_name,
    objects=_objects,
    decorate=_decorate,
    defer=_defer,
    extra={"single": ("Launcher",), "required": ("Launcher",), "operator_name": "mpi-operator"},
)
