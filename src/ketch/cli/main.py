"""``ketch`` console script."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

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
    from ketch.server.app import serve

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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


@app.command()
def version() -> None:
    """Print ketch's version."""
    typer.echo(_version())


def _version() -> str:
    import ketch

    return ketch.__version__


def main() -> None:
    app()


from ketch.cli.run import run as _run_pipeline  # noqa: E402 - registered after the core commands

app.command("run")(_run_pipeline)
