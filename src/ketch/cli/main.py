"""``ketch`` console script."""

from __future__ import annotations

import logging
import socket
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
    kubeconfig: Annotated[bool, typer.Option(help="Also write the 'ketch' kubeconfig context (and make it current).")] = False,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "warning",
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate for HTTPS on the port.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")] = None,
    allowed_host: Annotated[list[str] | None, typer.Option("--allowed-host", help="A host name (or *.suffix) clients may use besides loopback names and IP addresses; repeatable.")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Serve plain HTTP beyond loopback (tokens then cross the network in clear text).")] = False,
    oidc_issuer_url: Annotated[str | None, typer.Option("--oidc-issuer-url", envvar="KETCH_OIDC_ISSUER_URL", help="Accept OIDC ID tokens from this issuer (its discovery document and JWKS are fetched from it), as kube-apiserver's flag.")] = None,
    oidc_client_id: Annotated[str | None, typer.Option("--oidc-client-id", envvar="KETCH_OIDC_CLIENT_ID", help="The audience ID tokens must carry.")] = None,
    oidc_username_claim: Annotated[str, typer.Option("--oidc-username-claim", envvar="KETCH_OIDC_USERNAME_CLAIM", help="Claim holding the user name.")] = "sub",
    oidc_username_prefix: Annotated[str | None, typer.Option("--oidc-username-prefix", envvar="KETCH_OIDC_USERNAME_PREFIX", help="Prefix of user names (default '<issuer>#' unless the claim is email; '-' for none).")] = None,
    oidc_groups_claim: Annotated[str | None, typer.Option("--oidc-groups-claim", envvar="KETCH_OIDC_GROUPS_CLAIM", help="Claim holding the user's groups (string or list).")] = None,
    oidc_groups_prefix: Annotated[str, typer.Option("--oidc-groups-prefix", envvar="KETCH_OIDC_GROUPS_PREFIX", help="Prefix of group names.")] = "",
    oidc_ca_file: Annotated[Path | None, typer.Option("--oidc-ca-file", envvar="KETCH_OIDC_CA_FILE", help="PEM CA bundle that signed the issuer's certificate.")] = None,
    leader_elect: Annotated[bool | None, typer.Option("--leader-elect/--no-leader-elect", help="Run controllers and the kubelet only while holding the Lease kube-system/ketch-controller-manager, so several ketch up can share one PostgreSQL database (default: on for PostgreSQL, off for SQLite; KETCH_LEADER_ELECT).")] = None,
    leader_elect_lease_duration: Annotated[float | None, typer.Option("--leader-elect-lease-duration", help="Seconds a candidate waits after the Lease's last renewal before taking it over (default 15; KETCH_LEADER_ELECT_LEASE_DURATION).")] = None,
    leader_elect_renew_deadline: Annotated[float | None, typer.Option("--leader-elect-renew-deadline", help="Seconds the leader keeps trying to renew before it stops its controllers (default 10; KETCH_LEADER_ELECT_RENEW_DEADLINE).")] = None,
    leader_elect_retry_period: Annotated[float | None, typer.Option("--leader-elect-retry-period", help="Seconds between attempts to take or renew the Lease (default 2; KETCH_LEADER_ELECT_RETRY_PERIOD).")] = None,
) -> None:
    """Start ketch: the API server, controllers and kubelet in one process."""
    from ketch.config import Settings
    from ketch.machinery.hosts import is_loopback
    from ketch.server import lograte
    from ketch.server.app import serve

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    lograte.install()  # identical warnings and errors at most once per window, with a count
    try:
        settings = Settings.from_env(host=host, port=port, home=home, database_url=database_url, tls_cert=tls_cert, tls_key=tls_key,
                                     insecure=insecure or None, leader_elect=leader_elect,
                                     leader_elect_lease_duration=leader_elect_lease_duration,
                                     leader_elect_renew_deadline=leader_elect_renew_deadline,
                                     leader_elect_retry_period=leader_elect_retry_period)
        if settings.elects_leader:
            from ketch.server.app import election_config

            election_config(settings)  # durations that do not fit together are refused here, by name
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if oidc_issuer_url or oidc_client_id:
        from ketch.machinery.oidc import OIDCConfig

        if not oidc_issuer_url:
            typer.echo("error: --oidc-client-id needs --oidc-issuer-url", err=True)
            raise typer.Exit(2)
        try:
            settings.oidc = OIDCConfig(oidc_issuer_url or "", oidc_client_id or "", oidc_username_claim, oidc_username_prefix,
                                       oidc_groups_claim, oidc_groups_prefix, str(oidc_ca_file) if oidc_ca_file else None)
        except ValueError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
    if allowed_host:
        settings.allowed_hosts = [*settings.allowed_hosts, *allowed_host]
    if bool(tls_cert) != bool(tls_key):
        typer.echo("error: --tls-cert and --tls-key go together", err=True)
        raise typer.Exit(2)
    if settings.artifacts:
        from ketch import storage

        why = storage.unavailable(settings.artifacts)
        if why:
            typer.echo(f"error: {storage.ENV}={why}", err=True)
            raise typer.Exit(2)
    exposed = not is_loopback(host if ":" not in host else f"[{host}]")

    def banner(login_code: str) -> None:
        from ketch.server.tls import fingerprint

        if kubeconfig:
            from ketch.cli.kubeconfig import write_kubeconfig

            p = write_kubeconfig(settings.kube_url, token=admin_token(settings.home), ca=settings.tls_cert)
            typer.echo(f"kubeconfig: wrote context 'ketch' -> {settings.kube_url} into {p} and made it the current context", err=True)
        where = f"{settings.url} (and https:// on the same port)"
        if exposed:
            where = f"https://{host if host not in ('0.0.0.0', '::') else socket.gethostname()}:{port} to the network, " \
                    f"{settings.url} on this machine"
        typer.echo(f"ketch {_version()} serving on {where} (bound to {host}:{port}; state in {settings.home})", err=True)
        if settings.artifacts:
            typer.echo(f"artifacts and archived Pod logs: {settings.artifacts}", err=True)
        if exposed:
            typer.echo(f"TLS certificate {settings.tls_cert} (SHA-256 {fingerprint(Path(str(settings.tls_cert)))})", err=True)
            if settings.insecure:
                typer.echo("WARNING: --insecure: plain HTTP is served to the whole network; tokens and every response cross it "
                           "in clear text. Drop --insecure to require TLS from other machines.", err=True)
        typer.echo(f"dashboard: {settings.url}/login?code={login_code}  (one-time link; `ketch token` prints the token)", err=True)

    serve(settings, banner)


def admin_token(home: Path) -> str:
    from ketch.machinery.authn import TokenFile

    home.mkdir(parents=True, exist_ok=True)
    return TokenFile(home / "tokens.csv").ensure_admin()


@app.command()
def token(
    home: Annotated[Path | None, typer.Option(envvar="KETCH_HOME", help="State directory (default ~/.ketch).")] = None,
) -> None:
    """Print the admin bearer token (for kfp.Client(existing_token=...), curl, the dashboard's login)."""
    from ketch.config import default_home

    typer.echo(admin_token(Path(home).expanduser() if home else default_home()))


@app.command("kubeconfig")
def kubeconfig_cmd(
    server: Annotated[str, typer.Option(help="URL of the ketch server.")] = "http://127.0.0.1:8080",
    path: Annotated[Path | None, typer.Option("--kubeconfig", help="File to write (default $KUBECONFIG or ~/.kube/config).")] = None,
    use: Annotated[bool, typer.Option(help="Make 'ketch' the current context.")] = True,
    home: Annotated[Path | None, typer.Option(envvar="KETCH_HOME", help="ketch's state directory, where its token is.")] = None,
) -> None:
    """Write or merge a kubeconfig context named 'ketch' with the admin token (kubectl config use-context ketch).

    kubectl sends a token only over TLS, so an http:// server on this machine is written as https:// on the
    same port (ketch serves both), with ketch's certificate as the cluster's certificate authority."""
    from ketch.cli.kubeconfig import write_kubeconfig
    from ketch.config import default_home
    from ketch.machinery.hosts import is_loopback

    h = Path(home).expanduser() if home else default_home()
    crt = h / "tls" / "tls.crt"
    if server.startswith("http://") and is_loopback(server[7:].split("/")[0]):
        server = "https://" + server[7:]
    ca = crt if server.startswith("https:") and crt.exists() else None
    p = write_kubeconfig(server, path, use=use, token=admin_token(h), ca=ca)
    typer.echo(f"wrote context 'ketch' -> {server} in {p}" + (" (now the current context)" if use else ""))


ServerOpt = Annotated[str | None, typer.Option("--server", help="URL of the ketch server (default: $KETCH_SERVER, else the kubeconfig's current context).")]
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
    server: ServerOpt = None,
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
    server: ServerOpt = None,
) -> None:
    """List or show objects, with the same columns kubectl prints."""
    from ketch.cli import resources

    typer.echo(_run(lambda: resources.get(resources.Api(server), kind, name, namespace, all_namespaces, output)))


@app.command("delete")
def delete_cmd(
    kind: Annotated[str, typer.Argument()],
    names: Annotated[list[str], typer.Argument()],
    namespace: NamespaceOpt = None,
    server: ServerOpt = None,
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
    import httpx

    try:
        app()
    except httpx.TransportError as e:  # one short line, whatever the command, not a traceback
        try:
            where = str(e.request.url.copy_with(path="/", query=None)).rstrip("/")
        except RuntimeError:  # no request attached
            from ketch.machinery.connect import resolve

            where = resolve(None).server
        typer.echo(f"error: cannot reach ketch at {where}: {e}", err=True)
        raise SystemExit(1) from None


from ketch.cli.run import pause as _pause  # noqa: E402 - registered after the core commands
from ketch.cli.run import resume as _resume  # noqa: E402
from ketch.cli.run import run as _run_pipeline  # noqa: E402

app.command("run")(_run_pipeline)
app.command("pause")(_pause)
app.command("resume")(_resume)

from ketch.cli.lineage import lineage as _lineage  # noqa: E402
from ketch.cli.observe import logs as _logs  # noqa: E402
from ketch.cli.observe import status as _status  # noqa: E402

app.command("lineage")(_lineage)
app.command("logs")(_logs)
app.command("status")(_status)

from ketch.cli.users import user_app as _user_app  # noqa: E402

app.add_typer(_user_app, name="user")
