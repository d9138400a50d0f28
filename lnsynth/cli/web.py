"""The web app's store from the command line: serve, users, export, import."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from lnsynth.cli.common import _user_error, err, escape


def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    allowed_host: Optional[list[str]] = typer.Option(None, "--allowed-host", metavar="NAME", help="Host name the server answers to, besides 127.0.0.1, localhost, [::1] and the --host address (repeatable; also $LNSYNTH_ALLOWED_HOSTS, comma-separated). Other Host headers get 400 (DNS rebinding)."),
    db: Path = typer.Option(Path("lnsynth.sqlite"), "--db", help="SQLite store (seeded from the package data on first start)."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="File whose first line is the shared bootstrap-admin token (default: $LNSYNTH_TOKEN, else one is generated). Never on the command line: it would show in `ps`."),
    insecure_dev_token: bool = typer.Option(False, "--insecure-dev-token", help="Allow a token shorter than 16 characters (local development only)."),
    token: Optional[str] = typer.Option(None, "--token", hidden=True, help="Refused: a token on the command line shows in `ps`."),
    forwarded_allow_ips: Optional[str] = typer.Option(None, "--forwarded-allow-ips", metavar="IPS", help="Comma-separated addresses of reverse proxies whose X-Forwarded-For is trusted (default: none; the connection's address is used for throttling and the audit)."),
) -> None:
    """Run the local web app (browse, analyse and curate the evidence). Needs the 'web' extra.

    Curators log in with named accounts (see 'lnsynth users'); the shared token acts as the bootstrap admin.
    """
    if token is not None:
        raise _user_error("--token: a token on the command line shows in `ps` and shell history; put it in "
                          "$LNSYNTH_TOKEN or in a file given with --token-file")
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "multipart", "itsdangerous", "httpx", "argon2") if importlib.util.find_spec(m) is None]
    if missing:
        pkg = {"multipart": "python-multipart", "argon2": "argon2-cffi"}
        sys.stderr.write("lnsynth: error: the web app needs the 'web' extra (missing: "
                         + ", ".join(pkg.get(m, m) for m in missing)
                         + f"); install it with: {sys.executable} -m pip install 'lnsynth[web]' "
                         "(from a checkout: pip install -e '.[web]'; `make report` installs it)\n")
        raise typer.Exit(2)
    from lnsynth.web import serve as _serve
    from lnsynth.web.auth import check_token, read_token

    try:
        shared = read_token(token_file)
        check_token(shared, insecure_dev_token)
    except ValueError as exc:
        raise _user_error(f"{'--token-file' if token_file else 'LNSYNTH_TOKEN'}: {exc}") from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else (f"[{host}]" if ":" in host else host))
    every = " (listening on every interface)" if host in ("0.0.0.0", "::", "") else ""
    from lnsynth.cli.living import _uses_server
    from lnsynth.web.store import database_url, redact_url

    where = redact_url(database_url() or "") if _uses_server() else db
    sys.stderr.write(f"lnsynth serve: http://{shown}:{port}/{every} (store {where}; Ctrl+C to stop)\n")
    sys.stderr.flush()
    _serve(host, port, db, shared, allowed_hosts=allowed_host or None, insecure_dev_token=insecure_dev_token,
           forwarded_allow_ips=forwarded_allow_ips)


users_app = typer.Typer(help="Named curators of the web app's store: add, list, change, make API tokens.",
                        no_args_is_help=True)


def _users_store(db: Optional[Path], must_exist: bool = True):
    """The store ($LNSYNTH_DATABASE_URL when set, else --db), through the one opener of the CLI."""
    from lnsynth.cli.living import _open_store

    return _open_store(db, must_exist=must_exist)


def _read_password(what: str) -> str:
    """The password from $LNSYNTH_PASSWORD, else asked twice on a terminal, else the first line of stdin."""
    import getpass
    import os

    pw = os.environ.get("LNSYNTH_PASSWORD")
    if pw is None:
        if sys.stdin.isatty():
            pw = getpass.getpass(f"password for {what}: ")
            if getpass.getpass("again: ") != pw:
                raise _user_error("the passwords differ")
        else:
            pw = sys.stdin.readline().rstrip("\r\n")
    return pw


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="Username (lowercase letters, digits, '_', '.', '-')."),
    role: str = typer.Option(..., "--role", help="viewer, curator, reviewer or admin."),
    db: Path = typer.Option(Path("lnsynth.sqlite"), "--db", help="SQLite store of 'lnsynth serve' (created if new)."),
) -> None:
    """Add a user; the password is read from $LNSYNTH_PASSWORD or stdin (never from the command line)."""
    from lnsynth.web.auth import hash_password, password_problem, username_problem
    from lnsynth.web.store import ROLES, Conflict

    if username_problem(name):
        raise _user_error(f"NAME: {username_problem(name)}")
    if role not in ROLES:
        raise _user_error(f"--role: expected one of {', '.join(ROLES)}, got {role!r}")
    pw = _read_password(name)
    if password_problem(pw):
        raise _user_error(f"password: {password_problem(pw)}")
    store = _users_store(db, must_exist=False)  # the first admin may be made before the first `serve`
    try:
        store.add_user(name, role, hash_password(pw), "cli")
    except Conflict:
        raise _user_error(f"NAME: user {name!r} exists (use 'lnsynth users set')") from None
    finally:
        store.close()
    typer.echo(f"user {name} added with role {role}")


@users_app.command("list")
def users_list(db: Path = typer.Option(Path("lnsynth.sqlite"), "--db")) -> None:
    """List the users and their roles."""
    store = _users_store(db)
    try:
        for u in store.users():
            typer.echo(f"{u['name']}\t{u['role']}\t{'active' if u['active'] else 'inactive'}")
    finally:
        store.close()


@users_app.command("set")
def users_set(
    name: str = typer.Argument(...),
    role: Optional[str] = typer.Option(None, "--role"),
    password: bool = typer.Option(False, "--password", help="Set a new password (read like 'users add')."),
    deactivate: bool = typer.Option(False, "--deactivate", help="Disable the account (ends its sessions and tokens)."),
    db: Path = typer.Option(Path("lnsynth.sqlite"), "--db"),
) -> None:
    """Change a user's role or password, or deactivate the account."""
    from lnsynth.web.auth import hash_password, password_problem
    from lnsynth.web.store import ROLES, NotFound

    if role is not None and role not in ROLES:
        raise _user_error(f"--role: expected one of {', '.join(ROLES)}, got {role!r}")
    h = None
    if password:
        pw = _read_password(name)
        if password_problem(pw):
            raise _user_error(f"password: {password_problem(pw)}")
        h = hash_password(pw)
    store = _users_store(db)
    try:
        store.update_user(name, "cli", role=role, password_hash=h, active=False if deactivate else None)
    except NotFound as exc:
        raise _user_error(f"NAME: {exc}") from None
    finally:
        store.close()
    typer.echo(f"user {name} updated")


@users_app.command("token")
def users_token(
    name: str = typer.Argument(...),
    label: str = typer.Option("", "--label"),
    db: Path = typer.Option(Path("lnsynth.sqlite"), "--db"),
) -> None:
    """Make an API token for a user and print it once (only its SHA-256 is stored)."""
    from lnsynth.web.auth import digest, new_api_token
    from lnsynth.web.store import NotFound

    store = _users_store(db)
    tok = new_api_token()
    try:
        store.add_api_token(name, digest(tok), label, "cli")
    except NotFound as exc:
        raise _user_error(f"NAME: {exc}") from None
    finally:
        store.close()
    typer.echo(tok)


def export_cmd(
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite store written by 'lnsynth serve' (not used when "
                                      "$LNSYNTH_DATABASE_URL names a PostgreSQL database)."),
    out: Path = typer.Option(Path("evidence-export"), "--out", help="Directory for the YAML layout (studies/, syntheses/, sources.yaml)."),
    audit: bool = typer.Option(False, "--audit", help="Also write the audit trail (who entered, changed, verified, deleted; logins) as audit.jsonl."),
) -> None:
    """Write the web app's store back to the YAML layout that 'load_evidence(dir)' reads."""
    from lnsynth.cli.living import _uses_server
    from lnsynth.web import export as _export
    from lnsynth.web.store import StoreUnavailable

    if db is None and not _uses_server():
        raise _user_error("--db: give the store's SQLite file (or set LNSYNTH_DATABASE_URL=postgresql://...)")
    try:
        _export(db, out, audit=audit)
    except StoreUnavailable as exc:
        raise _user_error(str(exc)) from None
    except FileNotFoundError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2)
    typer.echo(f"exported to {out}")


def import_cmd(
    source: Path = typer.Argument(..., metavar="FILE_OR_DIR", help="A directory written by 'lnsynth export' (sources.yaml, studies/, syntheses/) or one study YAML file."),
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite store of 'lnsynth serve' (created and seeded if new); "
                                      "not used when $LNSYNTH_DATABASE_URL names a PostgreSQL database."),
) -> None:
    """Import an export into the web app's store (round trip of 'lnsynth export'); refuses incomplete provenance.

    Everything is checked first, by the evidence loader: a value without source, location or
    quote, an unknown source or a bad field stops the import (exit 2, naming file, trial and
    field) and nothing is written. Trials identical to the store's are left alone; changed ones
    replace the store's (audited); new ones are added. Stop or restart a running server afterwards.
    """
    from lnsynth.web.store import ImportRefused, import_store

    if not source.exists():
        err.print(f"[red]lnsynth import: {escape(str(source))}: no such file or directory (missing)[/]")
        raise typer.Exit(2)
    store = _users_store(db, must_exist=False)
    where = store.database
    try:
        res = import_store(store, source)
    except ImportRefused as exc:
        err.print(f"[red]lnsynth import: refused, nothing written: {escape(str(exc))}[/]")
        raise typer.Exit(2)
    finally:
        store.close()
    typer.echo(f"imported {source} into {where}: {len(res['added'])} trial(s) added, {len(res['replaced'])} replaced, "
               f"{len(res['unchanged'])} unchanged; {len(res['sources_added'])} source(s) added")
    for k in ("added", "replaced"):
        if res[k]:
            typer.echo(f"  {k}: {', '.join(res[k])}")
