"""The program every pipeline task's Pod runs: ``python -m ketch.pipelines.launcher <task.json>``.

It plays the part of KFP's launcher: stage input artifacts from the artifact store, run the component, and
write what it produced (``result.json`` next to the task file) for the run controller to read. Lightweight
Python components run through kfp's own executor in this process, without the pip stage of their command
(kfp is already importable here; that stage is most of kfp.local's per-task cost). Container components run
their command with every placeholder resolved by kfp's own placeholder code. Artifacts whose URIs are not
local paths (s3://, gs://, memory://...) are copied through fsspec, with the endpoint and credentials the
Pod was given (``ketch.storage``): inputs are staged down to local files before the component runs, and
outputs are written to local scratch paths, then uploaded once it has ended, as KFP's launcher does.

``packages_to_install`` never writes ketch's environment: what it asks for comes from a per-set layer built
with uv (``ketch.pyenvs``), reused by every task with the same set.

Kept free of ketch imports beyond the standard library, ``ketch.kinds.mounts``, ``ketch.pyenvs`` and
``ketch.storage`` so a task starts fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any


def _is_local(uri: str) -> bool:
    return uri.startswith("/") or uri.startswith("file://")


def _local(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _fs_get(uri: str, dest: Path) -> None:
    from ketch import storage

    fs, path = storage.filesystem(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if fs.isdir(path):
        fs.get(path, str(dest), recursive=True)
    elif fs.exists(path):
        fs.get(path, str(dest))


def _fs_put(src: Path, uri: str) -> None:
    from ketch import storage

    if not src.exists():
        return
    fs, path = storage.filesystem(uri)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)  # a no-op on object stores, needed on file systems
    fs.put(str(src), path, recursive=src.is_dir())


# kfp's Artifact.path maps these schemes to local mount points (``s3://b/k`` -> ``/s3/b/k``), which KFP's
# launcher fills by download (or a FUSE mount); ketch points them into the task's directory instead (see
# ``mount_prefixes``), so a lightweight component sees the store's URI in ``.uri`` and a local file at ``.path``
MOUNT_PREFIXES = {"gs://": "_GCS_LOCAL_MOUNT_PREFIX", "minio://": "_MINIO_LOCAL_MOUNT_PREFIX", "s3://": "_S3_LOCAL_MOUNT_PREFIX"}


def mount_prefixes(tdir: Path) -> dict[str, str]:
    """URI scheme -> local directory standing for kfp's mount point of it, inside the task's directory."""
    return {scheme: str(tdir / "mnt" / scheme.split(":", 1)[0]) + "/" for scheme in MOUNT_PREFIXES}


def _mounted(uri: str, mounts: dict[str, str] | None) -> str | None:
    for scheme, local in (mounts or {}).items():
        if uri.startswith(scheme):
            return local + uri[len(scheme):]
    return None


def stage_inputs(ei: dict, tdir: Path, mounts: dict[str, str] | None = None) -> None:
    """Download remote input artifacts. Under ``mounts`` the URI stays and the file lands where kfp's
    ``.path`` will look; otherwise the URI becomes the local copy's path (what a container component's
    placeholders and kfp's executor read for any other scheme)."""
    for name, group in (ei["inputs"].get("artifacts") or {}).items():
        for i, a in enumerate(group.get("artifacts") or []):
            uri = a.get("uri") or ""
            if uri and not _is_local(uri):
                at = _mounted(uri, mounts)
                dest = Path(at) if at else tdir / "staged-in" / name / str(i) / Path(uri).name
                _fs_get(uri, dest)
                if not at:
                    a["uri"] = str(dest)
            elif uri:
                a["uri"] = _local(uri)


def stage_outputs(ei: dict, tdir: Path, mounts: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Give remote outputs local scratch paths; returns uploads: the URI as the component will report it ->
    (local file or directory, the store's URI), uploaded by ``collect`` once the component has ended."""
    uploads: dict[str, tuple[str, str]] = {}
    for name, group in (ei["outputs"].get("artifacts") or {}).items():
        for a in group.get("artifacts") or []:
            uri = a.get("uri") or ""
            if uri and not _is_local(uri):
                at = _mounted(uri, mounts)
                if at:
                    uploads[uri] = (at, uri)
                else:
                    local = str(tdir / "staged-out" / name)
                    uploads[local] = (local, uri)
                    a["uri"] = local
            elif uri:
                a["uri"] = _local(uri)
                Path(a["uri"]).parent.mkdir(parents=True, exist_ok=True)
    return uploads


def remote_uris(ei: dict) -> dict[tuple[str, str], list[str]]:
    """(``inputs``/``outputs``, name) -> the artifacts' URIs before staging, for ``.uri`` placeholders."""
    return {(side, name): [a.get("uri") or "" for a in group.get("artifacts") or []]
            for side in ("inputs", "outputs") for name, group in (ei[side].get("artifacts") or {}).items()}


def _lightweight(command: list[str], args: list[str]) -> tuple[str, str] | None:
    """(source, function name) when the command is kfp's lightweight Python component bootstrap."""
    if not any("kfp.dsl.executor_main" in c for c in command):
        return None
    src = None
    for i, c in enumerate(command):
        if "ephemeral_component.py" in c and i + 1 < len(command):
            src = command[i + 1]
    fn = None
    for i, a in enumerate(args):
        if a == "--function_to_execute" and i + 1 < len(args):
            fn = args[i + 1]
    if src is None or fn is None:
        return None
    return src, fn


def requested_packages(command: list[str]) -> tuple[list[str], list[str]]:
    """(requirements, pip index options) of the pip stage of kfp's lightweight-component command (its
    ``packages_to_install`` and ``pip_index_urls``), leaving out kfp itself, which ketch provides."""
    import re
    import shlex

    script = next((c for c in command if "pip install" in c), "")
    wanted: list[str] = []
    index_args: list[str] = []
    for seg in re.split(r"&&", script):
        if "pip install" not in seg or "kfp==" in seg:
            continue
        toks = shlex.split(seg[seg.index("pip install") + len("pip install"):])
        it = iter(toks)
        for t in it:
            if t in ("--index-url", "--extra-index-url", "--trusted-host", "--find-links", "-i", "-f"):
                index_args += [t, next(it, "")]
            elif not t.startswith("-"):
                wanted.append(t)
    return wanted, index_args


def ensure_packages(task: dict, task_path: Path) -> None:
    """What ``packages_to_install`` asks for and ketch's environment does not already satisfy comes from a
    layer built for that set (``ketch.pyenvs``), never from installing into ketch's environment. When the
    layer provides a module this process already imported (the warm interpreter preloads kfp and its
    dependencies), the launcher starts again as a fresh interpreter with the layer first on its path."""
    from ketch import pyenvs

    wanted, index_args = requested_packages(task["command"])
    missing = [r for r in wanted if not pyenvs.satisfied(r)]
    if not missing:
        return
    cfg = task.get("envs") or {}
    root = Path(cfg.get("root") or Path(task["taskDir"]).parent / "envs")
    layer = pyenvs.ensure(root, missing, index_args, max_age=float(cfg.get("maxAgeSeconds") or 7 * 86400),
                          max_bytes=int(cfg.get("maxBytes") or 5 << 30))
    clash = layer.top_level() & {m.split(".")[0] for m in sys.modules}
    layer.activate()
    if clash and not os.environ.get("_KETCH_LAYER_REEXEC"):
        os.environ["_KETCH_LAYER_REEXEC"] = "1"
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "ketch.pipelines.launcher", str(task_path)])


def run_python(source: str, fn: str, ei: dict, tdir: Path, prefixes: dict[str, str] | None = None) -> None:
    from ketch.kinds import mounts

    os.environ["_KFP_RUNTIME"] = "true"
    mod_path = tdir / "ephemeral_component.py"
    # paths under the Pod's mountPaths (a mounted PVC's /data) in the source reach the volume's directory,
    # as the kubelet does for a container's command line
    mod_path.write_text(mounts.from_env()(source))
    from kfp.dsl import executor as kfp_executor
    from kfp.dsl import utils as kfp_utils
    from kfp.dsl.types import artifact_types

    for scheme, local in (prefixes or {}).items():  # read by Artifact.path and its setter at each use
        setattr(artifact_types, MOUNT_PREFIXES[scheme], local)

    sys.argv = [sys.argv[0]]
    module = kfp_utils.load_module(module_name="ephemeral_component", module_directory=str(tdir))
    kfp_executor.Executor(executor_input=ei, function_to_execute=getattr(module, fn)).execute()


def _artifact_lists(arg: str, ei: dict) -> str:
    """``{{$.inputs.artifacts['x']}}`` (a whole input, as a JSON list of artifacts), which kfp's local
    placeholder code does not know."""
    import re

    def rep(m: re.Match) -> str:
        arts = ((ei["inputs"].get("artifacts") or {}).get(m.group(1)) or {}).get("artifacts") or []
        return json.dumps(arts)

    return re.sub(r"\{\{\$\.inputs\.artifacts\['([^']+)'\]\}\}", rep, arg) if isinstance(arg, str) else arg


def _uri_placeholders(arg: str, uris: dict[tuple[str, str], list[str]]) -> str:
    """``{{$.inputs.artifacts['x'].uri}}`` (and outputs) as the store's URI, as on KFP: kfp's local
    placeholder code would give the staged copy's path, which ``.path`` names."""
    import re

    def rep(m: re.Match) -> str:
        got = uris.get((m.group(1), m.group(2))) or []
        return got[0] if got and got[0] else m.group(0)

    return re.sub(r"\{\{\$\.(inputs|outputs)\.artifacts\['([^']+)'\]\.uri\}\}", rep, arg)


def run_container(task: dict, ei: dict, uris: dict[tuple[str, str], list[str]] | None = None) -> int:
    from kfp.local import placeholder_utils

    retries = str(task.get("retries", 0))  # Argo's {{retries}}: which retry this attempt is (0: the first run)
    full = [_uri_placeholders(_artifact_lists(a, ei), uris or {}).replace("{{retries}}", retries) if isinstance(a, str) else a
            for a in list(task["command"]) + list(task["args"])]
    cmd = placeholder_utils.replace_placeholders(
        full_command=full, executor_input_dict=ei, pipeline_resource_name=task.get("runName", ""),
        task_resource_name=task.get("taskName", ""), pipeline_root=task.get("pipelineRoot", ""), unique_pipeline_id=task.get("runId", ""),
    )
    for _name, d in ei["outputs"].get("parameters", {}).items():
        Path(d["outputFile"]).parent.mkdir(parents=True, exist_ok=True)
    from ketch.kinds import mounts

    rw = mounts.from_env()
    return subprocess.call([rw(c) for c in cmd], env=pip_elsewhere(os.environ, Path(task["taskDir"]) / "pip-target"))


def pip_elsewhere(env: os._Environ | dict, target: Path) -> dict:
    """The environment of a container component's command: a ``pip install`` in it goes into the task's own
    directory (``PIP_TARGET``, first on ``PYTHONPATH`` and PATH), never into ketch's environment."""
    out = dict(env)
    out["PIP_TARGET"] = str(target)
    out["PYTHONPATH"] = os.pathsep.join(x for x in (str(target), out.get("PYTHONPATH", "")) if x)
    out["PATH"] = os.pathsep.join([str(target / "bin"), out.get("PATH", "")])
    return out


def _parse_param(text: str, ptype: str | None) -> Any:
    t = text
    if ptype == "STRING" or ptype is None:
        return t
    t = t.strip()
    if ptype == "NUMBER_INTEGER":
        return int(float(t))
    if ptype == "NUMBER_DOUBLE":
        return float(t)
    if ptype == "BOOLEAN":
        return t.lower() == "true"
    return json.loads(t)


def _copy_custom(src: Path, uri: str, uploads: dict[str, tuple[str, str]]) -> None:
    """An artifact the component wrote somewhere else (``artifact.custom_path``) is copied to its URI."""
    import shutil

    if not src.exists():
        return
    if uri in uploads:
        _fs_put(src, uploads[uri][1])
        return
    dest = Path(_local(uri))
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dest)


def collect(task: dict, ei: dict, uploads: dict[str, tuple[str, str]]) -> dict:
    tdir = Path(task["taskDir"])
    out_file = Path(ei["outputs"]["outputFile"])
    eo = json.loads(out_file.read_text()) if out_file.exists() else {}
    params: dict[str, Any] = {}
    for name, d in (ei["outputs"].get("parameters") or {}).items():
        if name in (eo.get("parameterValues") or {}):
            params[name] = eo["parameterValues"][name]
        elif Path(d["outputFile"]).exists():
            params[name] = _parse_param(Path(d["outputFile"]).read_text(), task["outputParameterTypes"].get(name))
    arts: dict[str, list] = {}
    for name, group in (ei["outputs"].get("artifacts") or {}).items():
        produced = ((eo.get("artifacts") or {}).get(name) or {}).get("artifacts") or []
        lst = []
        for i, a in enumerate(group.get("artifacts") or []):
            merged = dict(a)
            if i < len(produced):
                p = produced[i]
                merged["metadata"] = {**(a.get("metadata") or {}), **(p.get("metadata") or {})}
                if p.get("uri"):
                    merged["uri"] = p["uri"]
                if p.get("custom_path") or p.get("customPath"):
                    _copy_custom(Path(p.get("custom_path") or p.get("customPath")), merged["uri"], uploads)
            if merged["uri"] in uploads:
                local, remote = uploads[merged["uri"]]
                _fs_put(Path(local), remote)
                merged["uri"] = remote
            merged["id"] = hashlib.sha1(str(merged["uri"]).encode()).hexdigest()[:16]
            lst.append(merged)
        arts[name] = lst
    del tdir
    return {"parameters": params, "artifacts": arts}


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The Pod's stdout is a file, which Python would block-buffer until the task ends; line buffering (and
    # PYTHONUNBUFFERED for a container component's own Python) lets the Pod log show progress as it happens.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    task_path = Path(argv[0])
    task = json.loads(task_path.read_text())
    tdir = Path(task["taskDir"])
    result_path = tdir / "result.json"
    ei = task["executorInput"]
    uploads: dict[str, tuple[str, str]] = {}
    try:
        lw = _lightweight(task["command"], task["args"])
        prefixes = mount_prefixes(tdir) if lw is not None else None
        uris = remote_uris(ei)
        stage_inputs(ei, tdir, prefixes)
        uploads = stage_outputs(ei, tdir, prefixes)
        if lw is not None:
            ensure_packages(task, task_path)
            run_python(lw[0], lw[1], ei, tdir, prefixes)
        else:
            rc = run_container(task, ei, uris)
            if rc != 0:
                raise SystemExit(rc)
        _write(result_path, collect(task, ei, uploads))
        return 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if code == 0:
            _write(result_path, collect(task, ei, uploads))
            return 0
        _write(result_path, {"error": f"the component exited with code {code}"})
        return code or 1
    except BaseException as e:  # noqa: BLE001 - report every failure of the user's code as the task's error
        traceback.print_exc()
        _write(result_path, {"error": f"{type(e).__name__}: {e}"})
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def finish(code: int) -> None:
    """End the task process without the interpreter's teardown of every module, which takes longer than
    a small task's whole run once kfp is loaded. What that teardown would still do for the component is
    done first: files it left open in its module's globals are closed (clearing the module drops the last
    references), non-daemon threads are joined, atexit handlers run, and stdout/stderr are flushed."""
    import atexit
    import gc
    import threading

    mod = sys.modules.pop("ephemeral_component", None)
    if mod is not None:
        mod.__dict__.clear()
    gc.collect()
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join()
    atexit._run_exitfuncs()  # what Py_Finalize runs; undocumented but the same since Python 2
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    finish(main())
