"""The image policy: there is no container runtime, so an image name picks a Python environment.

By default every image runs in ketch's own environment: ``python``, ``python3``, ``pip`` and console
scripts resolve to ``sys.executable``'s environment, because a shim directory with ``python``/``python3``
links to it and that environment's bin directory come first on PATH. ``KETCH_HOME/images.yaml`` maps image
name globs to another interpreter or virtualenv (first match wins)::

    images:
      - match: "pytorch/*"
        venv: /opt/venvs/torch          # its bin/ goes first on PATH
      - match: "python:3.10*"
        python: /usr/bin/python3.10     # shims python/python3 point at it
        env: {PIP_NO_INPUT: "1"}        # extra environment, like an image's ENV
        command: ["python"]             # an ENTRYPOINT, used when a container sets no command

Without a ``command`` of its own, an image keeps the entrypoint ketch knows for it (``BUILTIN``: Jupyter
notebook images start a Jupyter server), so mapping ``*jupyter*`` to a venv that has JupyterLab is enough.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import sys
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


# What ketch knows of well-known images when images.yaml says nothing: the entrypoint of Kubeflow's (and
# Jupyter's) notebook images, a Jupyter server on NB_PORT under the base URL NB_PREFIX, which the Notebook
# controller sets (their own start scripts read NB_PREFIX the same way). It runs in the environment the
# image maps to, ketch's own by default (``pip install 'ketch[notebooks]'``).
BUILTIN: list[dict] = [
    {"match": "*jupyter*", "command": [
        "jupyter", "lab", "--ip=127.0.0.1", "--port=$(NB_PORT)", "--no-browser", "--allow-root",
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

    def _shims(self, python: str) -> str:
        """A directory holding python/python3 links to ``python``, so the bare names always resolve to it."""
        import hashlib

        d = self.home / "kubelet" / "shims" / hashlib.sha1(python.encode()).hexdigest()[:12]
        if python in self._made:
            return str(d)
        self._made.add(python)
        if not (d / "python3").exists():
            d.mkdir(parents=True, exist_ok=True)
            for n in ("python", "python3"):
                tmp = d / f".{n}.{os.getpid()}"
                try:
                    tmp.symlink_to(python)
                    tmp.replace(d / n)
                except FileExistsError:
                    pass
        return str(d)

    def resolve(self, image: str) -> Image:
        rule = next((r for r in self._load() if fnmatch.fnmatchcase(image, str(r.get("match", "")))), {})
        known = next((r for r in BUILTIN if fnmatch.fnmatchcase(image, r["match"])), {})
        if rule.get("venv"):
            venv = Path(rule["venv"]).expanduser()
            python = str(venv / "bin" / "python")
            prefix = [str(venv / "bin")]
            env = {"VIRTUAL_ENV": str(venv)}
        elif rule.get("python"):
            python = shutil.which(rule["python"]) or rule["python"]
            prefix = [str(Path(python).parent)]
            env = {}
        else:
            python = sys.executable
            prefix = [str(Path(sys.executable).parent)]
            if sys.prefix != sys.base_prefix:
                prefix.insert(0, str(Path(sys.prefix) / "bin"))
            env = {}
        prefix.insert(0, self._shims(python))
        env.update({str(k): str(v) for k, v in (rule.get("env") or {}).items()})
        return Image(image, python, prefix, env, [str(x) for x in rule.get("command") or known.get("command") or []])


def find_executable(cmd: str, path: str, cwd: str) -> str | None:
    if "/" in cmd:
        p = cmd if os.path.isabs(cmd) else os.path.join(cwd, cmd)
        return p if os.path.isfile(p) and os.access(p, os.X_OK) else None
    return shutil.which(cmd, path=path)
