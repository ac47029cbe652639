"""A real HTTPS admission webhook server for tests, with its own CA.

`WebhookServer(directory)` serves HTTP/1.1 with keep-alive over TLS from a thread on
127.0.0.1 (kext, in another process, calls it over the network as it would a webhook in a
cluster). Each path answers AdmissionReview admission.k8s.io/v1 as told by `answer(path, ...)`:

    server.answer("/validate", allow())
    server.answer("/validate", deny("no", code=403))
    server.answer("/mutate", patch([{"op": "add", "path": "/spec/color", "value": "red"}]))
    server.answer("/mutate", allow(warnings=["careful"]))
    server.answer("/slow", hang())                       # holds the call until release()
    server.answer("/x", lambda request: {...})          # any response, from the request

A path not told anything allows. Every review is recorded (`reviews(path)`), and every TLS
connection accepted is counted (`connections`), so tests can see that calls reuse them.
`stop()` closes the port and every connection (the webhook is down); `start()` serves again
on the same port.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kext.certs import issue_cert, new_ca

HOST = "127.0.0.1"
HANG_LIMIT = 60.0  # a hung call is released after this long at most

Response = dict[str, Any]
Answer = Callable[[dict[str, Any]], Response | None]


def allow(warnings: list[str] | None = None,
          audit_annotations: dict[str, str] | None = None) -> Answer:
    """Allow the request (with warnings for the client, audit annotations)."""
    def answer(request: dict[str, Any]) -> Response:
        response: Response = {"allowed": True}
        if warnings:
            response["warnings"] = warnings
        if audit_annotations:
            response["auditAnnotations"] = audit_annotations
        return response
    return answer


def deny(message: str = "", code: int | None = None, reason: str = "",
         warnings: list[str] | None = None) -> Answer:
    """Refuse the request with a status (message, code, reason as given)."""
    def answer(request: dict[str, Any]) -> Response:
        status: dict[str, Any] = {}
        if message:
            status["message"] = message
        if code is not None:
            status["code"] = code
        if reason:
            status["reason"] = reason
        response: Response = {"allowed": False, "status": status}
        if warnings:
            response["warnings"] = warnings
        return response
    return answer


def patch(operations: list[dict[str, Any]] | Callable[[dict[str, Any]], list[dict[str, Any]]],
          warnings: list[str] | None = None) -> Answer:
    """Allow with a JSONPatch (or one made from the request)."""
    def answer(request: dict[str, Any]) -> Response:
        ops = operations(request) if callable(operations) else operations
        response: Response = {
            "allowed": True, "patchType": "JSONPatch",
            "patch": base64.b64encode(json.dumps(ops).encode()).decode(),
        }
        if warnings:
            response["warnings"] = warnings
        return response
    return answer


def hang() -> Answer:
    """Hold the call until release() or stop() (or HANG_LIMIT), then allow."""
    def answer(request: dict[str, Any]) -> Response | None:
        return None
    answer.hangs = True  # type: ignore[attr-defined]
    return answer


@dataclass
class _Path:
    answer: Answer = field(default_factory=allow)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    http_code: int = 200  # answer with this HTTP status instead (and a Status body) when not 200


class WebhookServer:
    """See the module docstring."""

    def __init__(self, directory: Path, *, port: int = 0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        ca = new_ca("kext-test-webhook-ca")
        serving = issue_cert(ca, "webhook", hosts=[HOST, "localhost"])
        self.ca_pem = ca.cert_pem
        self.ca_file = str(directory / "webhook-ca.crt")
        Path(self.ca_file).write_bytes(ca.cert_pem)
        cert_file, key_file = str(directory / "webhook.crt"), str(directory / "webhook.key")
        serving.write(cert_file, key_file)
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._context.load_cert_chain(cert_file, key_file)
        self._port = port
        self._lock = threading.Lock()
        self._paths: dict[str, _Path] = {}
        self._release = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.connections = 0

    # -- lifecycle

    @property
    def port(self) -> int:
        return self._port

    @property
    def ca_bundle(self) -> str:
        """The CA as a webhook configuration's clientConfig.caBundle (base64 PEM)."""
        return base64.b64encode(self.ca_pem).decode()

    def url(self, path: str) -> str:
        return f"https://{HOST}:{self._port}{path}"

    def start(self) -> None:
        server = _Server((HOST, self._port), self)
        self._port = server.server_address[1]
        self._server = server
        self._release.clear()
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        daemon=True, name="webhook-server")
        self._thread.start()

    def stop(self) -> None:
        """Close the port and every open connection; hung calls end."""
        self._release.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> WebhookServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour

    def answer(self, path: str, answer: Answer, *, http_code: int = 200) -> None:
        """How path answers from now on (http_code: fail the call with that HTTP status)."""
        with self._lock:
            self._path(path).answer = answer
            self._path(path).http_code = http_code

    def release(self) -> None:
        """Let hung calls answer (allowing); later hang() calls hang again."""
        self._release.set()
        self._release = threading.Event()

    def reviews(self, path: str) -> list[dict[str, Any]]:
        """The AdmissionReview requests path was sent, in order (their `request` part)."""
        with self._lock:
            return [r["request"] for r in self._path(path).reviews]

    def clear(self) -> None:
        with self._lock:
            for entry in self._paths.values():
                entry.reviews.clear()

    def _path(self, path: str) -> _Path:
        if path not in self._paths:
            self._paths[path] = _Path()
        return self._paths[path]

    def _opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
            self.connections += 1

    def _closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: WebhookServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (kext timing out) is no error of the test's


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: kext is expected to reuse connections
    disable_nagle_algorithm = True
    wbufsize = 1 << 16  # headers and body leave in one write, flushed after each request
    server: _Server

    def setup(self) -> None:
        owner = self.server.owner
        raw = self.request
        self.request = owner._context.wrap_socket(raw, server_side=True)
        self.connection = self.request
        owner._opened(raw)
        self._raw = raw
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._closed(self._raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        review = json.loads(self.rfile.read(length))
        path = self.path.partition("?")[0]
        with owner._lock:
            entry = owner._path(path)
            entry.reviews.append(review)
            answer, http_code, release = entry.answer, entry.http_code, owner._release
        if getattr(answer, "hangs", False):
            release.wait(HANG_LIMIT)
            answer = allow()
        if http_code != 200:
            self._send(http_code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "message": f"the webhook failed with {http_code}",
                                   "code": http_code})
            return
        response = answer(review["request"]) or {"allowed": True}
        response = {"uid": review["request"]["uid"], **response}
        self._send(200, {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                         "response": response})

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # kext gave up waiting


def main() -> None:
    """`python -m tests.webhook_server DIR`: serve allow-all in this process (the benchmark
    runs it apart from its client) and print the port once listening; stop on SIGTERM."""
    import signal
    import sys

    server = WebhookServer(Path(sys.argv[1]))
    server.start()
    print(server.port, flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    server.stop()


if __name__ == "__main__":
    main()
