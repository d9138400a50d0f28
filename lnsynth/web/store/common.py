"""Shared pieces of the curation store: constants, errors, row <-> schema model conversion and the
two-person rule's verifier check (:func:`check_verifier`)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Optional

from lnsynth.evidence.load import EvidenceBase, data_dir, load_evidence
from lnsynth.evidence.schema import AdverseEvent, Outcome, Provenance, Quantity, Study, Timepoint

VIEW_FIELDS = ("arm", "outcome", "events", "n", "timepoint_weeks", "source", "location", "quote")
AE_FIELDS = ("arm", "event", "category", "events", "n", "serious", "source", "location", "quote")
KINDS = {"outcome": ("outcomes", VIEW_FIELDS), "adverse_event": ("adverse_events", AE_FIELDS)}
ROLES = ("viewer", "curator", "reviewer", "admin")
APPROVED = ("repository", "verified")


class Forbidden(PermissionError):
    """The two-person rule or a role forbids this action (e.g. verifying one's own entry)."""


class NotFound(LookupError):
    """Unknown trial or outcome."""


class Conflict(Exception):
    """Stale version: the record changed since the client read it."""

    def __init__(self, current: dict):
        super().__init__("version conflict")
        self.current = current


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _weeks_value(w: float) -> float | int:
    return int(w) if float(w).is_integer() else float(w)


def seed_view(study: Study, o: Outcome) -> dict[str, Any]:
    """The API view of a seeded outcome (events/n/timepoint and the leading provenance)."""
    arm = study.arm(o.arm)
    n_q = o.n if o.n is not None else arm.n
    lead = next(q for q in (o.events, o.n, o.percent, o.rate, o.mean) if q is not None) if any(
        q is not None for q in (o.events, o.n, o.percent, o.rate, o.mean)) else None
    prov = lead.provenance if lead is not None else None
    return {
        "arm": o.arm,
        "outcome": o.endpoint,
        "events": o.events.value if o.events is not None and isinstance(o.events.value, int) else None,
        "n": n_q.value if n_q is not None and isinstance(n_q.value, int) else None,
        "timepoint_weeks": o.timepoint.weeks if o.timepoint is not None else None,
        "source": prov.source if prov else None,
        "location": prov.location if prov else None,
        "quote": prov.quote if prov else None,
    }


def row_to_outcome(row: dict[str, Any], study: Study) -> Outcome:
    """Rebuild the schema :class:`Outcome` of a stored row (used by export and pages).

    An untouched seeded row gives back its seeded model; an edited or new row gets
    ``events``/``n`` quantities carrying the provenance entered with the edit and, when
    the timepoint changed, a timepoint in weeks.
    """
    doc = json.loads(row["doc"]) if row.get("doc") else None
    if doc is not None:
        base = Outcome.model_validate(doc)
        old = seed_view(study, base)
        new = {k: row[k] for k in VIEW_FIELDS}
        if old == new:
            return base
        data = base.model_dump(mode="python")
    else:
        old = {k: None for k in VIEW_FIELDS}
        new = {k: row[k] for k in VIEW_FIELDS}
        data = {"id": row["key"]}
    prov = None
    if new["source"] and new["location"] and new["quote"]:
        prov = Provenance(source=new["source"], location=new["location"], quote=new["quote"])
    data["arm"] = new["arm"]
    data["endpoint"] = new["outcome"]
    prov_changed = any(old[k] != new[k] for k in ("source", "location", "quote"))
    if prov is not None and (new["events"] != old["events"] or prov_changed or data.get("events") is None):
        if new["events"] is not None:
            data["events"] = Quantity(value=new["events"], provenance=prov)
    if prov is not None and (new["n"] != old["n"] or (prov_changed and data.get("n") is not None) or doc is None):
        if new["n"] is not None:
            data["n"] = Quantity(value=new["n"], provenance=prov)
    if new["timepoint_weeks"] != old["timepoint_weeks"]:
        if new["timepoint_weeks"] is None:
            data["timepoint"] = None
        elif prov is not None:
            data["timepoint"] = Timepoint(value=_weeks_value(new["timepoint_weeks"]), unit="week", provenance=prov)
    # Re-validate from plain data so nested models are checked once more.
    plain = json.loads(json.dumps(_to_plain(data)))
    return Outcome.model_validate(plain)


def seed_view_ae(ae: AdverseEvent) -> dict[str, Any]:
    """The API view of a seeded adverse event (counts and the leading provenance)."""
    lead = next((q for q in (ae.events, ae.n, ae.percent) if q is not None), None)
    prov = lead.provenance if lead is not None else None
    return {
        "arm": ae.arm, "event": ae.event, "category": ae.category,
        "events": ae.events.value if ae.events is not None and isinstance(ae.events.value, int) else None,
        "n": ae.n.value if ae.n is not None and isinstance(ae.n.value, int) else None,
        "serious": ae.serious,
        "source": prov.source if prov else None,
        "location": prov.location if prov else None,
        "quote": prov.quote if prov else None,
    }


def row_to_ae(row: dict[str, Any]) -> AdverseEvent:
    """Rebuild the schema :class:`AdverseEvent` of a stored row (seeded model when untouched)."""
    doc = json.loads(row["doc"]) if row.get("doc") else None
    new = {k: row[k] for k in AE_FIELDS}
    new["serious"] = None if new["serious"] is None else bool(new["serious"])
    if doc is not None:
        base = AdverseEvent.model_validate(doc)
        if seed_view_ae(base) == new:
            return base
        data = base.model_dump(mode="json", exclude_none=True)
    else:
        data = {"id": row["key"]}
    prov = {"source": new["source"], "location": new["location"], "quote": new["quote"]}
    data.update(arm=new["arm"], event=new["event"], category=new["category"])
    if new["serious"] is None:
        data.pop("serious", None)
    else:
        data["serious"] = new["serious"]
    if new["events"] is not None:
        data["events"] = {"value": new["events"], "provenance": prov}
    if new["n"] is not None:
        data["n"] = {"value": new["n"], "provenance": prov}
    elif doc is None:
        data.pop("n", None)
    if new["events"] is not None and new["n"] is not None:
        data.pop("percent", None)  # the typed counts replace a printed percentage
    return AdverseEvent.model_validate(data)


def approved_row(row: dict[str, Any], fields: tuple[str, ...]) -> Optional[dict[str, Any]]:
    """The row as the analyses may use it under the two-person rule (``None``: not approved yet).

    ``repository`` and ``verified`` rows are used as they are; a ``pending``/``disputed`` change
    of a value approved before is used as it was approved; a new value nobody verified is left out.
    """
    status = row.get("status") or "repository"
    if status in APPROVED:
        return row
    if row.get("approved"):
        snap = json.loads(row["approved"])
        return {**row, **snap["values"], "status": snap["status"]}
    return None


def _to_plain(x: Any) -> Any:
    if hasattr(x, "model_dump"):
        return x.model_dump(mode="json", exclude_none=True)
    if isinstance(x, dict):
        return {k: _to_plain(v) for k, v in x.items() if v is not None}
    if isinstance(x, (list, tuple)):
        return [_to_plain(v) for v in x]
    return x


def _dumps(x: Any) -> str:
    return json.dumps(x, ensure_ascii=False, sort_keys=True, allow_nan=False)


def _authors(row) -> list[str]:
    """Curators who authored a change of this value since it was last verified (the entrant for a
    row written before authors were kept)."""
    keys = row.keys()
    raw = row["authors"] if "authors" in keys else None
    if raw:
        return list(json.loads(raw))
    return [row["entered_by"]] if "entered_by" in keys and row["entered_by"] else []


BOOTSTRAP = "bootstrap"
"""The account of the server's shared token: administration only, it never verifies a value."""


def _creators(tx, name: str) -> list[str]:
    """The accounts that created ``name``, directly or through accounts they created (nearest first)."""
    out: list[str] = []
    cur = name
    for _ in range(64):  # a chain longer than this (or a cycle) stops here
        r = tx.execute("SELECT created_by FROM users WHERE name = ?", (cur,)).fetchone()
        if r is None or not r[0] or r[0] in out or r[0] == name:
            break
        out.append(r[0])
        cur = r[0]
    return out


def check_verifier(tx, verifier: str, authors: list[str], what: str = "value") -> None:
    """Raise :class:`Forbidden` unless ``verifier`` may be the second person for a change by ``authors``.

    The rule (issue 26): the verifier authored none of the changes since the last verified state;
    the verifier is not the bootstrap account (its token is for administration); and no author
    created the verifier's account, nor the verifier an author's account, directly or through
    accounts created in turn (``users.created_by``): an admin cannot verify her own entry through an
    account she made, nor enter through a made account and verify with her own.  Accounts made at
    the command line (``created_by = 'cli'``) or by the system have no creator among the users.
    """
    if verifier == BOOTSTRAP:
        raise Forbidden("the bootstrap token is for administration, not curation: it cannot verify a "
                        f"{what}; verify with a named account")
    if verifier in authors:
        raise Forbidden(f"the two-person rule: a {what} must be verified by someone who authored none of its "
                        f"changes since it was last verified ({verifier} did)")
    mine = _creators(tx, verifier)
    for a in authors:
        if a in mine or verifier in _creators(tx, a):
            raise Forbidden(f"the two-person rule: {verifier!r} and {a!r} (an author of this {what}) are linked: "
                            "one account was created by the other (directly or through accounts it created)")


def _role(tx, name: str) -> Optional[str]:
    r = tx.execute("SELECT role FROM users WHERE name = ? AND active = 1", (name,)).fetchone()
    return r[0] if r else None


_SEED_CACHE: dict[tuple, EvidenceBase] = {}


def _package_evidence() -> EvidenceBase:
    """The package evidence, parsed once per process while its files are unchanged."""
    root = data_dir()
    files = sorted(p for p in root.rglob("*.yaml"))
    key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    ev = _SEED_CACHE.get(key)
    if ev is None:
        ev = load_evidence(root)
        _SEED_CACHE.clear()
        _SEED_CACHE[key] = ev
    return ev



# public names used by the store's modules
dumps = _dumps
authors_of = _authors
role_of = _role
