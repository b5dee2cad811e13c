"""Compile a pipeline uploaded as Python source (the dashboard's upload form and ``/pipelines/upload``
accept ``.py``) into the IR that is stored as the pipeline version.

Importing the module runs the uploader's code, so it never happens in the server process: the server runs
``python -m ketch.pipelines.compile_py <file.py> <out.yaml>`` in a scratch directory, with a time limit, and
reads the YAML it writes. The child picks the module's single ``@dsl.pipeline`` (not counting ones used as sub-pipelines by
another); none or several is an error
that names what was found, written to stderr as one line for the API to return.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

TIMEOUT_S = 120.0


class CompileError(ValueError):
    """The source could not be compiled; the message says why (for a 400 answer)."""


async def compile_source(source: bytes, filename: str = "pipeline.py", timeout: float = TIMEOUT_S) -> str:
    """Compiled YAML text of the single pipeline in ``source``, compiled by kfp in a child process."""
    with tempfile.TemporaryDirectory(prefix="ketch-compile-") as d:
        src = Path(d) / (Path(filename).name if filename.endswith(".py") else "pipeline.py")
        src.write_bytes(source)
        out = Path(d) / "pipeline.yaml"
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ketch.pipelines.compile_py", str(src), str(out),
            cwd=d, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise CompileError(f"{src.name}: compiling took longer than {timeout:.0f} s") from None
        if proc.returncode != 0 or not out.exists():
            lines = [ln for ln in err.decode(errors="replace").strip().splitlines() if ln.strip()]
            raise CompileError(f"{src.name}: {lines[-1] if lines else f'compiler exited with code {proc.returncode}'}")
        return out.read_text()


def _main(src: str, out: str) -> int:
    from kfp import compiler
    from kfp.dsl.graph_component import GraphComponent

    sys.path.insert(0, str(Path(src).parent))
    spec = importlib.util.spec_from_file_location(f"_ketch_upload_{Path(src).stem}", src)
    if spec is None or spec.loader is None:
        print(f"cannot import {Path(src).name}", file=sys.stderr)
        return 2
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except BaseException as e:  # the uploader's module failed at import: say how, in one line
        print(f"importing the module failed: {type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr)
        return 2
    found = {n: v for n, v in vars(mod).items() if isinstance(v, GraphComponent) and not n.startswith("_")}
    # a pipeline used as a sub-pipeline of another one in the module is not a candidate
    nested = {n for n, g in found.items() for o in found.values() if o is not g and any(
        c.dag == g.pipeline_spec.root.dag for c in o.pipeline_spec.components.values() if c.HasField("dag"))}
    found = {n: g for n, g in found.items() if n not in nested}
    if len(found) != 1:
        names = ", ".join(sorted(found)) or "none"
        print(f"expected exactly one @dsl.pipeline in the module, found {len(found)} ({names})", file=sys.stderr)
        return 2
    try:
        compiler.Compiler().compile(next(iter(found.values())), out)
    except Exception as e:
        print(f"kfp could not compile pipeline {next(iter(found))!r}: {type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1], sys.argv[2]))
