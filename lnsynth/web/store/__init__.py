"""The curation store behind the web app: SQLite (the zero-set-up default, one file) or PostgreSQL
(``LNSYNTH_DATABASE_URL=postgresql://...``, for an installation serving several panels).

The package, along its seams:

* :mod:`.db` -- the two backends and the thin SQL adapter for PostgreSQL;
* :mod:`.schema` -- the tables and the ordered migrations (table ``schema_version``);
* :mod:`.common` -- constants, errors, row <-> schema conversion, the two-person rule's verifier check;
* :mod:`.base` -- connections, write transactions, opening and seeding, the audit row;
* :mod:`.records` -- outcomes, adverse events and trials (one curator's writes);
* :mod:`.review` -- the second person: verify, dispute, resolve, the review queue;
* :mod:`.accounts` -- users, API tokens, sessions, login throttling;
* :mod:`.screening` -- records in for screening and answer snapshots (issue 22);
* :mod:`.evidence` -- the store as an :class:`~lnsynth.evidence.load.EvidenceBase`;
* :mod:`.exchange` -- export to and import from the YAML layout.

Two-person rule (see :mod:`lnsynth.web.curation`): every outcome, adverse event and trial row has a
``status``: ``repository`` (the package's curated data), ``pending`` (entered or changed in the app by
one curator), ``verified`` (checked against its quote by a second, different curator) or ``disputed``.
:meth:`Store.evidence` -- what every analysis reads -- holds only ``repository`` and ``verified``
values.  Open a store with :func:`open_store`, which honours ``LNSYNTH_DATABASE_URL``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .accounts import AccountsMixin
from .base import StoreCore, audit_row, bump, insert_aes, insert_outcome, insert_studies
from .common import (
    AE_FIELDS,
    APPROVED,
    BOOTSTRAP,
    KINDS,
    ROLES,
    VIEW_FIELDS,
    _SEED_CACHE,
    Conflict,
    Forbidden,
    NotFound,
    _authors,
    _creators,
    _dumps,
    _package_evidence,
    _role,
    _to_plain,
    _weeks_value,
    approved_row,
    check_verifier,
    now,
    row_to_ae,
    row_to_outcome,
    seed_view,
    seed_view_ae,
)
from .db import BUSY_TIMEOUT_S, PostgresBackend, SqliteBackend, StoreUnavailable, backend_for, redact_url
from .evidence import EvidenceMixin
from .exchange import (
    ImportRefused,
    _explicit_sources,
    _fix_sources,
    _prov_sources,
    _shorthand,
    _study_rows_doc,
    _typed_source_id,
    _write_yaml,
    export_store,
    import_store,
    source_slug,
)
from .records import RecordsMixin
from .review import ReviewMixin
from .schema import MIGRATIONS, SCHEMA_VERSION, migrate, schema_version
from .screening import ScreeningMixin
from .screening_review import ScreeningReviewMixin

DATABASE_URL_ENV = "LNSYNTH_DATABASE_URL"


@dataclass
class Store(RecordsMixin, ReviewMixin, AccountsMixin, ScreeningMixin, ScreeningReviewMixin, EvidenceMixin, StoreCore):
    """The store: the SQLite file at ``path``, or the PostgreSQL database at ``url`` when given
    (created, migrated and seeded from the package data on first use)."""

    path: Optional[Path] = None
    url: Optional[str] = None


def database_url() -> Optional[str]:
    """``$LNSYNTH_DATABASE_URL`` (``None`` when unset or blank)."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    return url or None


def open_store(db: Optional[Path | str] = None, url: Optional[str] = None) -> Store:
    """Open the store the command line and the app use: ``url`` (default ``$LNSYNTH_DATABASE_URL``) when
    set, else the SQLite file ``db``.  Raises :class:`StoreUnavailable` when the database cannot be opened."""
    return Store(None if db is None else Path(db), url if url is not None else database_url())


def open_cli_store(db: Optional[Path | str], must_exist: bool = False) -> Store:
    """The store of a command (``serve``, ``records``, ``update``, ``import``, ``export``, ``users``):
    the server database of ``$LNSYNTH_DATABASE_URL`` when set, else the SQLite file ``db`` (``--db``).

    Every failure is a :class:`StoreUnavailable` whose message names the option or variable at fault
    (never the password of the URL): no ``--db``, a directory, a missing store when ``must_exist``, a
    file that is not an lnsynth SQLite store, a server that refuses the connection.
    """
    import sqlite3

    server = uses_server()
    if not server:
        if db is None:
            raise StoreUnavailable("--db: give the store's SQLite file (or set LNSYNTH_DATABASE_URL=postgresql://...)")
        db = Path(db)
        if db.exists() and not db.is_file():
            raise StoreUnavailable(f"--db {db}: not a file")
        if must_exist and not db.exists():
            raise StoreUnavailable(f"--db {db}: no store there (start `lnsynth serve --db {db}` once to create it)")
    try:
        return open_store(db)
    except StoreUnavailable as exc:
        raise StoreUnavailable(f"LNSYNTH_DATABASE_URL: {exc}" if server else str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise StoreUnavailable(f"--db {db}: not an lnsynth SQLite store ({exc})") from None
    except Exception as exc:
        if type(exc).__module__.split(".")[0] != "psycopg":
            raise
        raise StoreUnavailable(f"LNSYNTH_DATABASE_URL: {redact_url(str(exc)).strip()}") from None


def uses_server(url: Optional[str] = None) -> bool:
    """Whether ``url`` (default ``$LNSYNTH_DATABASE_URL``) names a server database rather than a SQLite file."""
    return isinstance(backend_for(Path("x"), url if url is not None else database_url()), PostgresBackend)


__all__ = [
    "AE_FIELDS", "APPROVED", "BOOTSTRAP", "BUSY_TIMEOUT_S", "DATABASE_URL_ENV", "KINDS", "MIGRATIONS", "ROLES",
    "SCHEMA_VERSION", "VIEW_FIELDS", "Conflict", "Forbidden", "ImportRefused", "NotFound", "PostgresBackend",
    "SqliteBackend", "Store", "StoreUnavailable", "approved_row", "audit_row", "backend_for", "bump",
    "check_verifier", "database_url", "export_store", "open_cli_store", "import_store", "insert_aes", "insert_outcome",
    "insert_studies", "migrate", "now", "open_store", "redact_url", "row_to_ae", "row_to_outcome", "schema_version",
    "seed_view", "seed_view_ae", "source_slug", "uses_server",
]
_private = (_SEED_CACHE, _authors, _creators, _dumps, _package_evidence, _role, _to_plain, _weeks_value,
            _explicit_sources, _fix_sources, _prov_sources, _shorthand, _study_rows_doc, _typed_source_id, _write_yaml)
