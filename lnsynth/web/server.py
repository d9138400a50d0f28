"""Run the app with uvicorn: ``lnsynth serve`` (:func:`serve_app`) and a background thread (:func:`running`).

Both use :func:`uvicorn_config`, which bounds what a slow or hostile client can hold:

* **header timeout** (:data:`HEADER_TIMEOUT_S`): a connection that has not sent a complete
  request line and headers this long after connecting (or after its previous response) is
  closed -- uvicorn's own keep-alive timer is reset by every byte, so a client dribbling one
  header byte at a time would otherwise hold the socket for ever (slowloris);
* **keep-alive timeout** (:data:`KEEP_ALIVE_S`) between requests;
* **header size**: h11's limit on an incomplete request head (:data:`MAX_HEAD_BYTES`);
* **body deadline**: the :class:`~lnsynth.web.security.Guard` middleware gives a client
  :data:`~lnsynth.web.security.BODY_TIMEOUT_S` to deliver the whole (bounded) body (408);
* **concurrency**: at most :data:`MAX_CONNECTIONS` open connections (then 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Iterator, Optional

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
MAX_HEAD_BYTES = 16 * 1024
MAX_CONNECTIONS = 256


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _protocol_class(header_timeout: float):
    """uvicorn's h11 protocol with a deadline for the request head (see the module docstring)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _head_timer: Optional[asyncio.TimerHandle] = None

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(header_timeout, self._head_timeout)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # no complete request head in time: drop the socket

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the head arrived (body or next cycle follows)
                self._cancel_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm_head_timer()

        def connection_lost(self, exc) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

    return GuardedH11Protocol


def uvicorn_config(app, host: str, port: int, header_timeout: float = HEADER_TIMEOUT_S, lifespan: str = "off",
                   forwarded_allow_ips: str | None = None):
    """The :class:`uvicorn.Config` every lnsynth server uses (timeouts and limits above).

    Forwarded headers (``X-Forwarded-For``, ``X-Forwarded-Proto``) are ignored unless
    ``forwarded_allow_ips`` names the reverse proxies to trust (comma-separated addresses, as
    uvicorn's ``--forwarded-allow-ips``). uvicorn's own default trusts them from 127.0.0.1, which
    let any local client claim a new address per request and so evade the login throttle and
    write a chosen address into the audit; the client address is therefore the connection's
    unless a proxy is configured.
    """
    import uvicorn

    trusted = (forwarded_allow_ips or "").strip()
    return uvicorn.Config(app, host=host, port=int(port), log_level="warning", access_log=False, lifespan=lifespan,
                          http=_protocol_class(header_timeout), timeout_keep_alive=KEEP_ALIVE_S,
                          h11_max_incomplete_event_size=MAX_HEAD_BYTES, limit_concurrency=MAX_CONNECTIONS,
                          server_header=False, proxy_headers=bool(trusted),
                          forwarded_allow_ips=trusted or None)


def serve_app(app, host: str, port: int, forwarded_allow_ips: str | None = None) -> None:
    """Serve ``app`` in the foreground (``lnsynth serve``) until interrupted."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app, host, port, lifespan="auto", forwarded_allow_ips=forwarded_allow_ips)).run()


@contextlib.contextmanager
def running(app, host: str = "127.0.0.1", port: int | None = None, timeout: float = 20.0,
            header_timeout: float = HEADER_TIMEOUT_S, forwarded_allow_ips: str | None = None) -> Iterator[str]:
    """Serve ``app`` on ``host:port`` (a free port by default) and yield its base URL."""
    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn_config(app, host, port, header_timeout=header_timeout,
                                           forwarded_allow_ips=forwarded_allow_ips))
    th = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    th.start()
    t0 = time.monotonic()
    while not server.started:
        if not th.is_alive():
            raise RuntimeError(f"uvicorn failed to start on {host}:{port}")
        if time.monotonic() - t0 > timeout:
            server.should_exit = True
            raise TimeoutError(f"uvicorn did not start on {host}:{port} within {timeout}s")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        th.join(timeout)
