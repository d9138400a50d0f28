"""Local web app: browse the evidence with provenance, run analyses, curate outcomes.

Entry points (wired into the CLI as ``lnsynth serve`` and ``lnsynth export``):

* :func:`create_app` -- the FastAPI application on a SQLite store.
* :func:`serve` -- run it with uvicorn.
* :func:`export` -- write the store back to the YAML layout ``load_evidence`` reads.

Needs the ``web`` extra (fastapi, uvicorn, python-multipart, itsdangerous).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Optional

__all__ = ["create_app", "serve", "export", "DISCLAIMER"]

DISCLAIMER = "lnsynth summarises evidence and simulates hypotheses; it does not prescribe."


def create_app(db_path: Path | str, token: Optional[str] = None):
    """FastAPI app on the store at ``db_path`` (seeded from the package data if new).

    ``token``: bearer secret for writes (default: ``$LNSYNTH_TOKEN``; none = read-only).
    """
    from .app import create_app as _create

    return _create(db_path, token)


def serve(host: str, port: int, db: Path, token: str | None) -> None:
    """Serve the app with uvicorn on ``host:port``.

    Without ``token`` and without ``$LNSYNTH_TOKEN`` a random token is generated and
    printed once to stderr, so writes are never open to anyone who can reach the port.
    """
    import uvicorn

    token = token or os.environ.get("LNSYNTH_TOKEN") or None
    if token is None:
        token = secrets.token_urlsafe(24)
        print(f"lnsynth serve: no LNSYNTH_TOKEN set; token for writes this run: {token}", file=sys.stderr)
    app = create_app(Path(db), token)
    uvicorn.run(app, host=host, port=int(port), log_level="warning", access_log=False)


def export(db: Path, out: Path) -> None:
    """Write the store at ``db`` to ``out`` (``sources.yaml``, ``studies/``, ``syntheses/``)."""
    from .store import Store, export_store

    db = Path(db)
    if not db.exists():
        raise FileNotFoundError(f"no store at {db} (start `lnsynth serve --db {db}` once to create it)")
    store = Store(db)
    try:
        export_store(store, Path(out))
    finally:
        store.close()
