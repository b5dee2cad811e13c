"""The docs name CLI commands, flags and URLs; this checks each one exists, so the docs cannot drift from the
code unseen (a doc once said `.py` upload was refused after it worked, and flags were renamed under it).

Commands: every `ketch ...` command line in README.md and docs/*.md (an inline code span that starts with
`ketch `, or a line of a shell code block) must name a real subcommand, and every `--flag` on it must be
one of that subcommand's options. URLs: every fixed path of ketch's own port that the docs name (no
placeholder in it) must answer on a running server with something other than 404.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from ketch.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}


def _command_lines(text: str) -> list[str]:
    """Command lines a reader would type: inline `ketch ...` spans and shell-block lines that run ketch."""
    lines: list[str] = []
    for lang, body in re.findall(r"```([\w-]*)\n(.*?)```", text, re.S):
        if lang.lower() not in SHELL_FENCES:
            continue
        for line in body.splitlines():
            line = re.sub(r"^\s*\$\s*", "", line).strip()
            for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
                if part.startswith("ketch "):
                    lines.append(part.split("#", 1)[0].strip())
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", span.strip()):
            if part.startswith("ketch "):
                lines.append(part.split("#", 1)[0].strip())
    return lines


def _is_group(cmd) -> bool:
    return hasattr(cmd, "list_commands")  # typer may build on its own copy of click: no isinstance


def _resolve(root, words: list[str]):
    """The (sub)command the words name (None when there is none), and the words that follow it."""
    cmd = root
    rest = list(words)
    while _is_group(cmd) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(cmd.context_class(cmd), rest[0])
        if sub is None:
            return None, rest
        cmd, rest = sub, rest[1:]
    return (None, rest) if cmd is root else (cmd, rest)


def _documented_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for line in _command_lines(doc.read_text()):
            found.append((doc.relative_to(ROOT).as_posix(), line))
    return found


def test_the_docs_name_commands_at_all():
    """Guard the extraction itself: if it found nothing, the check below would pass vacuously."""
    lines = [line for _, line in _documented_commands()]
    assert any(line.startswith("ketch up") for line in lines)
    assert any(line.startswith("ketch user add") for line in lines)
    assert len(lines) > 20


def test_every_documented_command_and_flag_exists():
    root = typer.main.get_command(app)
    assert _is_group(root) and "up" in root.list_commands(root.context_class(root))
    problems = []
    for doc, line in _documented_commands():
        words = [w for w in re.split(r"\s+", line)[1:] if w]
        cmd, rest = _resolve(root, words)
        if cmd is None:
            problems.append(f"{doc}: `{line}`: no subcommand {rest[0] if rest else ''!r}")
            continue
        options = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
        for word in rest:
            flag = word.strip("[]()").split("=", 1)[0]
            if flag.startswith("--") and flag not in options:
                problems.append(f"{doc}: `{line}`: `{cmd.name}` has no option {flag}")
    assert not problems, "\n".join(problems)


def _documented_fixed_paths() -> set[str]:
    """Fixed paths on ketch's own port named in the docs (placeholders, globs and ellipses left out)."""
    own = ("/apis", "/api", "/healthz", "/livez", "/readyz", "/metrics", "/version", "/openapi", "/login")
    foreign = ("/api/kernels",)  # JupyterLab's, behind the notebook proxy
    paths: set[str] = set()
    longer: set[str] = set()  # every path named, placeholders and all: a base path they extend is not a URL
    for doc in DOCS:
        text = doc.read_text()
        for span in re.findall(r"```.*?```|`[^`\n]+`", text, re.S):
            for m in re.finditer(r"(?<![\w.:/-])(/[a-z][\w./-]*)", span):
                path = m.group(1).rstrip("./")
                end = m.end(1)
                longer.add(m.group(1) + "/")
                if end < len(span) and span[end] in "<{[*?|\\":
                    continue  # the path goes on with a placeholder: not a fixed URL
                if path.startswith(foreign) or not any(path == p or path.startswith(p + "/") for p in own):
                    continue
                if path.endswith("/..."):
                    continue
                paths.add(path)
    return {p for p in paths if not any(other.startswith(p + "/") and other != p + "/" for other in longer)}


def test_every_documented_url_answers(ketch):
    paths = _documented_fixed_paths()
    assert {"/healthz", "/metrics", "/apis/v2beta1/healthz"} & paths, paths
    missing = []
    with ketch.http() as client:
        for path in sorted(paths):
            r = client.get(path)
            if r.status_code == 404 and not _object_not_found(r):
                missing.append(f"{path}: 404 {r.text[:120]}")
    assert not missing, "documented URLs that no route serves:\n" + "\n".join(missing)


def _object_not_found(r) -> bool:
    """A 404 about a named object (a documented example such as configmaps/x) is a served route."""
    try:
        body = r.json()
    except ValueError:
        return False
    return bool(isinstance(body, dict) and body.get("kind") == "Status" and (body.get("details") or {}).get("name"))


if __name__ == "__main__":  # pragma: no cover - a quick listing for whoever edits the docs
    for doc, line in _documented_commands():
        print(doc, line)
    print(sorted(_documented_fixed_paths()))
    pytest.main([__file__])
