"""``ketch`` console script."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ketch: Kubeflow on one machine.")


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless told otherwise).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the API, the KFP API, the gateway and the UI.")] = 8080,
    home: Annotated[Path | None, typer.Option(envvar="KETCH_HOME", help="State directory (default ~/.ketch).")] = None,
    database_url: Annotated[str | None, typer.Option("--database-url", envvar="KETCH_DATABASE_URL", help="SQLAlchemy URL; SQLite under the home by default.")] = None,
    kubeconfig: Annotated[bool, typer.Option(help="Also write the 'ketch' kubeconfig context.")] = False,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "warning",
) -> None:
    """Start ketch: the API server, controllers and kubelet in one process."""
    from ketch.config import Settings
    from ketch.server import lograte
    from ketch.server.app import serve

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    lograte.install()  # identical warnings and errors at most once per window, with a count
    settings = Settings.from_env(host=host, port=port, home=home, database_url=database_url)
    settings.home.mkdir(parents=True, exist_ok=True)
    if kubeconfig:
        from ketch.cli.kubeconfig import write_kubeconfig

        write_kubeconfig(settings.url)
    typer.echo(f"ketch {_version()} serving on {settings.url} (state in {settings.home})", err=True)
    serve(settings)


@app.command("kubeconfig")
def kubeconfig_cmd(
    server: Annotated[str, typer.Option(help="URL of the ketch server.")] = "http://127.0.0.1:8080",
    path: Annotated[Path | None, typer.Option("--kubeconfig", help="File to write (default $KUBECONFIG or ~/.kube/config).")] = None,
    use: Annotated[bool, typer.Option(help="Make 'ketch' the current context.")] = True,
) -> None:
    """Write or merge a kubeconfig context named 'ketch' (kubectl config use-context ketch)."""
    from ketch.cli.kubeconfig import write_kubeconfig

    p = write_kubeconfig(server, path, use=use)
    typer.echo(f"wrote context 'ketch' -> {server} in {p}")


ServerOpt = Annotated[str, typer.Option("--server", envvar="KETCH_SERVER", help="URL of the ketch server.")]
NamespaceOpt = Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace (default: default).")]


def _run(fn: Callable[[], Any]) -> Any:
    """Run a convenience command, turning API errors into kubectl-like messages and exit status 1."""
    from ketch.cli import resources

    try:
        return fn()
    except resources.CliError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from None
    except httpx_errors() as e:
        typer.echo(f"error: cannot reach ketch: {e}", err=True)
        raise typer.Exit(1) from None


def httpx_errors() -> type[Exception]:
    import httpx

    return httpx.TransportError


@app.command("apply")
def apply_cmd(
    filename: Annotated[str, typer.Option("--filename", "-f", help="Manifest file (YAML or JSON, multi-document), or - for stdin.")],
    namespace: NamespaceOpt = None,
    force_conflicts: Annotated[bool, typer.Option("--force-conflicts", help="Take ownership of fields other managers own.")] = False,
    server: ServerOpt = "http://127.0.0.1:8080",
) -> None:
    """Server-side apply every object in a manifest (field manager "ketch")."""
    from ketch.cli import resources

    for line in _run(lambda: resources.apply(resources.Api(server), filename, namespace, force_conflicts)):
        typer.echo(line)


@app.command("get")
def get_cmd(
    kind: Annotated[str, typer.Argument(help="Resource type: plural, singular, kind or short name (pods, cm, notebook...).")],
    name: Annotated[str | None, typer.Argument()] = None,
    namespace: NamespaceOpt = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="json or yaml (default: a table).")] = None,
    server: ServerOpt = "http://127.0.0.1:8080",
) -> None:
    """List or show objects, with the same columns kubectl prints."""
    from ketch.cli import resources

    typer.echo(_run(lambda: resources.get(resources.Api(server), kind, name, namespace, all_namespaces, output)))


@app.command("delete")
def delete_cmd(
    kind: Annotated[str, typer.Argument()],
    names: Annotated[list[str], typer.Argument()],
    namespace: NamespaceOpt = None,
    server: ServerOpt = "http://127.0.0.1:8080",
) -> None:
    """Delete objects by name (dependents are garbage-collected in the background)."""
    from ketch.cli import resources

    for line in _run(lambda: resources.delete(resources.Api(server), kind, names, namespace)):
        typer.echo(line)


@app.command()
def version() -> None:
    """Print ketch's version."""
    typer.echo(_version())


def _version() -> str:
    import ketch

    return ketch.__version__


def main() -> None:
    app()


from ketch.cli.run import pause as _pause  # noqa: E402 - registered after the core commands
from ketch.cli.run import resume as _resume  # noqa: E402
from ketch.cli.run import run as _run_pipeline  # noqa: E402

app.command("run")(_run_pipeline)
app.command("pause")(_pause)
app.command("resume")(_resume)

from ketch.cli.lineage import lineage as _lineage  # noqa: E402

app.command("lineage")(_lineage)
