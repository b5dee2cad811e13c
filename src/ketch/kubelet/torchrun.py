"""``torchrun`` on a container's PATH whenever its interpreter can import torch.

``torchrun`` is a console script in the bin directory of the environment torch was installed into, which
is not on PATH when the image maps to a bare interpreter, a ``--system-site-packages`` virtualenv or a
user-site install. For such an interpreter the kubelet adds a directory holding a two-line ``torchrun``
(``exec <python> -m torch.distributed.run "$@"``) after the image's own PATH entries, so an environment's
real ``torchrun`` still comes first. Decided once per interpreter and process.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

_dirs: dict[str, str | None] = {}


def _has_torch(python: str) -> bool:
    if python == sys.executable:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    probe = [python, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def path_for(home: Path, python: str) -> list[str]:
    """The PATH entries that give ``python``'s containers a ``torchrun`` ([] when none is needed or possible)."""
    if python not in _dirs:
        d = None
        if not (Path(python).parent / "torchrun").exists() and _has_torch(python):
            d = home / "kubelet" / "torchrun" / hashlib.sha1(python.encode()).hexdigest()[:12]
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / f".torchrun.{os.getpid()}"
            tmp.write_text(f'#!/bin/sh\nexec "{python}" -m torch.distributed.run "$@"\n')
            tmp.chmod(0o755)
            tmp.replace(d / "torchrun")
        _dirs[python] = str(d) if d else None
    return [_dirs[python]] if _dirs[python] else []


__all__ = ["path_for"]
