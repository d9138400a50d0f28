"""The HTTP edge of the web app: one ASGI guard in front of everything else.

:class:`Guard` wraps the *whole* application, outside Starlette's own error middleware
(:func:`protect` installs it), so that every response -- pages, API answers, 404s, the
guard's own 400/408/413/415 refusals and the 500 of a bug -- carries the security headers.
Before the application sees a request the guard

* checks ``Host`` against an allow-list (loopback names by default; DNS rebinding would
  otherwise let a web page read the app through ``attacker.example``) -> **400**;
* refuses a declared ``Content-Length`` over the limit (or not plain ASCII digits) -> **413/400**;
* reads the body itself, counting the bytes of every ``http.request`` message (chunked
  uploads included, whatever ``Content-Length`` says) and stopping at the limit -> **413**;
  a client that sends its body too slowly is cut off at a deadline -> **408**;
* for ``multipart/form-data`` runs python-multipart's streaming parser over the (already
  bounded, in-memory) body with header callbacks only: a part with a ``filename`` on a route
  that takes no files -> **415**, more parts than allowed -> **413**, a malformed body -> **400**;
  ``application/x-www-form-urlencoded`` bodies are limited to the same number of fields.

Only then is the application called, with the body replayed from memory: a refused upload
never reaches a route handler, a form parser or a temporary file, authenticated or not.

Response headers added where the application did not set them: a strict
Content-Security-Policy (no inline script or style), ``nosniff``, ``DENY`` framing,
``no-referrer``, same-origin opener/resource policies, and ``Cache-Control: no-store`` on
everything except ``/static/`` (the audit log, authenticated pages and CSRF-bearing forms are
never stored by a browser or proxy).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import dataclass
from html import escape
from typing import Any, Iterable, Optional, Union

_log = logging.getLogger("lnsynth.web")

MAX_BODY = 64 * 1024
"""Largest request body accepted, in bytes (every route, every content type)."""
MAX_PARTS = 200
"""Most multipart parts / urlencoded fields in one form (the app's largest forms have a few dozen)."""
BODY_TIMEOUT_S = 15.0
"""Seconds a client has to deliver a whole (at most :data:`MAX_BODY`) request body."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
ENV_ALLOWED_HOSTS = "LNSYNTH_ALLOWED_HOSTS"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", CSP.encode()),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
NO_STORE = (b"cache-control", b"no-store")

_PORT = re.compile(r"[0-9]{1,5}")
_NAME = re.compile(r"[a-z0-9._-]+|\[[0-9a-f:.]+\]")


def normalise_host(name: str) -> str:
    """Lower-case host name without a trailing dot; a bare IPv6 address gets brackets."""
    h = name.strip().lower()
    if ":" in h and not h.startswith("["):
        h = f"[{h}]"
    return h.rstrip(".") if not h.startswith("[") else h


def host_of(value: bytes) -> Optional[str]:
    """The host name of a ``Host`` header value (port removed), or None when malformed."""
    try:
        v = value.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        name, rest = v[:end + 1], v[end + 1:]
    else:
        name, sep, port = v.partition(":")
        rest = sep + port
    if rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:])):
        return None
    if not _NAME.fullmatch(name):
        return None
    return name if name.startswith("[") else name.rstrip(".")


def parse_hosts(spec: Union[str, Iterable[str], None]) -> tuple[frozenset[str], bool]:
    """``(names, any_host)`` from a comma-separated string or a list; ``*`` allows every host."""
    if spec is None:
        return frozenset(), False
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = {normalise_host(x) for x in items if x and x.strip()}
    return frozenset(n for n in names if n != "*"), "*" in names


@dataclass(frozen=True)
class GuardConfig:
    """Limits of the :class:`Guard` (see the module docstring)."""

    allowed_hosts: frozenset[str] = frozenset(LOOPBACK_HOSTS)
    any_host: bool = False
    max_body: int = MAX_BODY
    max_parts: int = MAX_PARTS
    body_timeout: float = BODY_TIMEOUT_S
    file_routes: frozenset[str] = frozenset()  # paths that take file uploads (none in this app)

    @classmethod
    def build(cls, allowed_hosts: Union[str, Iterable[str], None] = None, **kw: Any) -> "GuardConfig":
        """Loopback names plus ``allowed_hosts`` plus ``$LNSYNTH_ALLOWED_HOSTS`` (comma-separated)."""
        extra, any1 = parse_hosts(allowed_hosts)
        env, any2 = parse_hosts(os.environ.get(ENV_ALLOWED_HOSTS))
        return cls(allowed_hosts=frozenset(LOOPBACK_HOSTS) | extra | env, any_host=any1 or any2, **kw)


class _Refusal(Exception):
    def __init__(self, status: int, msg: str, field: str = "body"):
        super().__init__(msg)
        self.status, self.msg, self.field = status, msg, field


def _multipart_check(body: bytes, boundary: bytes, max_parts: int, files_ok: bool) -> None:
    """Scan a complete multipart body with python-multipart's parser (headers only, nothing stored)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    state: dict[str, Any] = {"parts": 0, "field": b"", "value": b"", "headers": {}}

    def part_begin() -> None:
        state["parts"] += 1
        state["headers"] = {}
        if state["parts"] > max_parts:
            raise _Refusal(413, f"too many parts in the form (at most {max_parts})")

    def header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def headers_finished() -> None:
        disp, opts = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = opts.get(b"name", b"").decode("latin-1")[:80]
        if b"filename" in opts or b"filename*" in opts:
            if not files_ok:
                raise _Refusal(415, f"file uploads are not accepted here (form part {name!r} is a file)",
                               name or "body")

    parser = MultipartParser(boundary, {"on_part_begin": part_begin, "on_header_field": header_field,
                                        "on_header_value": header_value, "on_header_end": header_end,
                                        "on_headers_finished": headers_finished}, max_size=len(body) + 1)
    try:
        parser.write(body)
        parser.finalize()
    except _Refusal:
        raise
    except Exception as exc:  # python-multipart's parse errors: the client's malformed body
        raise _Refusal(400, f"malformed multipart body ({type(exc).__name__})") from None


class Guard:
    """ASGI middleware: Host allow-list, streaming body limits, form checks, security headers."""

    def __init__(self, app, config: Optional[GuardConfig] = None):
        self.app = app
        self.config = config or GuardConfig()

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _headers_for(path: str) -> list[tuple[bytes, bytes]]:
        hs = list(SECURITY_HEADERS)
        if not path.startswith("/static/"):
            hs.append(NO_STORE)
        return hs

    @staticmethod
    async def _refuse(scope, send, status: int, msg: str, field: str = "body") -> None:
        path = scope.get("path", "")
        accept = b""
        for k, v in scope.get("headers", ()):
            if k == b"accept":
                accept = v
        headers = [(b"connection", b"close")] if status in (400, 408, 413, 415) else []
        if path.startswith("/api") or path == "/healthz" or b"text/html" not in accept:
            body = json.dumps({"detail": msg, "error": msg, "fields": [field]}).encode()
            ctype = b"application/json"
        else:
            body = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status}</title></head>"
                    f"<body><h1>{status}</h1><p>{escape(msg)}</p><p><a href=\"/trials\">Trials</a></p></body>"
                    f"</html>").encode()
            ctype = b"text/html; charset=utf-8"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())] + headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _check_head(self, scope) -> None:
        cfg = self.config
        host_values = [v for k, v in scope.get("headers", ()) if k == b"host"]
        if not cfg.any_host:
            if len(host_values) != 1:
                raise _Refusal(400, "exactly one Host header is required", "host")
            host = host_of(host_values[0])
            client = scope.get("client") or ("", 0)
            # Starlette's TestClient (in-process, no socket) calls itself testserver/testclient;
            # a real connection always has an IP address as its peer
            test = host == "testserver" and client[0] == "testclient"
            if host is None or (host not in cfg.allowed_hosts and not test):
                raise _Refusal(400, "Host not allowed: this server answers only to "
                               + ", ".join(sorted(cfg.allowed_hosts))
                               + f" (add names with ${ENV_ALLOWED_HOSTS} or `lnsynth serve --allowed-host`)", "host")
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                v = v.strip()
                if not (v.isdigit() and len(v) <= 18):  # bytes.isdigit is ASCII-only; length before int()
                    if v.isdigit():
                        raise _Refusal(413, f"request body too large (at most {cfg.max_body} bytes)")
                    raise _Refusal(400, "malformed Content-Length header", "content-length")
                if int(v) > cfg.max_body:
                    raise _Refusal(413, f"request body too large (at most {cfg.max_body} bytes)")

    async def _read_body(self, receive) -> Optional[bytes]:
        """The whole body (bounded and timed), or None when the client disconnected."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.body_timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _Refusal(408, f"request body not received within {cfg.body_timeout:g} s")
            try:
                msg = await asyncio.wait_for(receive(), remaining)
            except asyncio.TimeoutError:
                raise _Refusal(408, f"request body not received within {cfg.body_timeout:g} s") from None
            if msg["type"] == "http.disconnect":
                return None
            if msg["type"] != "http.request":
                continue
            chunk = msg.get("body", b"") or b""
            size += len(chunk)
            if size > cfg.max_body:
                raise _Refusal(413, f"request body too large (at most {cfg.max_body} bytes)")
            chunks.append(chunk)
            if not msg.get("more_body", False):
                return b"".join(chunks)

    def _check_form(self, scope, body: bytes) -> None:
        from python_multipart.multipart import parse_options_header

        ctype = b""
        for k, v in scope.get("headers", ()):
            if k == b"content-type":
                ctype = v
        if not ctype:
            return
        try:
            kind, opts = parse_options_header(ctype)
        except Exception:  # a header python-multipart cannot read
            raise _Refusal(400, "malformed Content-Type header", "content-type") from None
        if kind == b"multipart/form-data":
            boundary = opts.get(b"boundary")
            if not boundary or len(boundary) > 200:
                raise _Refusal(400, "multipart body without a valid boundary", "content-type")
            files_ok = scope.get("path", "") in self.config.file_routes
            _multipart_check(body, boundary, self.config.max_parts, files_ok)
        elif kind == b"application/x-www-form-urlencoded":
            if body.count(b"&") + 1 > self.config.max_parts:
                raise _Refusal(413, f"too many fields in the form (at most {self.config.max_parts})")

    # ------------------------------------------------------------ ASGI
    async def __call__(self, scope, receive, send):
        typ = scope["type"]
        if typ == "websocket":  # the app has no websockets; refuse before any handshake
            await send({"type": "websocket.close", "code": 1008})
            return
        if typ != "http":
            return await self.app(scope, receive, send)

        extra = self._headers_for(scope.get("path", ""))
        started = False

        async def send_with_headers(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                hdrs = list(msg.get("headers", []))
                have = {k.lower() for k, _ in hdrs}
                msg = {**msg, "headers": hdrs + [h for h in extra if h[0] not in have]}
            await send(msg)

        try:
            self._check_head(scope)
            body = await self._read_body(receive)
            if body is None:
                return
            self._check_form(scope, body)
        except _Refusal as r:
            return await self._refuse(scope, send_with_headers, r.status, r.msg, r.field)

        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            await self.app(scope, replay, send_with_headers)
        except Exception:
            if started:  # Starlette's error middleware answered (and logged); let the server see it too
                raise
            _log.exception("unhandled error before a response on %s %s", scope.get("method"), scope.get("path"))
            await self._refuse(scope, send_with_headers, 500, "internal error (logged)")


def protect(app, config: Optional[GuardConfig] = None) -> None:
    """Put a :class:`Guard` around the whole of a Starlette/FastAPI ``app`` (outside its error middleware)."""
    cfg = config or GuardConfig.build()
    inner = app.build_middleware_stack
    app.state.guard = cfg
    app.build_middleware_stack = lambda: Guard(inner(), cfg)  # Starlette builds the stack on the first call
