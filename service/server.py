"""Running the service with uvicorn: in the foreground (`cdmetrics serve`) or in a thread on a free
port (`ServiceServer`: tests and benchmarks talk to it over real HTTP)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from config.redaction import install_log_redaction

log = logging.getLogger(__name__)


def _config(app: Any, **kwargs: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http="httptools",
        ws="none",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=10,
        **kwargs,
    )


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(app: Any, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM finish the requests in flight first); URLs in
    log records are redacted from the start."""
    install_log_redaction()
    uvicorn.Server(_config(app, host=host, port=port)).run()


class ServiceServer:
    """The app served by uvicorn in a daemon thread on `host` (port 0: a free one)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app, self.host, self.port = app, host, port
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self) -> str:
        """Bind, serve, and return the base URL once the server accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        server = uvicorn.Server(_config(self.app, log_level="warning"))
        thread = threading.Thread(
            target=server.run, args=([sock],), daemon=True, name=f"service-{self.port}"
        )
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(5)
                sock.close()
                raise RuntimeError(f"service on {self.url} did not start")
            time.sleep(0.005)
        self._server, self._thread, self._sock = server, thread, sock
        return self.url

    def stop(self) -> None:
        """Shut down gracefully (the lifespan derives what is pending) and release the port."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join()
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> ServiceServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ServiceServer", "is_loopback", "serve"]
