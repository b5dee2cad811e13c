"""The image policy for process containers: an image name picks a Python environment.

(Pods that select a RuntimeClass run in their image as OCI containers: containers.py.)

By default every image runs in ketch's own environment, *with* that environment: ``python``, ``python3``,
``pip`` and console scripts resolve to ``sys.executable``'s environment, because its bin directory comes
first on PATH (a virtualenv's has python and python3; otherwise a shim directory provides them). A
``python:3.X`` image runs with an installed Python 3.X when that is not ketch's version (else ketch's, and
the Pod gets an ``InterpreterNotFound`` Warning). ``KETCH_HOME/images.yaml`` maps image name globs to
another interpreter or virtualenv (first match wins)::

    images:
      - match: "pytorch/*"
        venv: /opt/venvs/torch          # its bin/ goes first on PATH
        workingDir: ~/mnist             # the image's WORKDIR: where relative commands and scripts are found
      - match: "python:3.10*"
        python: /usr/bin/python3.10     # python/python3 resolve to it
        env: {PIP_NO_INPUT: "1"}        # extra environment, like an image's ENV
        command: ["python"]             # an ENTRYPOINT, used when a container sets no command
      - match: "example.com/etl:*"
        requirements: ["pandas>=2"]     # a venv ketch builds once with uv (ketch.pyenvs.venv_for)

Without a ``command`` of its own, an image keeps the entrypoint ketch knows for it (``BUILTIN``: Jupyter
notebook images start a Jupyter server), so mapping ``*jupyter*`` to a venv that has JupyterLab is enough.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Image:
    """How to run one image: a PATH prefix, extra environment, and a default entrypoint."""

    name: str
    python: str
    path_prefix: list[str]
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    working_dir: str | None = None  # the image's WORKDIR (images.yaml workingDir)
    warning: str | None = None  # recorded as a Warning event on the Pod (a python:3.X image not installed)


# What ketch knows of well-known images when images.yaml says nothing: the entrypoint of Kubeflow's (and
# Jupyter's) notebook images, a Jupyter server on NB_PORT under the base URL NB_PREFIX, which the Notebook
# controller sets (their own start scripts read NB_PREFIX the same way). It runs in the environment the
# image maps to, ketch's own by default (``pip install 'ketch[notebooks]'``).
BUILTIN: list[dict] = [
    {"match": "*jupyter*", "command": [
        "jupyter", "lab", "--ip=$(KETCH_BIND_HOST)", "--port=$(NB_PORT)", "--no-browser", "--allow-root",
        "--IdentityProvider.token=$(JUPYTER_TOKEN)", "--ServerApp.password=",
        "--ServerApp.base_url=$(NB_PREFIX)", "--ServerApp.authenticate_prometheus=False",
    ]},
]


class Images:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.config = home / "images.yaml"
        self._mtime = -1.0
        self._rules: list[dict] = []
        self._made: set[str] = set()
        self._pythons: dict[str, str | None] = {}
        self._builds: dict[tuple, _Build] = {}

    def _load(self) -> list[dict]:
        try:
            m = self.config.stat().st_mtime
        except FileNotFoundError:
            self._rules, self._mtime = [], -1.0
            return self._rules
        if m != self._mtime:
            data = yaml.safe_load(self.config.read_text()) or {}
            self._rules = list(data.get("images") or [])
            self._mtime = m
        return self._rules

    def _shims(self, python: str) -> str | None:
        """A directory holding ``python``/``python3`` for ``python``, so the bare names always resolve to it;
        None when the interpreter's own bin directory already has both (a virtualenv's always does).

        An interpreter of a virtualenv finds its environment through ``pyvenv.cfg`` next to the path it was
        started by, so its shims are tiny exec scripts, never symlinks: a symlink elsewhere would start the
        base interpreter without the venv's site-packages."""
        import hashlib

        bindir = Path(python).parent
        real = os.path.realpath(python)
        if all((bindir / n).exists() and os.path.realpath(bindir / n) == real for n in ("python", "python3")):
            return None
        d = self.home / "kubelet" / "shims" / hashlib.sha1(python.encode()).hexdigest()[:12]
        if python in self._made:
            return str(d)
        self._made.add(python)
        venv = venv_of(python) is not None
        if not (d / "python3").exists() or (d / "python3").is_symlink() == venv:  # missing, or made by an older ketch
            d.mkdir(parents=True, exist_ok=True)
            for n in ("python", "python3"):
                tmp = d / f".{n}.{os.getpid()}"
                tmp.unlink(missing_ok=True)
                if venv:
                    tmp.write_text(f"#!/bin/sh\nexec {shlex.quote(python)} \"$@\"\n")
                    tmp.chmod(0o755)
                else:
                    tmp.symlink_to(python)
                tmp.replace(d / n)
        return str(d)

    def resolve(self, image: str) -> Image:
        """How to run ``image``; raises ``Preparing`` while its ``requirements`` environment is being built
        and ``PrepareFailed`` when that build failed."""
        rule = next((r for r in self._load() if fnmatch.fnmatchcase(image, str(r.get("match", "")))), {})
        known = next((r for r in BUILTIN if fnmatch.fnmatchcase(image, r["match"])), {})
        warning = None
        env: dict[str, str] = {}
        if rule.get("venv"):
            python = str(Path(rule["venv"]).expanduser() / "bin" / "python")
        elif rule.get("python"):
            python = shutil.which(rule["python"]) or rule["python"]
        elif (want := python_version(image)) and want != f"{sys.version_info[0]}.{sys.version_info[1]}":
            found = self.interpreter(want)
            python = found or sys.executable
            if found is None:
                warning = (f'image "{image}" asks for Python {want}, which is not installed on this node; running with '
                           f"ketch's Python {sys.version.split()[0]} ({sys.executable}). Install python{want} or map the image in images.yaml")
        else:
            python = sys.executable
        if rule.get("requirements"):
            python = str(self._requirements_env(python, rule["requirements"]) / "bin" / "python")
        venv = venv_of(python)
        prefix = [str(Path(python).parent)]
        if python == sys.executable and sys.prefix != sys.base_prefix and str(Path(sys.prefix) / "bin") not in prefix:
            prefix.insert(0, str(Path(sys.prefix) / "bin"))
        if venv is not None:
            env["VIRTUAL_ENV"] = str(venv)
        shims = self._shims(python)
        if shims:
            prefix.insert(0, shims)
        env.update({str(k): str(v) for k, v in (rule.get("env") or {}).items()})
        wd = str(Path(rule["workingDir"]).expanduser()) if rule.get("workingDir") else None
        return Image(image, python, prefix, env, [str(x) for x in rule.get("command") or known.get("command") or []], wd, warning)

    def interpreter(self, version: str) -> str | None:
        """An installed CPython ``version`` ("3.10"): on PATH, in /usr/local/bin or /usr/bin, pyenv's or uv's
        installs; each candidate is asked for its version (a pyenv shim may not run). Found once per process."""
        if version in self._pythons:
            return self._pythons[version]
        import glob

        home = Path.home()
        pyenv = Path(os.environ.get("PYENV_ROOT") or home / ".pyenv")
        uvdir = Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or home / ".local" / "share" / "uv" / "python")
        cands = [shutil.which(f"python{version}"), f"/usr/local/bin/python{version}", f"/usr/bin/python{version}",
                 *sorted(glob.glob(str(pyenv / "versions" / f"{version}.*" / "bin" / f"python{version}")), reverse=True),
                 *sorted(glob.glob(str(uvdir / f"cpython-{version}.*" / "bin" / f"python{version}")), reverse=True)]
        found = None
        for c in dict.fromkeys(x for x in cands if x and os.access(x, os.X_OK)):
            try:
                out = subprocess.run([c, "-c", "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])"],
                                     capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                continue
            lines = out.stdout.split()
            if out.returncode == 0 and len(lines) == 2 and lines[1] == version:
                found = lines[0]
                break
        self._pythons[version] = found
        return found

    def _requirements_env(self, python: str, requirements) -> Path:
        """The venv images.yaml's ``requirements`` asks for, built in the background on first use."""
        reqs = [str(requirements)] if isinstance(requirements, str) else [str(r) for r in requirements]
        reqs = [f"-r {Path(r).expanduser()}" if r.endswith(".txt") and os.sep in r else r for r in reqs]
        key = (python, tuple(reqs))
        job = self._builds.get(key)
        if job is None or (job.error is not None and time.time() - job.ended > 30):
            job = self._builds[key] = _Build(self.home / "envs" / "images", python, reqs)
        if job.result is not None:
            return job.result
        if job.error is not None:
            raise PrepareFailed(f"building the environment for requirements {reqs} failed: {job.error}")
        raise Preparing(f"building the environment for requirements {reqs} with uv")


class Preparing(Exception):
    """The image's environment is being built; the container waits (ContainerCreating)."""


class PrepareFailed(Exception):
    """The image's environment could not be built; the container waits (CreateContainerError) and retries."""


class _Build:
    """One background build of a requirements venv (a thread: uv does the work in its own process)."""

    def __init__(self, root: Path, python: str, reqs: list[str]) -> None:
        import threading

        self.result: Path | None = None
        self.error: str | None = None
        self.ended = 0.0
        threading.Thread(target=self._run, args=(root, python, reqs), daemon=True, name="image-env-build").start()

    def _run(self, root: Path, python: str, reqs: list[str]) -> None:
        from ketch import pyenvs

        try:
            self.result = pyenvs.venv_for(root, python, reqs)
        except Exception as e:  # noqa: BLE001 - reported on the container's status
            self.error = str(e)
        self.ended = time.time()


def python_version(image: str) -> str | None:
    """"3.10" for python:3.10, python:3.10-slim, docker.io/library/python:3.10.4 ...; None otherwise."""
    m = re.match(r"^(?:(?:docker\.io|index\.docker\.io)/)?(?:library/)?python:(3\.\d+)(?:[.-]|$)", image)
    return m.group(1) if m else None


def venv_of(python: str) -> Path | None:
    """The virtualenv an interpreter path starts (the directory of its ``pyvenv.cfg``), if any."""
    bindir = Path(python).parent
    for d in (bindir, bindir.parent):
        if (d / "pyvenv.cfg").is_file():
            return d
    return None


def find_executable(cmd: str, path: str, cwd: str) -> str | None:
    if "/" in cmd:
        p = cmd if os.path.isabs(cmd) else os.path.join(cwd, cmd)
        return p if os.path.isfile(p) and os.access(p, os.X_OK) else None
    return shutil.which(cmd, path=path)


def check_command(argv: list[str], path: str, cwd: str, image: str, wd_set: bool) -> None:
    """Fail a container whose program cannot be found with where ketch looked and how to fix it: there is
    no image filesystem, so a relative path means the working directory and a bare name means PATH."""
    from ketch.kubelet.base import CannotRun

    how = (f'the working directory is {cwd}' + ("" if wd_set else " (a per-pod directory: set the container's workingDir, "
           f'or map image "{image}" in KETCH_HOME/images.yaml with workingDir: <where your code is>)'))
    exe = find_executable(argv[0], path, cwd)
    if exe is None:
        if "/" in argv[0] and not os.path.isabs(argv[0]):
            raise CannotRun(f'exec: "{argv[0]}": no such file in the working directory; {how}')
        if "/" in argv[0]:
            raise CannotRun(f'exec: "{argv[0]}": no such file or not executable')
        dirs = [d for d in path.split(os.pathsep) if d]
        raise CannotRun(f'exec: "{argv[0]}": executable file not found in $PATH (looked in {", ".join(dirs[:8])}'
                        f'{", ..." if len(dirs) > 8 else ""}); map image "{image}" in KETCH_HOME/images.yaml to an environment that has it')
    if Path(exe).name.startswith("python") and len(argv) > 1:
        script = argv[1]  # python [script.py] args...; with options first (-u, -m) it is not checked
        if script.endswith(".py") and not script.startswith("-") and not os.path.isabs(script) and not os.path.exists(os.path.join(cwd, script)):
            raise CannotRun(f'{argv[0]}: cannot open file "{script}": not in the working directory; {how}')
