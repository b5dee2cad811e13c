"""Container logs: raw output files, a shipper that stamps each line, and the reader behind
``GET /api/v1/namespaces/{ns}/pods/{name}/log``.

A container writes its stdout and stderr straight into files (``<restart>.stdout`` / ``.stderr``), never
into a pipe held by ketch, so a process keeps running (and logging) if ketch is killed and adopted later.
The kubelet ships new output into ``KETCH_HOME/logs/<ns>/<pod>/<container>/<restart>.log``, one line per
record in the CRI format: ``<RFC3339Nano> <stream> <F|P> <text>`` (P: a partial line without newline).
Shipped offsets are kept beside the log so a restarted ketch resumes without duplicating lines, and a
``<restart>.done`` marker tells followers (``kubectl logs -f``) the run has ended.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ketch.kinds.meta import parse_time

STREAMS = ("stdout", "stderr")


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
