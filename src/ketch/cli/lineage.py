"""``ketch lineage ARTIFACT``: what produced an artifact and what consumed it (by artifact id or URI),
through the pipelines lineage API."""

from __future__ import annotations

from typing import Annotated

import typer

from ketch.machinery.connect import resolve


def lineage(
    artifact: Annotated[str, typer.Argument(help="Artifact id (from run details) or its URI.")],
    server: Annotated[str | None, typer.Option("--server", help="ketch server URL (default: $KETCH_SERVER, else the kubeconfig's current context).")] = None,
) -> None:
    """Show the execution that produced an artifact and every execution that consumed it."""
    conn = resolve(server)
    api = conn.server + "/apis/v2beta1"
    with conn.client() as http:
        aid = artifact
        if "/" in artifact or ":" in artifact:
            found = http.get(f"{api}/artifacts", params={"uri": artifact}).json().get("artifacts") or []
            if not found:
                typer.echo(f"no artifact with uri {artifact}", err=True)
                raise typer.Exit(1)
            aid = found[0]["artifact_id"]
        r = http.get(f"{api}/artifacts/{aid}")
        if r.status_code == 404:
            typer.echo(f"no artifact {artifact}", err=True)
            raise typer.Exit(1)
        d = r.json()
    a = d["artifact"]
    typer.echo(f"artifact {a['artifact_id']} {a['type']} {a['uri']}")
    for e in d["produced_by"]:
        typer.echo(f"  produced by  run {e['run_id']} task {e['task_name']} ({e['state']})")
    for e in d["consumed_by"]:
        typer.echo(f"  consumed by  run {e['run_id']} task {e['task_name']} ({e['state']})")
