"""Local web app: browse the evidence with provenance, run analyses, curate outcomes.

Entry points (wired into the CLI as ``lnsynth serve`` and ``lnsynth export``):

* :func:`create_app` -- the FastAPI application on a SQLite store.
* :func:`serve` -- run it with uvicorn.
* :func:`export` -- write the store back to the YAML layout ``load_evidence`` reads.

Curators are named users (``lnsynth users add``; roles viewer, curator, reviewer, admin) with
server-side sessions; values entered in the app follow the two-person rule (see
:mod:`lnsynth.web.auth` and :mod:`lnsynth.web.curation`).

Needs the ``web`` extra (fastapi, uvicorn, python-multipart, argon2-cffi).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Optional

__all__ = ["create_app", "serve", "export", "DISCLAIMER"]

DISCLAIMER = "lnsynth summarises evidence and simulates hypotheses; it does not prescribe."


def create_app(db_path: Path | str, token: Optional[str] = None, **kw):
    """FastAPI app on the store at ``db_path`` (seeded from the package data if new).

    ``token``: bearer secret for writes (default: ``$LNSYNTH_TOKEN``; none = read-only).
    """
    from .app import create_app as _create

    return _create(db_path, token, **kw)


def serve(host: str, port: int, db: Path, token: str | None, allowed_hosts=None,
          insecure_dev_token: bool = False, forwarded_allow_ips: str | None = None) -> None:
    """Serve the app with uvicorn on ``host:port``.

    ``token`` is the shared bootstrap-admin token (default ``$LNSYNTH_TOKEN``); it must have at
    least 16 characters unless ``insecure_dev_token`` (``ValueError`` otherwise).  Without one a
    random token is generated and printed once to stderr, so writes are never open to anyone
    who can reach the port.  ``forwarded_allow_ips`` (off by default) names the reverse proxies
    whose ``X-Forwarded-For`` is believed (see :func:`lnsynth.web.server.uvicorn_config`).
    """
    import uvicorn  # noqa: F401  (fail early without the web extra)

    from .auth import check_token

    token = token if token is not None else (os.environ.get("LNSYNTH_TOKEN") or None)
    if token is None:
        token = secrets.token_urlsafe(24)
        print(f"lnsynth serve: no LNSYNTH_TOKEN set; token for writes this run: {token}", file=sys.stderr)
    check_token(token, insecure_dev_token)
    # Host allow-list: loopback names, the address bound (unless a wildcard), --allowed-host / $LNSYNTH_ALLOWED_HOSTS
    hosts = list(allowed_hosts or []) + ([host] if host not in ("0.0.0.0", "::", "") else [])
    app = create_app(Path(db), token, allowed_hosts=hosts)
    from .server import serve_app  # uvicorn with header/keep-alive timeouts and limits

    serve_app(app, host, int(port), forwarded_allow_ips=forwarded_allow_ips)


def export(db: Path, out: Path, audit: bool = False) -> None:
    """Write the store at ``db`` to ``out`` (``sources.yaml``, ``studies/``, ``syntheses/``).

    With ``audit``, the whole audit trail goes beside the evidence as ``audit.jsonl`` (one JSON object a
    line, oldest first: when, who, action, trial, record, before, after), so a review team can keep who
    entered, changed, verified and deleted each value with the values themselves.  It is a separate file,
    so ``lnsynth import`` of the evidence layout is unchanged.
    """
    import json

    from .store import export_store, open_cli_store, uses_server

    if not uses_server():  # $LNSYNTH_DATABASE_URL unset: the SQLite file db
        db = Path(db)
        if not db.exists():
            raise FileNotFoundError(f"no store at {db} (start `lnsynth serve --db {db}` once to create it)")
    store = open_cli_store(db)
    try:
        export_store(store, Path(out))
        if audit:
            with open(Path(out) / "audit.jsonl", "w", encoding="utf-8") as fh:
                for row in store.audit():
                    fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True, default=str) + "\n")
    finally:
        store.close()
