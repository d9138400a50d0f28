"""Run the app with uvicorn in a background thread (tests, benchmark, screenshots)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(app, host: str = "127.0.0.1", port: int | None = None, timeout: float = 20.0) -> Iterator[str]:
    """Serve ``app`` on ``host:port`` (a free port by default) and yield its base URL."""
    import uvicorn

    port = port or free_port(host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
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
