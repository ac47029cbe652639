"""A real HTTPS conversion webhook for the tests, with a CA of its own: it answers
apiextensions.k8s.io ConversionReviews with examples/gizmo_conversion.py, or with a failure
when told to, and counts the reviews it got."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from examples.gizmo_conversion import convert_review
from kext.certs import issue_cert, new_ca


class ConversionWebhook:
    """Serves POST /convert on https://127.0.0.1:<port> until close()."""

    def __init__(self, workdir: Path) -> None:
        self.ca = new_ca("conversion-webhook-ca")
        serving = issue_cert(self.ca, "conversion-webhook", hosts=["127.0.0.1", "localhost"])
        workdir.mkdir(parents=True, exist_ok=True)
        cert, key = workdir / "webhook.crt", workdir / "webhook.key"
        serving.write(str(cert), str(key))
        self.failure = ""  # when set, every review is answered with this failure message
        self.reviews: list[dict[str, Any]] = []
        self.connections: set[tuple[str, int]] = set()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: kext's client pools connections
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms ACK wait)

            def do_POST(self) -> None:
                webhook.connections.add(self.client_address)
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                webhook.reviews.append(review)
                if self.path.split("?")[0] != "/convert":
                    self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "message": "no such path", "code": 404})
                    return
                if webhook.failure:
                    answer = {"apiVersion": review["apiVersion"], "kind": "ConversionReview",
                              "response": {"uid": review["request"]["uid"], "result": {
                                  "status": "Failure", "message": webhook.failure}}}
                else:
                    answer = convert_review(review)
                self._send(200, answer)

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/convert"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def ca_bundle(self) -> str:
        """The caBundle of a CRD's clientConfig: base64 of the CA's PEM."""
        return base64.b64encode(self.ca.cert_pem).decode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
