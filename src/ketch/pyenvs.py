"""Python environments made for a package set, layered over a base environment, built with uv.

A workload that asks for packages (a KFP component's ``packages_to_install``) must never write the
environment ketch itself runs from. What it asks for and the base does not already satisfy goes into a
*layer*: a directory of packages (``uv pip install --target``) that is put in front of the base's
site-packages on ``sys.path``. The layer holds only what differs from the base: the set is resolved with
the base's installed versions as constraints (so shared dependencies stay the base's and are not copied),
and every resolved pin the base already has at that version is left out. When the set cannot be resolved
together with the base (a task pins an older version of a dependency the base also has), it is resolved
alone and the layer carries its own copy of every dependency that differs.

Layers live in ``<root>/<hash of the package set, index options and interpreter>``, are built once (a
file lock serialises builds of one set, other sets build in parallel) and reused by every task with the
same set; ``.used`` is touched on each use. After each build, layers unused for longer than ``max_age``
are removed, then the least recently used ones until the total is under ``max_bytes`` (a layer used in the
last ten minutes is never removed). uv's own cache (``~/.cache/uv``, ``UV_CACHE_DIR``) makes a rebuild
after garbage collection cheap and possible offline.

Standard library only at import time: the pipeline launcher imports this in every task.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RECENT = 600.0  # seconds: a layer used this recently may be in use by a running task


@dataclass
class Layer:
    """A built layer: its package directory (for sys.path / PYTHONPATH) and its scripts' directory."""

    root: Path

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def bin(self) -> Path:
        return self.root / "site" / "bin"

    def top_level(self) -> set[str]:
        """Import names the layer provides (its top-level packages and modules)."""
        names = set()
        for p in self.site.iterdir():
            if p.name.startswith(".") or p.name.endswith((".dist-info", ".data")) or p.name in ("bin", "__pycache__"):
                continue
            names.add(p.name.split(".")[0] if p.is_file() else p.name)
        return names

    def activate(self) -> None:
        """Put the layer in front of the base for this process and the processes it starts."""
        sys.path.insert(0, str(self.site))
        os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(self.site), os.environ.get("PYTHONPATH", "")) if x)
        if self.bin.is_dir():
            os.environ["PATH"] = os.pathsep.join([str(self.bin), os.environ.get("PATH", "")])


def uv_bin() -> str:
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise RuntimeError("uv is not installed (pip install uv): it builds the environments for packages_to_install") from None
        return found


def _canon(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def base_versions() -> dict[str, str]:
    """Canonical name -> version of every distribution importable in this interpreter (first wins)."""
    from importlib import metadata

    out: dict[str, str] = {}
    for d in metadata.distributions():
        name = d.metadata["Name"]
        if name:
            out.setdefault(_canon(name), d.version)
    return out


def satisfied(req: str) -> bool:
    """Whether this interpreter already has what ``req`` asks for (a URL or path never is)."""
    from importlib import metadata

    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:
        return False
    try:
        r = Requirement(req)
    except InvalidRequirement:
        return False
    if r.url:
        return False
    if r.marker is not None and not r.marker.evaluate():
        return True
    try:
        have = metadata.version(r.name)
    except metadata.PackageNotFoundError:
        return False
    return not r.specifier or r.specifier.contains(have, prereleases=True)


def _req_name(req: str) -> str | None:
    try:
        from packaging.requirements import Requirement

        return _canon(Requirement(req).name)
    except Exception:  # noqa: BLE001 - a path or URL without a name: nothing to exclude from constraints
        return None


def key_of(requirements: list[str], index_args: list[str], python: str = sys.executable) -> str:
    ident = {"reqs": sorted(requirements), "index": index_args, "python": os.path.realpath(python), "prefix": sys.prefix,
             "version": list(sys.version_info[:3])}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _uv_index_args(index_args: list[str]) -> list[str]:
    """pip's index options as uv spells them: the component's own, then pip's environment variables
    (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS) where uv's own (UV_*) are not set."""
    out: list[str] = []
    for pip_var, uv_var, flag in (("PIP_INDEX_URL", "UV_INDEX_URL", "--index-url"), ("PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL", "--extra-index-url"),
                                  ("PIP_FIND_LINKS", "UV_FIND_LINKS", "--find-links")):
        if os.environ.get(pip_var) and not os.environ.get(uv_var) and flag not in index_args:
            for v in os.environ[pip_var].split():
                out += [flag, v]
    it = iter(index_args)
    for flag in it:
        value = next(it, "")
        if flag == "--trusted-host":
            out += ["--allow-insecure-host", value]
        elif flag in ("--index-url", "--extra-index-url", "--find-links", "-f", "-i"):
            out += [flag, value]
    return out


def _run(cmd: list[str]) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {(r.stderr or r.stdout).strip()[-2000:]}")
    return r.stdout


def _resolve(uv: str, reqs: Path, constraints: Path | None, index: list[str], python: str) -> list[str]:
    cmd = [uv, "pip", "compile", "--quiet", "--no-header", "--no-annotate", "--python", python, *index, str(reqs)]
    if constraints is not None:
        cmd += ["--constraints", str(constraints)]
    return [ln.strip() for ln in _run(cmd).splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "-"))]


def build(dest: Path, requirements: list[str], index_args: list[str], python: str = sys.executable) -> None:
    """Resolve ``requirements`` over the base and install what differs from it into ``dest/site``."""
    uv = uv_bin()
    index = _uv_index_args(index_args)
    dest.mkdir(parents=True)
    (dest / "requirements.in").write_text("\n".join(requirements) + "\n")
    asked = {n for n in map(_req_name, requirements) if n}
    have = base_versions()
    (dest / "base-constraints.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(have.items()) if n not in asked))
    try:
        pins = _resolve(uv, dest / "requirements.in", dest / "base-constraints.txt", index, python)
    except RuntimeError:  # the set conflicts with the base: give it its own copies of what differs
        pins = _resolve(uv, dest / "requirements.in", None, index, python)
    own, from_base = [], {}
    for pin in pins:
        name, _, version = pin.partition("==")
        name, version = _canon(name.split("[")[0].strip()), version.split(";")[0].strip()
        if version and have.get(name) == version:
            from_base[name] = version  # the base has exactly this: it shows through the layer
            continue
        own.append(pin)
    (dest / "layer.txt").write_text("\n".join(own) + "\n")
    if own:
        _run([uv, "pip", "install", "--quiet", "--no-deps", "--python", python, *index, "--target", str(dest / "site"), "-r", str(dest / "layer.txt")])
    (dest / "site").mkdir(exist_ok=True)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file() and not f.is_symlink())
    (dest / ".ready").write_text(json.dumps({"bytes": size, "requirements": requirements, "layer": own, "fromBase": from_base}))


def ensure(root: Path, requirements: list[str], index_args: list[str] | None = None, python: str = sys.executable,
           max_age: float = 7 * 86400.0, max_bytes: int = 5 << 30) -> Layer:
    """The layer for this package set, built now if no task built it before."""
    import fcntl

    index_args = list(index_args or [])
    key = key_of(requirements, index_args, python)
    d = root / key
    if not _current(d):
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f".{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _current(d):
                tmp = root / f".{key}.{os.getpid()}.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                try:
                    build(tmp, requirements, index_args, python)
                    shutil.rmtree(d, ignore_errors=True)
                    os.replace(tmp, d)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                (d / ".used").touch()
                collect_garbage(root, max_age, max_bytes, keep=key)
    (d / ".used").touch()
    return Layer(d)


def _current(d: Path) -> bool:
    """Built, and the base still has the versions the layer relies on (ketch's environment may have been
    upgraded since)."""
    from importlib import metadata

    try:
        from_base = json.loads((d / ".ready").read_text()).get("fromBase") or {}
    except (OSError, ValueError):
        return False
    for name, version in from_base.items():
        try:
            if metadata.version(name) != version:
                return False
        except metadata.PackageNotFoundError:
            return False
    return True


def collect_garbage(root: Path, max_age: float, max_bytes: int, keep: str = "") -> list[str]:
    """Remove layers unused for ``max_age`` seconds, then the least recently used while over ``max_bytes``."""
    now = time.time()
    layers = []
    for d in root.iterdir():
        if d.name.startswith(".") or not (d / ".ready").exists():
            continue
        try:
            used = (d / ".used").stat().st_mtime
            size = int(json.loads((d / ".ready").read_text()).get("bytes", 0))
        except (OSError, ValueError):
            continue
        layers.append((used, size, d))
    removed = []
    total = sum(s for _, s, _ in layers)
    for used, size, d in sorted(layers, key=lambda x: x[0]):
        if d.name == keep or now - used < RECENT:
            continue
        if now - used > max_age or total > max_bytes:
            with contextlib.suppress(OSError):
                shutil.rmtree(d)
                (root / f".{d.name}.lock").unlink(missing_ok=True)
            removed.append(d.name)
            total -= size
    return removed


def venv_for(root: Path, python: str, requirements: list[str]) -> Path:
    """A virtualenv of ``python`` with ``requirements`` installed (images.yaml ``requirements``), built once
    with uv under ``root/<hash>`` and reused; the build is atomic (a half-built venv is never used)."""
    import fcntl

    ident = json.dumps({"python": os.path.realpath(python), "reqs": sorted(requirements)}, sort_keys=True)
    key = hashlib.sha256(ident.encode()).hexdigest()[:20]
    d = root / key
    if (d / ".ready").exists():
        return d
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (d / ".ready").exists():
            return d
        uv = uv_bin()
        shutil.rmtree(d, ignore_errors=True)  # a build that died half-way
        try:
            _run([uv, "venv", "--quiet", "--python", python, str(d)])
            (d / "requirements.txt").write_text("\n".join(requirements) + "\n")
            if requirements:
                _run([uv, "pip", "install", "--quiet", "--python", str(d / "bin" / "python"), "-r", str(d / "requirements.txt")])
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        (d / ".ready").write_text(ident)
    return d
