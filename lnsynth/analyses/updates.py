"""Versioned evidence snapshots, stored answers and ``lnsynth update`` (issue 22, items 3 and 4).

* :func:`snapshot_id`: the evidence snapshot id, a content hash: SHA-256 of the canonical JSON
  (sorted keys, no whitespace) of what the analyses read: the studies (in evidence order) and
  the source register.  The same evidence gives the same id wherever it is stored.
* :func:`answer_rows`: every question's summary-of-findings rows (per outcome: ``k``,
  ``estimate``, ``ci_low``, ``ci_high``, ``certainty``, the analysed trial ids; also ``measure``
  and ``per1000``), from :func:`lnsynth.analyses.answer.answer_all`.
* :func:`compare`: the rows that changed against the previous snapshot, the trials added, and
  the decision thresholds crossed (:func:`crossed`).
* :func:`run_update`: all of it against a snapshot *backend*: an object with
  ``latest_answer_snapshot() -> {snapshot, rows} | None`` and ``save_answer_snapshot(snapshot,
  rows)`` -- the web store (table ``answer_snapshots``) or :class:`StateDir` (JSON files in a
  folder the user named).

Thresholds
----------
Default rules, for every outcome:

``ci_null``     the CI's position against the null (1 for RR/OR/HR, 0 otherwise) changed: it
                now excludes the null where it included it, or the reverse, or it moved to the
                other side (a not-estimable row that becomes significant counts as well);
``certainty``   the GRADE certainty changed by at least one level.

A question declares more in its catalogue file (``thresholds:``, validated by
:class:`lnsynth.analyses.questions.Threshold`; read here defensively): ``outcome`` (optional:
every outcome), ``field`` (``estimate``, ``ci_low``, ``ci_high``, ``per1000``, ``per1000_low`` or
``per1000_high``) and ``value``: crossed when the field moves from one side of ``value`` to the
other, named by its ``label``; or ``certainty_levels: n`` to require n levels for the certainty
rule.  A row stored by an older snapshot without a field (``per1000_low``) crosses nothing there.
"""
from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional, Protocol

from lnsynth import registry
from lnsynth.evidence.load import EvidenceBase

from .grade import LEVELS

__all__ = ["FIELDS", "WATCHED", "StateDir", "UpdateError", "answer_rows", "compare", "crossed", "latest_notices", "notices_for",
           "previous_answer_snapshot", "run_update", "snapshot_id"]

#: the fields of a summary-of-findings row compared between snapshots (the ``before``/``after`` contract)
FIELDS = ("k", "estimate", "ci_low", "ci_high", "certainty")
REL_TOL = 1e-9


class UpdateError(ValueError):
    """A user error in an update (unreadable state folder, bad threshold declaration)."""


class SnapshotBackend(Protocol):
    def latest_answer_snapshot(self) -> Optional[dict]: ...

    def save_answer_snapshot(self, snapshot: str, rows: list[dict]) -> Any: ...


# ----------------------------------------------------------------------------- snapshot id
def _plain(x: Any) -> Any:
    if hasattr(x, "model_dump"):
        return x.model_dump(mode="json", exclude_none=True)
    return x


def snapshot_id(ev: EvidenceBase) -> str:
    """SHA-256 (hex) of the canonical JSON of the evidence's studies and sources."""
    doc = {"studies": [_plain(s) for s in ev.studies], "sources": [_plain(s) for s in ev.sources]}
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- answers
def _num(x: Any) -> Optional[float]:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def answer_rows(ev: EvidenceBase) -> list[dict]:
    """One row per (question, outcome) of the catalogue, answered on ``ev``."""
    from .answer import answer_all

    rows = []
    for a in answer_all(ev):
        qid = getattr(a, "id", None) or getattr(getattr(a, "question", None), "id", "?")
        for o in getattr(a, "outcomes", ()):
            try:
                d = o.to_dict()
            except Exception as exc:  # one broken row must not hide every other change
                d = {"outcome_id": getattr(getattr(o, "spec", None), "id", "?"), "not_estimable": f"error: {exc}"}
            k = d.get("k")
            rows.append({
                "question": qid,
                "outcome": d.get("outcome_id") or d.get("outcome") or "?",
                "label": d.get("outcome"),
                "measure": d.get("measure"),
                "k": int(k) if isinstance(k, (int, float)) else None,
                "estimate": _num(d.get("estimate")),
                "ci_low": _num(d.get("ci_low")),
                "ci_high": _num(d.get("ci_high")),
                "certainty": d.get("certainty"),
                "per1000": _num(d.get("per1000")),
                "per1000_low": _num(d.get("per1000_low")),
                "per1000_high": _num(d.get("per1000_high")),
                "trials": sorted(str(s) for s in (d.get("studies") or [])),
            })
    return rows


# ----------------------------------------------------------------------------- thresholds
def _null(measure: Optional[str]) -> float:
    return 1.0 if registry.is_ratio((measure or "").upper()) else 0.0


def _side(row: Optional[dict]) -> Optional[str]:
    """``above`` / ``below`` the null (CI excludes it), ``includes``, or ``None`` when not estimable."""
    if row is None or row.get("ci_low") is None or row.get("ci_high") is None:
        return None
    null = _null(row.get("measure"))
    if row["ci_low"] > null:
        return "above"
    if row["ci_high"] < null:
        return "below"
    return "includes"


def _level(c: Optional[str]) -> Optional[int]:
    return LEVELS.index(c) if c in LEVELS else None


def _declared(question: Any) -> list[dict]:
    """The question's declared thresholds as plain mappings (``[]`` when none or unreadable)."""
    raw = getattr(question, "thresholds", None) if question is not None else None
    if raw is None or isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple)):
        return []
    out = []
    for t in raw:
        if isinstance(t, dict):
            d = t
        else:
            d = _plain(t) if hasattr(t, "model_dump") else (vars(t) if hasattr(t, "__dict__") else None)
        if isinstance(d, dict):
            out.append(d)
    return out


WATCHED = ("estimate", "ci_low", "ci_high", "per1000", "per1000_low", "per1000_high")


def crossed(before: Optional[dict], after: Optional[dict], question: Any = None) -> list[str]:
    """The decision thresholds crossed between two rows of one outcome (``[]`` when none or no ``before``).

    Each entry names the threshold: ``ci_null: ...`` and ``certainty: ...`` for the defaults, and
    for a declared one its ``label`` and ``(field value)`` followed by the values before and after.
    """
    if before is None or after is None:
        return []
    out = []
    null = _null(after.get("measure") or before.get("measure"))
    sb, sa = _side(before), _side(after)
    if sb != sa and {sb, sa} != {None, "includes"}:
        what = {"above": f"CI above the null ({null:g})", "below": f"CI below the null ({null:g})",
                "includes": f"CI includes the null ({null:g})", None: "not estimable"}
        out.append(f"ci_null: {what[sb]} -> {what[sa]}")
    decl = [t for t in _declared(question) if t.get("outcome") in (None, after.get("outcome"))]
    levels = [t for t in decl if t.get("certainty_levels") is not None]
    need = min((int(t["certainty_levels"]) for t in levels), default=1)
    lb, la = _level(before.get("certainty")), _level(after.get("certainty"))
    if lb is not None and la is not None and abs(la - lb) >= need:
        names = "; ".join(str(t["label"]) for t in levels if t.get("label") and abs(la - lb) >= int(t["certainty_levels"]))
        out.append(f"certainty: {before['certainty']} -> {after['certainty']}" + (f" ({names})" if names else ""))
    for t in decl:
        f, v = t.get("field"), _num(t.get("value"))
        if f not in WATCHED or v is None:
            continue
        xb, xa = _num(before.get(f)), _num(after.get(f))
        if xb is not None and xa is not None and (xb < v) != (xa < v):
            name = f"{t['label']} ({f} {v:g})" if t.get("label") else f"{f} {v:g}"
            out.append(f"{name}: {xb:.4g} -> {xa:.4g}")
    return out


# ----------------------------------------------------------------------------- comparison
def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)
    return a == b


def _view(row: Optional[dict]) -> Optional[dict]:
    return None if row is None else {f: row.get(f) for f in FIELDS}


def compare(previous: Optional[list[dict]], current: list[dict], questions: Optional[dict] = None) -> list[dict]:
    """The rows that changed: ``[{question, outcome, before, after, added_trials, removed_trials, crossed}]``.

    ``previous`` ``None`` (first run): every row is reported with ``before: null``, every trial
    added and nothing crossed.  ``questions`` maps question ids to question objects (their
    declared thresholds).
    """
    questions = questions or {}
    prev = {(r["question"], r["outcome"]): r for r in (previous or [])}
    cur = {(r["question"], r["outcome"]): r for r in current}
    out = []
    for key in list(cur) + [k for k in prev if k not in cur]:
        b, a = prev.get(key), cur.get(key)
        changed = b is None or a is None or any(not _same(b.get(f), a.get(f)) for f in FIELDS) or \
            sorted(b.get("trials") or []) != sorted(a.get("trials") or [])
        if not changed:
            continue
        tb, ta = set((b or {}).get("trials") or []), set((a or {}).get("trials") or [])
        out.append({"question": key[0], "outcome": key[1], "before": _view(b), "after": _view(a),
                    "added_trials": sorted(ta - tb), "removed_trials": sorted(tb - ta),
                    "crossed": crossed(b, a, questions.get(key[0]))})
    return out


# ----------------------------------------------------------------------------- state folder
class StateDir:
    """Snapshots as JSON files in a folder the user named (``--state DIR``; used without a store).

    ``DIR/answers-<run>-<snapshot[:12]>.json`` per update and ``DIR/latest.json`` naming the last.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise UpdateError(f"--state {self.root}: is a file, not a folder")

    def latest_answer_snapshot(self) -> Optional[dict]:
        p = self.root / "latest.json"
        if not p.is_file():
            return None
        try:
            name = json.loads(p.read_text(encoding="utf-8"))["file"]
            doc = json.loads((self.root / Path(name).name).read_text(encoding="utf-8"))
            if not isinstance(doc.get("rows"), list) or not isinstance(doc.get("snapshot"), str):
                raise KeyError("rows/snapshot")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UpdateError(f"--state {self.root}: latest.json or the snapshot it names is unreadable "
                              f"({exc})") from None
        return doc

    def save_answer_snapshot(self, snapshot: str, rows: list[dict]) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        prev = self.latest_answer_snapshot()
        run = int(prev.get("run", 0)) + 1 if prev else 1
        name = f"answers-{run:04d}-{snapshot[:12]}.json"
        doc = {"run": run, "snapshot": snapshot, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "rows": rows}
        text = json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n"
        (self.root / name).write_text(text, encoding="utf-8")
        (self.root / "latest.json").write_text(json.dumps({"file": name, "snapshot": snapshot, "run": run}) + "\n",
                                               encoding="utf-8")
        return run


# ----------------------------------------------------------------------------- update
def run_update(ev: EvidenceBase, backend: SnapshotBackend, questions: Optional[Iterable[Any]] = None,
               save: bool = True) -> dict:
    """Re-run every question on ``ev``, compare with the backend's last snapshot, store the new one.

    Nothing is stored when the snapshot id and every row equal the last stored ones.

    Returns
    -------
    dict
        ``{snapshot, previous, changed, crossed_any}`` (``previous`` is ``None`` on the first run;
        ``crossed_any`` tells the exit status: 3 when true).
    """
    if questions is None:
        from .questions import load_questions

        questions = load_questions()
    qmap = {getattr(q, "id", None): q for q in questions}
    snap = snapshot_id(ev)
    rows = answer_rows(ev)
    last = backend.latest_answer_snapshot()
    changed = compare(last["rows"] if last else None, rows, qmap)
    if save and (last is None or changed or last.get("snapshot") != snap):  # one stored run per distinct answer set
        backend.save_answer_snapshot(snap, rows)
    return {"snapshot": snap, "previous": last["snapshot"] if last else None, "changed": changed,
            "crossed_any": any(c["crossed"] for c in changed)}


# ----------------------------------------------------------------------------- notices (report and web app)
def previous_answer_snapshot(backend: Any, run: Optional[int] = None) -> Optional[dict]:
    """The stored answers of the run before ``run`` (default: before the latest), or ``None``.

    Uses the backend's ``answer_snapshot(run)`` where it has one; reads a :class:`StateDir`'s
    files, or the store's ``answer_snapshots`` table, otherwise.
    """
    if run is None:
        last = backend.latest_answer_snapshot()
        if not last or last.get("run") is None:
            return None
        run = int(last["run"])
    want = int(run) - 1
    if want < 1:
        return None
    get = getattr(backend, "answer_snapshot", None)
    if callable(get):
        return get(want)
    if isinstance(backend, StateDir):
        hits = sorted(backend.root.glob(f"answers-{want:04d}-*.json"))
        if not hits:
            return None
        try:
            doc = json.loads(hits[-1].read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UpdateError(f"--state {backend.root}: {hits[-1].name} is unreadable ({exc})") from None
        return doc if isinstance(doc.get("rows"), list) else None
    conn = getattr(backend, "_conn", None)
    if not callable(conn):
        return None
    rows = conn().execute('SELECT snapshot, created_at, "row" FROM answer_snapshots WHERE run = ? ORDER BY question,'
                          " outcome", (want,)).fetchall()
    if not rows:
        return None
    return {"run": want, "snapshot": rows[0][0], "created_at": rows[0][1], "rows": [json.loads(x[2]) for x in rows]}


def latest_notices(backend: Any, questions: Optional[Iterable[Any]] = None) -> Optional[dict]:
    """What the latest ``lnsynth update`` run changed: its stored answers against the run before.

    No refit: the two stored snapshots are compared by :func:`compare` (thresholds as the
    questions declare them now).

    Returns
    -------
    dict or None
        ``None`` when nothing is stored; else ``{run, snapshot, created_at, previous,
        previous_run, changed, crossed_any}`` (``previous`` ``None`` and ``changed`` empty after
        the first run: there is nothing to compare with).
    """
    last = backend.latest_answer_snapshot()
    if not last:
        return None
    prev = previous_answer_snapshot(backend, last.get("run"))
    if questions is None:
        from .questions import load_questions

        questions = load_questions()
    qmap = {getattr(q, "id", None): q for q in questions}
    changed = compare(prev["rows"], last["rows"], qmap) if prev else []
    return {"run": last.get("run"), "snapshot": last.get("snapshot"), "created_at": last.get("created_at"),
            "previous": prev.get("snapshot") if prev else None, "previous_run": prev.get("run") if prev else None,
            "changed": changed, "crossed_any": any(c["crossed"] for c in changed)}


def notices_for(notices: Optional[dict], question_id: str) -> Optional[dict]:
    """:func:`latest_notices` narrowed to one question (``None`` when nothing is stored)."""
    if notices is None:
        return None
    rows = [c for c in notices["changed"] if c["question"] == question_id]
    return {**notices, "changed": rows, "crossed_any": any(c["crossed"] for c in rows)}
