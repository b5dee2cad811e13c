"""The built-in payload sink: logged requests and responses of each InferenceService, kept on disk,
bounded and rotated, for drift/outlier detectors and the dashboard to read.

Layout: ``$KETCH_HOME/serving/payloads/<namespace>/<isvc>/<component>-<pid>.jsonl`` (and its rotations
``.1``, ``.2``...): each model server replica appends to its own file (no two writers share one), one
structured CloudEvent per line. A file is rotated at ``KETCH_PAYLOAD_FILE_BYTES`` (default 4 MiB), each
replica keeps ``KETCH_PAYLOAD_ROTATIONS`` (default 2) rotations, and at every rotation the oldest files of
the InferenceService are deleted until the directory holds at most ``KETCH_PAYLOAD_MAX_BYTES`` (default
64 MiB), so replicas that came and went cannot grow it without bound.

Pure standard library: the model server writes it, the control plane reads it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

SCHEME = "payloads://"


def file_bytes() -> int:
    return int(os.environ.get("KETCH_PAYLOAD_FILE_BYTES", str(4 << 20)))


def rotations() -> int:
    return int(os.environ.get("KETCH_PAYLOAD_ROTATIONS", "2"))


def max_bytes() -> int:
    return int(os.environ.get("KETCH_PAYLOAD_MAX_BYTES", str(64 << 20)))


def directory(home: str | Path, namespace: str, isvc: str) -> Path:
    return Path(home) / "serving" / "payloads" / namespace / isvc


class PayloadWriter:
    """Appends lines to this replica's file, rotating and pruning as described above."""

    def __init__(self, directory: str | Path, component: str = "predictor") -> None:
        self.dir = Path(directory)
        self.path = self.dir / f"{component}-{os.getpid()}.jsonl"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab")  # noqa: SIM115 - kept open for the life of the server
        self._size = self._f.tell()
        self.limit, self.keep, self.cap = file_bytes(), rotations(), max_bytes()

    def write(self, lines: list[bytes]) -> None:
        self.write_bytes(b"".join(ln + b"\n" for ln in lines))

    def write_bytes(self, data: bytes) -> None:
        """Append whole lines (``data`` ends with a newline)."""
        self._f.write(data)
        self._f.flush()
        self._size += len(data)
        if self._size >= self.limit:
            self._rotate()

    def _rotate(self) -> None:
        self._f.close()
        for i in range(self.keep, 0, -1):
            src = self.path if i == 1 else self.path.with_name(f"{self.path.name}.{i - 1}")
            if src.exists():
                if self.keep == 0:
                    src.unlink()
                else:
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i}"))
        if self.keep == 0 and self.path.exists():
            self.path.unlink()
        self._f = open(self.path, "ab")  # noqa: SIM115
        self._size = 0
        prune(self.dir, self.cap, keep=self.path)

    def close(self) -> None:
        self._f.close()


def prune(d: Path, cap: int, keep: Path | None = None) -> None:
    files = sorted((p for p in d.glob("*.jsonl*") if p != keep), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files) + (keep.stat().st_size if keep and keep.exists() else 0)
    for p in files:
        if total <= cap:
            break
        total -= p.stat().st_size
        p.unlink(missing_ok=True)


def _files(d: Path) -> list[Path]:
    """The files oldest first. A writer renames and prunes while readers look, so a file may go between the
    listing and its stat: it is left out, never an error."""
    if not d.is_dir():
        return []
    found: list[tuple[float, Path]] = []
    for p in d.glob("*.jsonl*"):
        try:
            found.append((p.stat().st_mtime, p))
        except FileNotFoundError:
            continue
    return [p for _, p in sorted(found)]


def read(d: Path, limit: int = 100, kind: str | None = None) -> list[dict]:
    """The newest ``limit`` events (oldest first), optionally only ``request`` or ``response`` ones."""
    out: list[dict] = []
    for p in reversed(_files(d)):
        for ev in reversed(list(_lines(p))):
            if kind and not ev.get("type", "").endswith("." + kind):
                continue
            out.append(ev)
            if len(out) >= limit:
                return out[::-1]
    return sorted(out, key=lambda e: e.get("time", ""))


def events_since(d: Path, offsets: dict[str, int]) -> Iterator[dict]:
    """Events appended since the ``offsets`` of a previous call (file identity -> bytes read); updates
    them. Files are known by inode, so a rotated file (renamed, same inode) is not read twice."""
    seen = set()
    for p in _files(d):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        key = f"{st.st_dev}:{st.st_ino}"
        seen.add(key)
        start = offsets.get(key, 0)
        if st.st_size < start:
            start = 0
        if st.st_size == start:
            continue
        try:
            with open(p, "rb") as f:
                f.seek(start)
                data = f.read()
        except FileNotFoundError:  # pruned since the listing
            continue
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        offsets[key] = start + end
        for ln in data[:end].splitlines():
            try:
                yield json.loads(ln)
            except ValueError:
                continue
    for key in [k for k in offsets if k not in seen]:
        del offsets[key]


def _lines(p: Path) -> Iterator[dict]:
    try:
        with open(p, "rb") as f:
            for ln in f:
                try:
                    yield json.loads(ln)
                except ValueError:
                    continue
    except FileNotFoundError:
        return
