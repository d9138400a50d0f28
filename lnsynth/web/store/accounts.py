"""Accounts: named users and roles, API tokens (SHA-256 digests only), server-side login sessions and the
login throttle (failures per account, per account+address pair and per address)."""

from __future__ import annotations

import re
from typing import Optional

from .common import ROLES, Conflict, NotFound, now


class AccountsMixin:
    """Users, tokens, sessions and login throttling of :class:`lnsynth.web.store.Store`."""

    # -------------------------------------------------------------- users
    def add_user(self, name: str, role: str, password_hash: Optional[str], created_by: str) -> dict:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        with self._tx() as tx:
            if tx.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None:
                raise Conflict({"name": name})
            tx.execute("INSERT INTO users(name, role, password_hash, active, created_at, created_by)"
                       " VALUES (?,?,?,1,?,?)", (name, role, password_hash, now(), created_by))
            self._audit(tx, created_by, "add user", None, None, None, {"name": name, "role": role}, created_by)
        return self.user(name)

    def ensure_user(self, name: str, role: str) -> None:
        """Create ``name`` (no password) if absent; used for the bootstrap admin of the shared token."""
        with self._tx() as tx:
            tx.execute("INSERT OR IGNORE INTO users(name, role, password_hash, active, created_at, created_by)"
                       " VALUES (?,?,NULL,1,?,'system')", (name, role, now()))

    def update_user(self, name: str, actor: str, role: Optional[str] = None, password_hash: Optional[str] = None,
                    active: Optional[bool] = None, keep_session: Optional[str] = None,
                    keep_token: Optional[str] = None) -> dict:
        """Change a user's role, password or activity.  A new password or a deactivation ends every session
        and API token of the user (a role change ends the sessions), except ``keep_session`` /
        ``keep_token`` (digests): the credential of a user who changes her own password herself."""
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        with self._tx() as tx:
            if tx.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
                raise NotFound(f"unknown user {name!r}")
            if role is not None:
                tx.execute("UPDATE users SET role = ? WHERE name = ?", (role, name))
            if password_hash is not None:
                tx.execute("UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name))
            if active is not None:
                tx.execute("UPDATE users SET active = ? WHERE name = ?", (int(active), name))
            if password_hash is not None or active is False or role is not None:
                tx.execute('DELETE FROM sessions WHERE "user" = ? AND id_hash != ?', (name, keep_session or ""))
            if active is False or password_hash is not None:
                # a reset password means the old credentials may be known: every API token goes too
                tx.execute('DELETE FROM api_tokens WHERE "user" = ? AND hash != ?', (name, keep_token or ""))
            self._audit(tx, actor, "update user", None, None, None,
                        {"name": name, "role": role, "password_changed": password_hash is not None,
                         "active": active}, actor)
        return self.user(name)

    def user(self, name: str) -> Optional[dict]:
        r = self._conn().execute("SELECT name, role, active, created_at, created_by FROM users WHERE name = ?",
                                 (name,)).fetchone()
        return dict(r) if r else None

    def password_hash(self, name: str) -> Optional[str]:
        r = self._conn().execute("SELECT password_hash FROM users WHERE name = ? AND active = 1", (name,)).fetchone()
        return r[0] if r else None

    def users(self) -> list[dict]:
        return [dict(r) for r in self._conn().execute(
            "SELECT name, role, active, created_at, created_by FROM users ORDER BY name")]

    def add_api_token(self, user: str, token_hash: str, label: str, actor: str) -> None:
        with self._tx() as tx:
            if tx.execute("SELECT 1 FROM users WHERE name = ? AND active = 1", (user,)).fetchone() is None:
                raise NotFound(f"unknown user {user!r}")
            tx.execute('INSERT INTO api_tokens(hash, "user", label, created_at) VALUES (?,?,?,?)',
                       (token_hash, user, label, now()))
            self._audit(tx, actor, "add api token", None, None, None, {"user": user, "label": label}, actor)

    def api_tokens_of(self, user: str) -> list[dict]:
        """The user's API tokens: ``id`` (the first 16 hex digits of the stored SHA-256, which reveals
        nothing of the token), label, created and last used (never the token)."""
        return [{"id": r[0][:16], "label": r[1], "created_at": r[2], "last_used": r[3]} for r in self._conn().execute(
            'SELECT hash, label, created_at, last_used FROM api_tokens WHERE "user" = ? ORDER BY created_at, hash',
            (user,))]

    def revoke_api_token(self, user: str, token_id: str, actor: str) -> dict:
        """Delete the user's token ``token_id`` (as :meth:`api_tokens_of` lists it); audited."""
        if not re.fullmatch(r"[0-9a-f]{16}", token_id or ""):
            raise NotFound(f"user {user!r} has no token {token_id[:40]!r}")
        with self._tx() as tx:
            r = tx.execute('SELECT hash, label, created_at FROM api_tokens WHERE "user" = ?'
                           " AND substr(hash, 1, 16) = ?",
                           (user, token_id)).fetchone()
            if r is None:
                raise NotFound(f"user {user!r} has no token {token_id!r}")
            tx.execute("DELETE FROM api_tokens WHERE hash = ?", (r[0],))
            info = {"user": user, "token": token_id, "label": r[1], "created_at": r[2]}
            self._audit(tx, actor, "revoke api token", None, None, info, None, actor)
        return info

    def user_for_token(self, token_hash: str) -> Optional[dict]:
        r = self._conn().execute(
            'SELECT u.name, u.role FROM api_tokens t JOIN users u ON u.name = t."user"'
            " WHERE t.hash = ? AND u.active = 1",
            (token_hash,)).fetchone()
        return dict(r) if r else None

    # ----------------------------------------------------------- sessions
    def create_session(self, id_hash: str, user: str, csrf: str, ttl_s: float, ip: str) -> None:
        import time as _t

        t = _t.time()
        with self._tx() as tx:
            tx.execute("DELETE FROM sessions WHERE expires_at < ?", (t,))
            tx.execute('INSERT INTO sessions(id_hash, "user", csrf, created_at, expires_at, ip, last_seen)'
                       " VALUES (?,?,?,?,?,?,?)", (id_hash, user, csrf, t, t + ttl_s, ip, t))

    def session(self, id_hash: str, idle_s: Optional[float] = None) -> Optional[dict]:
        """The live session ``id_hash`` (``None`` when expired, idle longer than ``idle_s``, or its user inactive)."""
        import time as _t

        t = _t.time()
        r = self._conn().execute(
            'SELECT s."user", s.csrf, s.expires_at, COALESCE(s.last_seen, s.created_at) AS last_seen, u.role'
            ' FROM sessions s JOIN users u ON u.name = s."user"'
            " WHERE s.id_hash = ? AND s.expires_at > ? AND u.active = 1", (id_hash, t)).fetchone()
        if r is None or (idle_s is not None and t - r["last_seen"] > idle_s):
            return None
        return dict(r)

    def touch_session(self, id_hash: str, t: float) -> None:
        """Record activity on a session (the idle timeout slides)."""
        with self._tx() as tx:
            tx.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (t, id_hash))

    def delete_session(self, id_hash: str) -> bool:
        with self._tx() as tx:
            return tx.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,)).rowcount > 0

    def delete_sessions(self, user: str) -> int:
        """End every session of ``user`` (logout everywhere; bootstrap token rotated). Returns how many."""
        with self._tx() as tx:
            return tx.execute('DELETE FROM sessions WHERE "user" = ?', (user,)).rowcount

    # ----------------------------------------------------------- login throttling
    def login_locked(self, keys: list[tuple[str, str]], t: float) -> float:
        """Seconds until every (scope, key) is unlocked (0 when none is locked)."""
        c = self._conn()
        wait = 0.0
        for scope, key in keys:
            r = c.execute("SELECT locked_until FROM login_failures WHERE scope = ? AND key = ?",
                          (scope, key)).fetchone()
            if r is not None and r[0] > t:
                wait = max(wait, r[0] - t)
        return wait

    def login_failed(self, scope: str, key: str, t: float, free: int, base_s: float, cap_s: float,
                     forget_s: float) -> float:
        """Count a failure; past ``free`` failures lock for base*2^(k-free) seconds (at most cap). Returns the lock."""
        with self._tx() as tx:
            r = tx.execute("SELECT failures, last_at FROM login_failures WHERE scope = ? AND key = ?",
                           (scope, key)).fetchone()
            failures = 1 if r is None or t - r[1] > forget_s else r[0] + 1
            lock = 0.0 if failures < free else min(cap_s, base_s * 2 ** (failures - free))
            tx.execute("INSERT OR REPLACE INTO login_failures(scope, key, failures, last_at, locked_until)"
                       " VALUES (?,?,?,?,?)", (scope, key, failures, t, t + lock))
        return lock

    def login_failures(self, scope: str, key: str, t: float, forget_s: float) -> int:
        """Failures counted for (scope, key) that are not yet forgotten."""
        r = self._conn().execute("SELECT failures, last_at FROM login_failures WHERE scope = ? AND key = ?",
                                 (scope, key)).fetchone()
        return 0 if r is None or t - r[1] > forget_s else int(r[0])

    def login_clear_account(self, user: str) -> None:
        """Lift every lock of ``user`` (the account and each address+account pair): a correct API token
        -- a second, unguessable credential -- proves the holder is at the keyboard."""
        with self._tx() as tx:
            prefix = user + "|"  # pair keys are "user|address" (a user name never holds "|")
            tx.execute("DELETE FROM login_failures WHERE (scope = 'user' AND key = ?) OR (scope = 'pair' AND"
                       " substr(key, 1, ?) = ?)", (user, len(prefix), prefix))

    def login_succeeded(self, scope: str, key: str) -> None:
        with self._tx() as tx:
            tx.execute("DELETE FROM login_failures WHERE scope = ? AND key = ?", (scope, key))

