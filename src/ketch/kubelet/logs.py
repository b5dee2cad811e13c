"""Container logs: raw output files, a shipper that stamps each line, and the reader behind
``GET /api/v1/namespaces/{ns}/pods/{name}/log``.

A container writes its stdout and stderr straight into files (``<restart>.stdout`` / ``.stderr``), never
into a pipe held by ketch, so a process keeps running (and logging) if ketch is killed and adopted later.
The kubelet ships new output into ``KETCH_HOME/logs/<ns>/<pod>/<container>/<restart>.log``, one line per
record in the CRI format: ``<RFC3339Nano> <stream> <F|P> <text>`` (P: a partial line without newline).
Shipped offsets are kept beside the log so a restarted ketch resumes without duplicating lines, and a
``<restart>.done`` marker tells followers (``kubectl logs -f``) the run has ended.

With shared storage (``KETCH_ARTIFACTS``) each ended run's log is also archived there (``LogArchive``), and
fetched back into the local directory when a finished Pod's log is asked for and the local file is not
here (the Pod ran on another machine, or this home was cleared).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ketch import storage
from ketch.kinds.meta import parse_time

STREAMS = ("stdout", "stderr")
log = logging.getLogger(__name__)


def stamp() -> str:
    t = dt.datetime.now(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def container_log_dir(home: Path, ns: str, pod: str, container: str) -> Path:
    return home / "logs" / ns / pod / container


class Shipper:
    """Turns one container run's raw output into the stamped log; safe to recreate after a restart."""

    def __init__(self, log_dir: Path, restart: int) -> None:
        self.dir = log_dir
        self.restart = restart
        self.raw = {s: log_dir / f"{restart}.{s}" for s in STREAMS}
        self.log = log_dir / f"{restart}.log"
        self.offsets_file = log_dir / f"{restart}.offsets"
        try:
            self.offsets = json.loads(self.offsets_file.read_text())
        except (FileNotFoundError, ValueError):
            self.offsets = {s: 0 for s in STREAMS}

    def open_raw(self) -> dict[str, int]:
        """File descriptors for the process's stdout and stderr (append mode); the caller closes them."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        return {s: os.open(self.raw[s], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) for s in STREAMS}

    @property
    def stdin_path(self) -> Path:
        return self.dir / "stdin"

    def open_stdin(self) -> int:
        """The container's stdin (``stdin: true``): a FIFO beside its logs that ``kubectl attach`` writes
        to. Opened read-write, so the process never sees end-of-file while nobody is attached, as a
        container's open stdin behaves. The caller closes the descriptor after the spawn."""
        if not self.stdin_path.exists():
            os.mkfifo(self.stdin_path, 0o600)
        return os.open(self.stdin_path, os.O_RDWR)

    def ship(self, final: bool = False) -> None:
        out: list[str] = []
        moved = False
        for s in STREAMS:
            try:
                with open(self.raw[s], "rb") as f:
                    f.seek(self.offsets.get(s, 0))
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            cut = len(data) if final else data.rfind(b"\n") + 1
            if cut <= 0:
                continue
            ts = stamp()
            for line in data[:cut].split(b"\n"):
                out.append((ts, s, line))  # type: ignore[arg-type]
            if data[:cut].endswith(b"\n"):
                out.pop()  # the empty piece after the last newline
            self.offsets[s] = self.offsets.get(s, 0) + cut
            moved = True
        if out:
            lines = []
            for i, (ts, s, line) in enumerate(out):  # type: ignore[misc]
                last = i == len(out) - 1 or out[i + 1][1] != s
                partial = final and last and not self._ended_with_newline(s)
                lines.append(f"{ts} {s} {'P' if partial else 'F'} {line.decode(errors='replace')}\n")
            with open(self.log, "a", encoding="utf-8") as f:
                f.writelines(lines)
        if moved:
            self.offsets_file.write_text(json.dumps(self.offsets))
        if final:
            (self.dir / f"{self.restart}.done").touch()

    def _ended_with_newline(self, s: str) -> bool:
        try:
            with open(self.raw[s], "rb") as f:
                f.seek(max(0, self.offsets.get(s, 0) - 1))
                return f.read(1) == b"\n"
        except FileNotFoundError:
            return True


@dataclass
class LogOptions:
    previous: bool = False
    follow: bool = False
    tail_lines: int | None = None
    since: dt.datetime | None = None
    timestamps: bool = False
    limit_bytes: int | None = None


def tail(log_file: Path, lines: int = 80, max_bytes: int = 2048) -> str:
    """The end of one run's log as plain text, at most ``lines`` lines and ``max_bytes`` bytes: what
    ``terminationMessagePolicy: FallbackToLogsOnError`` makes a failed container's termination message."""
    try:
        with open(log_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            start = max(0, size - max(64 * 1024, max_bytes * 8))
            f.seek(start)
            data = f.read().decode(errors="replace").split("\n")
    except OSError:
        return ""
    if start > 0:
        data = data[1:]  # a cut line
    text = "".join(r for r in (_render(x, LogOptions()) for x in data if x) if r is not None)
    text = "\n".join(text.rstrip("\n").split("\n")[-lines:])
    raw = text.encode()
    return raw[-max_bytes:].decode(errors="ignore") if len(raw) > max_bytes else text


def runs(log_dir: Path) -> list[int]:
    try:
        return sorted(int(p.stem) for p in log_dir.glob("*.log") if p.stem.isdigit())
    except FileNotFoundError:
        return []


def _render(line: str, opts: LogOptions) -> str | None:
    try:
        ts, _stream, tag, text = line.rstrip("\n").split(" ", 3)
    except ValueError:
        return None
    if opts.since is not None:
        t = parse_time(ts[:26] + "Z") if len(ts) > 27 else parse_time(ts)
        if t is not None and t < opts.since:
            return None
    body = text + ("" if tag == "P" else "\n")
    return f"{ts} {body}" if opts.timestamps else body


async def read(log_file: Path, opts: LogOptions) -> AsyncIterator[str]:
    """Yield rendered log text; with ``follow``, keep yielding until the run's done marker appears."""
    done = log_file.with_suffix(".done")
    sent = 0
    with open(log_file, encoding="utf-8", errors="replace") as f:
        lines = f.readlines()
        if lines and not lines[-1].endswith("\n"):
            f.seek(f.tell() - len(lines[-1].encode()))
            lines.pop()
        rendered = [r for r in (_render(x, opts) for x in lines) if r is not None]
        if opts.tail_lines is not None:
            rendered = rendered[-opts.tail_lines :] if opts.tail_lines > 0 else []
        for r in rendered:
            if opts.limit_bytes is not None and sent + len(r.encode()) > opts.limit_bytes:
                yield r.encode()[: opts.limit_bytes - sent].decode(errors="ignore")
                return
            sent += len(r.encode())
            yield r
        if not opts.follow:
            return
        buf = ""
        while True:
            finished = done.exists()
            chunk = f.read()
            if chunk:
                buf += chunk
                *complete, buf = buf.split("\n")
                for x in complete:
                    r = _render(x, opts)
                    if r is None:
                        continue
                    if opts.limit_bytes is not None and sent + len(r.encode()) > opts.limit_bytes:
                        yield r.encode()[: opts.limit_bytes - sent].decode(errors="ignore")
                        return
                    sent += len(r.encode())
                    yield r
                continue
            if finished or not log_file.exists():  # run ended, or the pod (and its logs) was deleted
                return
            await asyncio.sleep(0.1)


class LogArchive:
    """Ended container runs' logs in the shared store, at ``storage.log_uri``: uploaded off the event loop
    when a run ends, fetched back on demand."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.pending: set[asyncio.Task] = set()

    def _put(self, path: Path, uri: str) -> None:
        fs, p = storage.filesystem(uri, listings_cache=False)
        try:
            fs.makedirs(p.rsplit("/", 1)[0], exist_ok=True)  # a no-op on object stores
            fs.put_file(str(path), p)
        except Exception as e:  # noqa: BLE001 - a store that is down must not fail the Pod: the local log stays
            log.warning("log archive: could not upload %s to %s: %s", path, uri, e)

    def upload(self, path: Path, namespace: str, pod: str, uid: str, container: str, restart: int) -> None:
        """Archive one ended run's log; from the event loop the upload runs in a thread (``flush`` awaits it)."""
        if not path.exists() or not uid:
            return
        uri = storage.log_uri(self.root, namespace, pod, uid, container, restart)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._put(path, uri)
            return
        t = loop.create_task(asyncio.to_thread(self._put, path, uri))
        self.pending.add(t)
        t.add_done_callback(self.pending.discard)

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait (up to ``timeout``) for uploads under way: ketch stopping still archives the runs it ended."""
        if self.pending:
            await asyncio.wait(list(self.pending), timeout=timeout)

    def restore(self, log_dir: Path, namespace: str, pod: str, uid: str, container: str) -> int:
        """Fetch the archived runs of a container into ``log_dir`` (with their done markers, so a follower
        ends); returns how many. Blocking: call it in a thread."""
        base = storage.log_uri(self.root, namespace, pod, uid, container)
        fs, p = storage.filesystem(base, listings_cache=False)
        try:
            names = [x.rsplit("/", 1)[-1] for x in fs.ls(p, detail=False)]
        except (FileNotFoundError, OSError):
            return 0
        got = 0
        for n in names:
            if not (n.endswith(".log") and n[:-4].isdigit()):
                continue
            log_dir.mkdir(parents=True, exist_ok=True)
            tmp = log_dir / f".{n}.part"
            try:
                fs.get_file(f"{p}/{n}", str(tmp))
            except (FileNotFoundError, OSError) as e:
                log.warning("log archive: could not fetch %s/%s: %s", base, n, e)
                continue
            os.replace(tmp, log_dir / n)
            (log_dir / f"{n[:-4]}.done").touch()
            got += 1
        return got
