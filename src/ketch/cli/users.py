"""``ketch user add NAME [--group G]``: a static user in ``KETCH_HOME/tokens.csv`` (kube-apiserver's
``--token-auth-file`` format, ``token,user,uid,"group1,group2"``, re-read by the server without a restart),
and a kubeconfig for it on stdout (or ``--kubeconfig FILE``) to hand to that person.

What the user may do is RBAC's: a new user holds only ``system:authenticated``'s defaults (discovery,
``kubectl auth can-i``/``whoami``, reading the model registry) until a binding or a Profile gives more.
"""

from __future__ import annotations

import base64
import re
import secrets
from pathlib import Path
from typing import Annotated

import typer
import yaml

user_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Static users (KETCH_HOME/tokens.csv).")
_NAME = re.compile(r"^[^,\s\"]+$")


def kubeconfig_for(server: str, user: str, token: str, ca: Path | None, namespace: str) -> dict:
    cluster: dict = {"server": server}
    if ca is not None and ca.exists():
        cluster["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    return {"apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": f"ketch-{user}",
            "clusters": [{"name": "ketch", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": f"ketch-{user}", "context": {"cluster": "ketch", "user": user, "namespace": namespace}}]}


@user_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="User name (as RBAC subjects name it, e.g. alice or alice@example.org).")],
    group: Annotated[list[str] | None, typer.Option("--group", "-g", help="A group of the user; repeatable.")] = None,
    server: Annotated[str, typer.Option(help="URL of the ketch server the kubeconfig names.")] = "http://127.0.0.1:8080",
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="The kubeconfig context's namespace.")] = "default",
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", help="Write the kubeconfig here instead of stdout.")] = None,
    home: Annotated[Path | None, typer.Option(envvar="KETCH_HOME", help="ketch's state directory (default ~/.ketch).")] = None,
) -> None:
    """Add a user with a new token and print a kubeconfig for it."""
    from ketch.config import default_home
    from ketch.machinery.authn import TokenFile, is_loopback, private_file

    groups = [g.strip() for g in group or [] if g.strip()]
    for what, v in [("user name", name), *(("group", g) for g in groups)]:
        if not _NAME.match(v):
            typer.echo(f"error: {what} {v!r} may not contain commas, quotes or spaces", err=True)
            raise typer.Exit(2)
    if name.startswith("system:") or any(g == "system:masters" for g in groups):
        typer.echo("warning: system: names are Kubernetes' own; system:masters bypasses RBAC entirely", err=True)
    h = Path(home).expanduser() if home else default_home()
    tf = TokenFile(h / "tokens.csv")
    if not tf.path.exists():
        tf.ensure_admin()
    if any(r[1] == name for r in tf.rows()):
        typer.echo(f"error: user {name!r} already exists in {tf.path}", err=True)
        raise typer.Exit(1)
    token = secrets.token_urlsafe(32)
    tf.add(token, name, name, groups)
    if server.startswith("http://") and is_loopback(server[7:].split("/")[0]):
        server = "https://" + server[7:]  # client-go sends tokens only over TLS; ketch serves both on the port
    cfg = yaml.safe_dump(kubeconfig_for(server, name, token, h / "tls" / "tls.crt", namespace), sort_keys=False)
    if kubeconfig is not None:
        private_file(kubeconfig, cfg)
        typer.echo(f"added user {name!r}; kubeconfig written to {kubeconfig}", err=True)
    else:
        typer.echo(cfg, nl=False)
        typer.echo(f"added user {name!r} (groups: {', '.join(groups) or 'none'})", err=True)
