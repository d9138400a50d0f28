"""Authentication of the web app: named curators, server-side sessions, API tokens, throttling.

Model
-----
* **Users** (table ``users``) have a role: ``viewer`` < ``curator`` < ``reviewer`` < ``admin``
  (each includes the rights of the roles before it).  Viewers read the audit log; curators enter,
  change and delete values and verify other curators' entries; reviewers also resolve disputed
  values; admins manage users.  Passwords are stored as argon2id hashes (``argon2-cffi``, its
  RFC 9106 defaults).
* **API tokens** are random (``secrets.token_urlsafe(32)``, 256 bits), shown once, stored as
  SHA-256 digests; ``Authorization: Bearer <token>`` acts as the token's user.
* **Bootstrap**: the server's shared token (``LNSYNTH_TOKEN`` or ``--token-file``) acts as the
  user ``bootstrap`` with role ``admin``, so the first real accounts can be made from the API
  (or with ``lnsynth users add``).  It is never written to the database.  It is for
  administration, not curation: it never verifies a value, a trial or a deletion, and an account
  it (or any author) created cannot verify that author's values (:func:`lnsynth.web.store.check_verifier`).
* **API tokens** of a user are listed (id = first 16 hex digits of the stored digest, label, dates)
  and revoked one by one (``GET``/``DELETE /api/users/{name}/tokens[/{id}]``, the user or an admin).
* **Sessions** live in SQLite: the cookie holds only a random session id (32 bytes); the
  database keeps its SHA-256, the user, the CSRF token bound to that session and the expiry.
  Logout deletes the row, so a cookie (and CSRF token) captured before logout is refused.
  Before login, forms carry a CSRF token derived (HMAC) from a random pre-session cookie.
* **Throttling** (it slows guessing but cannot be turned against a curator): failed logins are
  counted per account, per address+account pair and per address (the connection's address; a
  forwarded header only from ``--forwarded-allow-ips``).  Past a few free failures each further one
  locks that key for an exponentially growing time (capped), answered with 429 and ``Retry-After``:
  an account or pair lock refuses even the right password; an *address* lock refuses only accounts
  that already failed from that address, so one name sprayed 20 times locks out no other curator
  there (each other account gets one try per lock, a failure answered 429).  A correct API-token
  login is never throttled (256-bit tokens cannot be guessed) and lifts the account's locks: a
  curator locked out of her password by someone else's guesses logs in with her token.
* **Idle timeout**: a session unused for ``SESSION_IDLE_S`` (30 min, sliding) ends, besides the
  8-hour limit.
* **Own password**: :meth:`Auth.change_password` needs the current password (throttled like a
  login) and ends the user's other sessions and every API token but the one in use.
* **Token strength**: :func:`check_token` refuses a shared token shorter than 16 characters
  (or with surrounding whitespace) unless explicitly allowed for development.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .store import ROLES, Store

SESSION_COOKIE = "lnsynth_session"
PRE_COOKIE = "lnsynth_pre"
SESSION_TTL_S = 8 * 3600
SESSION_IDLE_S = 30 * 60
TOUCH_EVERY_S = 60.0  # a session's last use is written at most once a minute
MIN_TOKEN_LEN = 16
MIN_PASSWORD_LEN = 10
BOOTSTRAP_USER = "bootstrap"
USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")

# throttling policy: (free failures, base lock seconds, cap seconds, forget after seconds)
USER_POLICY = (5, 1.0, 900.0, 3600.0)
IP_POLICY = (20, 1.0, 900.0, 3600.0)


class AuthError(Exception):
    """Refused authentication: ``status`` 401/403/429 with a message (and headers, e.g. Retry-After)."""

    def __init__(self, status: int, message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


@dataclass(frozen=True)
class Principal:
    """Who is acting: the user's name, role and how they authenticated (session, bearer, form token)."""

    name: str
    role: str
    via: str

    def has(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def rank_ok(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


# ------------------------------------------------------------------ secrets
def check_token(token: Optional[str], insecure_dev_token: bool = False) -> Optional[str]:
    """Validate the shared (bootstrap) token; returns it, or raises ``ValueError`` saying why.

    ``None`` (no token) is allowed: the app then accepts only per-user credentials.
    """
    if token is None:
        return None
    if token != token.strip() or not token.strip():
        raise ValueError("the token must not be blank or start/end with whitespace (it could never be typed "
                         "reliably); use e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    if len(token) < MIN_TOKEN_LEN and not insecure_dev_token:
        raise ValueError(f"the token is {len(token)} characters long; at least {MIN_TOKEN_LEN} are required "
                         "(pass --insecure-dev-token to allow a weak token for local development only)")
    return token


def read_token(token_file: Optional[Path] = None, env: Optional[dict] = None) -> Optional[str]:
    """The shared token from ``token_file`` (first line, newline stripped) or ``$LNSYNTH_TOKEN``."""
    env = os.environ if env is None else env
    if token_file is not None:
        p = Path(token_file)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"--token-file {p}: cannot read it ({exc.strerror or exc})") from None
        lines = text.splitlines()
        if not lines:
            raise ValueError(f"--token-file {p}: the file is empty")
        return lines[0].rstrip("\r\n")
    return env.get("LNSYNTH_TOKEN") or None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_api_token() -> str:
    return "lns_" + secrets.token_urlsafe(32)


_HASHER = None


def _hasher():
    global _HASHER
    if _HASHER is None:
        from argon2 import PasswordHasher

        _HASHER = PasswordHasher()
    return _HASHER


def hash_password(password: str) -> str:
    """argon2id hash of ``password`` (RFC 9106 low-memory profile, argon2-cffi's default)."""
    problem = password_problem(password)
    if problem:
        raise ValueError(problem)
    return _hasher().hash(password)


COMMON_PASSWORDS = frozenset("""
password password1 password12 password123 password1234 passw0rd p@ssw0rd p@ssword qwerty qwerty123 qwertyuiop
qwerty1234 1q2w3e4r5t 1qaz2wsx3edc zaq12wsx 123456789 1234567890 12345678910 0123456789 9876543210 1234554321
11111111111 iloveyou123 welcome123 welcome1234 letmein123 administrator admin12345 admin123456 changeme123
changeme1234 sunshine123 football123 baseball123 princess123 trustno1234 monkey12345 dragon12345 superman123
abc123456789 abcdefghij abcdefghijk abcd1234567 lnsynth123 lnsynth1234 lupusnephritis nephrology
""".split())
"""A short list of the most used passwords of 10 characters or more (and obvious project words): NIST SP
800-63B (5.1.1.2) asks verifiers to refuse passwords found in lists of commonly used or compromised values."""


def password_problem(password: Any) -> Optional[str]:
    """Why ``password`` is refused, or None: length (10 to 1024), not a common password and not one
    or two characters repeated (NIST SP 800-63B 5.1.1.2)."""
    if not isinstance(password, str):
        return "password must be a string"
    if len(password) < MIN_PASSWORD_LEN:
        return f"password must have at least {MIN_PASSWORD_LEN} characters"
    if len(password) > 1024:
        return "password is too long (at most 1024 characters)"
    low = password.lower()
    if low in COMMON_PASSWORDS or len(set(low)) <= 2:
        return "password is too common or too simple; choose a longer passphrase"
    return None


_DUMMY: list[str] = []


def verify_password(stored: Optional[str], password: str) -> bool:
    """Check ``password`` against an argon2 hash; an unknown user costs the same time (dummy hash)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    h = _hasher()
    if stored is None:
        if not _DUMMY:
            _DUMMY.append(h.hash(secrets.token_urlsafe(16)))
        stored, password = _DUMMY[0], password + "\x00never"
        ok_possible = False
    else:
        ok_possible = True
    try:
        return h.verify(stored, password) and ok_possible
    except (VerificationError, InvalidHashError):
        return False


def username_problem(name: Any) -> Optional[str]:
    if not isinstance(name, str) or not USERNAME.fullmatch(name):
        return "username must be 2-32 characters: a lowercase letter, then lowercase letters, digits, '_', '.', '-'"
    if name == BOOTSTRAP_USER:
        return f"{BOOTSTRAP_USER!r} is reserved for the server's shared token"
    return None


# ------------------------------------------------------------------ the app's authenticator
class Auth:
    """Sessions, bearer tokens, CSRF and throttled login on ``store``."""

    def __init__(self, store: Store, bootstrap_token: Optional[str] = None, session_ttl_s: float = SESSION_TTL_S,
                 idle_s: float = SESSION_IDLE_S):
        self.store = store
        self.ttl = float(session_ttl_s)
        self.idle = float(idle_s)
        self._boot = hashlib.sha256(bootstrap_token.encode("utf-8")).digest() if bootstrap_token else None
        self._secret = (store.meta("secret") or secrets.token_hex(32)).encode()
        if bootstrap_token:
            store.ensure_user(BOOTSTRAP_USER, "admin")
        # a rotated (or removed) bootstrap token ends the sessions opened with the old one
        mark = hmac.new(self._secret, b"boot:" + (self._boot or b""), hashlib.sha256).hexdigest()
        if store.meta("bootstrap_mark") != mark:
            if store.meta("bootstrap_mark") is not None:
                store.delete_sessions(BOOTSTRAP_USER)
            store.set_meta("bootstrap_mark", mark)

    # ---------------------------------------------------------- tokens
    def from_token(self, candidate: str, via: str) -> Optional[Principal]:
        """The user of a bootstrap or per-user API token (constant-time compare of digests)."""
        cand = hashlib.sha256(candidate.encode("utf-8", "surrogatepass")).digest()
        if self._boot is not None and hmac.compare_digest(cand, self._boot):
            u = self.store.user(BOOTSTRAP_USER)  # an admin may demote or deactivate the bootstrap account
            return Principal(BOOTSTRAP_USER, u["role"], via) if u and u["active"] else None
        u = self.store.user_for_token(cand.hex())
        return Principal(u["name"], u["role"], via) if u else None

    def bearer(self, request) -> Principal:
        h = request.headers.get("authorization")
        if not h:
            raise AuthError(401, "authentication required: send 'Authorization: Bearer <token>'",
                            {"WWW-Authenticate": "Bearer"})
        scheme, _, cred = h.strip().partition(" ")
        cred = cred.strip()
        if scheme.lower() != "bearer" or not cred:
            raise AuthError(401, "Authorization header must be 'Bearer <token>'", {"WWW-Authenticate": "Bearer"})
        p = self.from_token(cred, "bearer")
        if p is None:
            raise AuthError(403, "invalid token")
        return p

    # ---------------------------------------------------------- sessions
    def user(self, request) -> Optional[Principal]:
        """The logged-in user of the request's session cookie (``None`` when absent, expired or revoked)."""
        st = request.state
        if getattr(st, "_auth_done", False):
            return st._auth_user
        sid = request.cookies.get(SESSION_COOKIE)
        p, csrf = None, None
        if sid and len(sid) <= 100:
            row = self.store.session(digest(sid), self.idle)
            if row is not None:
                p, csrf = Principal(row["user"], row["role"], "session"), row["csrf"]
                t = time.time()
                if t - row["last_seen"] >= TOUCH_EVERY_S:
                    self.store.touch_session(digest(sid), t)
        st._auth_done, st._auth_user, st._auth_csrf = True, p, csrf
        return p

    def csrf(self, request) -> str:
        """The CSRF token of this request's session (or of its pre-session cookie before login)."""
        if self.user(request) is not None:
            return request.state._auth_csrf
        pre = request.cookies.get(PRE_COOKIE)
        if not pre or len(pre) > 100:
            pre = getattr(request.state, "_auth_new_pre", None) or secrets.token_urlsafe(32)
            request.state._auth_new_pre = pre
        return hmac.new(self._secret, b"pre:" + pre.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def csrf_ok(self, request, sent: Any) -> bool:
        if not isinstance(sent, str) or not sent:
            return False
        if self.user(request) is None and not request.cookies.get(PRE_COOKIE):
            return False
        return hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), self.csrf(request).encode())

    def finish(self, request, response) -> None:
        """Set the pre-session cookie on ``response`` when this request created one."""
        pre = getattr(request.state, "_auth_new_pre", None)
        if pre:
            response.set_cookie(PRE_COOKIE, pre, httponly=True, samesite="strict", path="/")

    def start_session(self, response, p: Principal, ip: str) -> None:
        sid = secrets.token_urlsafe(32)
        self.store.create_session(digest(sid), p.name, secrets.token_urlsafe(32), self.ttl, ip)
        response.set_cookie(SESSION_COOKIE, sid, max_age=int(self.ttl), httponly=True, samesite="strict", path="/")

    def end_session(self, request, response, everywhere: bool = False, ip: Optional[str] = None) -> bool:
        """Delete this request's session (``everywhere``: every session of its user) and its cookie."""
        who = self.user(request)
        sid = request.cookies.get(SESSION_COOKIE)
        gone = bool(sid) and len(sid) <= 100 and self.store.delete_session(digest(sid))
        if everywhere and who is not None:
            gone = self.store.delete_sessions(who.name) > 0 or gone
        if gone and who is not None and ip is not None:
            self.store.audit_event(who.name, "logout everywhere" if everywhere else "logout", {"address": ip})
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return gone

    # ---------------------------------------------------------- login
    def login(self, ip: str, username: str = "", password: str = "", token: str = "") -> Principal:
        """Check a login (username + password, or an API token); throttled per account, pair and address.

        Raises :class:`AuthError` (403 wrong credentials, 429 locked with ``Retry-After``).  See the
        module docstring for the rules; API-token logins are never locked and lift the account's locks.
        """
        t = time.time()
        if token.strip():
            p = self.from_token(token.strip(), "session")
            if p is None:
                self.store.login_failed("ip", ip, t, *IP_POLICY)
                self.store.audit_event("(token)", "login failed", {"address": ip, "by": "token"})
                raise AuthError(403, "invalid token")
            self.store.login_clear_account(p.name)
            self.store.audit_event(p.name, "login", {"address": ip, "by": "token"})
            return p
        username = username.strip().lower()
        if username and not USERNAME.fullmatch(username):  # never a user name: counted against the address only
            username = ""
        pair = f"{username}|{ip}"
        wait = self.store.login_locked([("user", username), ("pair", pair)] if username else [], t)
        ip_wait = self.store.login_locked([("ip", ip)], t)
        if ip_wait > 0 and (not username or self.store.login_failures("pair", pair, t, IP_POLICY[3]) > 0):
            wait = max(wait, ip_wait)  # a locked address: no more tries for accounts that failed from it
        if wait > 0:
            raise AuthError(429, f"too many failed logins: try again in {int(wait) + 1} s (or log in with "
                                 "your API token, which lifts the lock on your account)",
                            {"Retry-After": str(int(wait) + 1)})
        p: Optional[Principal] = None
        if username:
            ok = verify_password(self.store.password_hash(username), password)
            u = self.store.user(username) if ok else None
            p = Principal(u["name"], u["role"], "session") if u else None
        if p is None:
            lock = self.store.login_failed("ip", ip, t, *IP_POLICY)
            if username:
                lock = max(lock, self.store.login_failed("user", username, t, *USER_POLICY),
                           self.store.login_failed("pair", pair, t, *USER_POLICY))
            self.store.audit_event(username or "(none)", "login failed", {"address": ip, "by": "password"})
            if ip_wait > 0:  # the one try this account had from a locked address
                raise AuthError(429, "too many failed logins from this address: try again later",
                                {"Retry-After": str(int(max(lock, ip_wait)) + 1)})
            raise AuthError(403, "invalid username or password", {"Retry-After": str(int(lock) + 1)} if lock else None)
        self.store.login_succeeded("user", username)
        self.store.login_succeeded("pair", pair)
        self.store.audit_event(p.name, "login", {"address": ip, "by": "password"})
        return p

    def change_password(self, p: Principal, ip: str, current: str, new: str, keep_session: Optional[str] = None,
                        keep_token: Optional[str] = None) -> None:
        """``p`` changes her own password: the current one is checked (throttled like a login), the new one
        must pass :func:`password_problem`; her other sessions and API tokens end (``keep_*``: digests of
        the credential in use).  Raises :class:`AuthError` (403 wrong current password, 429 locked) or
        ``ValueError`` (the new password is refused)."""
        if p.name == BOOTSTRAP_USER:
            raise AuthError(403, "the bootstrap account has no password (it is the server's token)")
        problem = password_problem(new)
        if problem:
            raise ValueError(problem)
        t = time.time()
        wait = self.store.login_locked([("user", p.name), ("pair", f"{p.name}|{ip}")], t)
        if wait > 0:
            raise AuthError(429, f"too many failed attempts: try again in {int(wait) + 1} s",
                            {"Retry-After": str(int(wait) + 1)})
        if not verify_password(self.store.password_hash(p.name), current if isinstance(current, str) else ""):
            self.store.login_failed("user", p.name, t, *USER_POLICY)
            self.store.login_failed("pair", f"{p.name}|{ip}", t, *USER_POLICY)
            self.store.audit_event(p.name, "change password failed", {"address": ip})
            raise AuthError(403, "the current password is wrong")
        self.store.update_user(p.name, p.name, password_hash=hash_password(new), keep_session=keep_session,
                               keep_token=keep_token)
        self.store.audit_event(p.name, "change password", {"address": ip, "other sessions and tokens": "ended"})
