"""A Pod's files on a Ray node that does not share ketch's filesystem: what goes there, what comes back.

The local kubelet lays a Pod's files under KETCH_HOME (its kubeconfig, ServiceAccount token, configMap,
secret and downwardAPI volumes in ``kubelet/pods/<uid>``; a pipeline task's task file in its task
directory) and its containers name them by path. On another machine those paths do not exist, so when a
node's warm worker says it does not see ketch's home (``sees``: a marker file with this ketch's token), the
Ray kubelet ships the files with the container's start and the worker lays them at the *same absolute
paths* on its node (so nothing in argv, env or the files themselves needs rewriting):

- the pod directory's own files (the kubeconfig) and the files of its projected kinds of volume
  (configMap, secret, downwardAPI, projected: the token);
- empty: the pod's ``exits`` directory, its default working directory, its emptyDir volumes (node-local,
  shared by the pod's containers on that node, as on Kubernetes) and any working directory under the home;
- a directory that the command names a file of (or names), under one of the roots components declare
  for such directories (``ctx.services["pod_file_roots"]``: the pipelines' run directories), so a Pod's
  argv cannot make ketch ship another Pod's token or ketch's keys to a node: a pipeline task's directory.
  It goes, and **comes back**: when the container has ended,
  the files in it that are new or changed on the node (the task's ``result.json``) are returned with its
  last output and written here before its end is reported, so whoever reads them (the pipeline
  controller) finds them as on one machine;
- the directories of PATH entries under the home (the torchrun shim).

Output and exit status come back through the worker anyway (``read``). Not shipped: PersistentVolumeClaim
and hostPath volumes (they need a path every node shares), files over ``MAX_FILE``, and anything past
``MAX_TOTAL`` per start. Standard library only: the worker imports it on its node.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)
MAX_FILE = 8 << 20
MAX_TOTAL = 64 << 20
SKIP = {"state.json", "state.json.tmp"}  # the kubelet's own record of the pod: not the container's
PROJECTED = ("configMap", "secret", "downwardAPI", "projected")


def _under(path: str, root: str) -> bool:
    return os.path.commonpath([os.path.abspath(path), os.path.abspath(root)]) == os.path.abspath(root)


class _Bundle:
    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, int]] = {}
        self.dirs: list[str] = []
        self.back: list[str] = []
        self.total = 0

    def dir(self, d: str | Path) -> None:
        if str(d) not in self.dirs:
            self.dirs.append(str(d))

    def file(self, p: Path) -> None:
        try:
            st = p.stat()
            if not stat.S_ISREG(st.st_mode) or str(p) in self.files:
                return
            if st.st_size > MAX_FILE or self.total + st.st_size > MAX_TOTAL:
                log.warning("ray kubelet: not shipping %s (%d bytes) to its node: over the limit", p, st.st_size)
                return
            self.files[str(p)] = (p.read_bytes(), stat.S_IMODE(st.st_mode))
            self.total += st.st_size
        except OSError:
            return

    def tree(self, d: Path, files: bool = True) -> None:
        for root, _subdirs, names in os.walk(d):
            self.dir(root)
            if files:
                for n in sorted(names):
                    self.file(Path(root) / n)

    def out(self) -> dict:
        return {"files": self.files, "dirs": self.dirs, "back": self.back}


def collect(pod: dict, pod_dir: Path, home: Path, argv: list[str], env: dict[str, str], cwd: str, roots: Sequence[str] = ()) -> dict:
    """What a container of ``pod`` needs of ketch's files on a node that does not share them:
    ``{"files": {path: (bytes, mode)}, "dirs": [made empty if missing], "back": [dirs whose changes come back]}``."""
    b = _Bundle()
    home_s, pod_s, pvcs = str(home), str(pod_dir), str(home / "volumes")
    b.dir(pod_dir)
    b.dir(pod_dir / "exits")
    with os.scandir(pod_dir) if pod_dir.is_dir() else contextlib.nullcontext([]) as it:
        for e in it:
            if e.is_file(follow_symlinks=False) and e.name not in SKIP and not e.name.endswith(".tmp"):
                b.file(Path(e.path))
    for v in (pod.get("spec") or {}).get("volumes") or []:
        d = pod_dir / "volumes" / str(v.get("name"))
        if d.is_dir():
            b.tree(d, files=any(k in v for k in PROJECTED))  # emptyDir: made (with its subPath dirs), empty
    if _under(cwd, home_s):
        b.dir(cwd)
    for a in argv:
        if not os.path.isabs(a) or not _under(a, home_s) or _under(a, pod_s) or _under(a, pvcs) or not os.path.exists(a):
            continue
        d = a if os.path.isdir(a) else os.path.dirname(a)
        if not any(_under(d, r) and os.path.abspath(d) != os.path.abspath(r) for r in roots):
            continue  # only a directory below a declared root: never the home's keys, nor another Pod's files
        if d not in b.back:
            b.back.append(d)
            b.tree(Path(d))
    for p in env.get("PATH", "").split(os.pathsep):
        if p and os.path.isabs(p) and _under(p, home_s) and not _under(p, pod_s) and os.path.isdir(p):
            b.tree(Path(p))
    return b.out()


def _write(path: str, data: bytes, mode: int | None = None) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.ketch-tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def snapshot(dirs: list[str]) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under ``dirs``: what a container changed is measured against it."""
    out = {}
    for d in dirs:
        for root, _subdirs, names in os.walk(d):
            for n in names:
                p = os.path.join(root, n)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    out[p] = (st.st_size, st.st_mtime_ns)
    return out


def lay(bundle: dict) -> dict[str, tuple[int, int]]:
    """On the node: make the directories and write the files at their paths; returns the snapshot of the
    directories that come back."""
    for d in bundle.get("dirs") or []:
        os.makedirs(d, exist_ok=True)
    for path, (data, mode) in (bundle.get("files") or {}).items():
        _write(path, data, mode)
    return snapshot(bundle.get("back") or [])


def changed(dirs: list[str], before: dict[str, tuple[int, int]]) -> dict[str, bytes]:
    """On the node, once the container ended: the files under ``dirs`` that are new or changed since ``before``."""
    out: dict[str, bytes] = {}
    total = 0
    for p, sig in snapshot(dirs).items():
        if before.get(p) == sig or sig[0] > MAX_FILE or total + sig[0] > MAX_TOTAL or p.endswith(".ketch-tmp"):
            continue
        try:
            with open(p, "rb") as f:
                out[p] = f.read()
            total += sig[0]
        except OSError:
            continue
    return out


def receive(files: dict[str, bytes], allowed: list[str]) -> None:
    """Here: write what came back, only under the directories that went (``allowed``)."""
    for p, data in files.items():
        if not any(_under(p, d) for d in allowed):
            log.warning("ray kubelet: ignoring file %s from a node: not under a directory shipped there", p)
            continue
        try:
            _write(p, data)
        except OSError as e:
            log.warning("ray kubelet: cannot write %s back from its node: %s", p, e)


def sees(marker: str, token: str) -> bool:
    """On the node: whether it sees ketch's home (the marker file holds this ketch's token)."""
    try:
        with open(marker) as f:
            return f.read() == token
    except OSError:
        return False
