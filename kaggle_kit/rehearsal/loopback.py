"""The HTTP face of the local Kaggle: the official client's POSTs (API calls), PUTs (blob uploads) and GETs (output
downloads), each handed to the `LocalKaggle` that answers it."""

from __future__ import annotations

import json
import shutil
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlparse

__all__ = ["loopback_handler"]


def loopback_handler(service) -> type[BaseHTTPRequestHandler]:
    """The request handler class of a `LocalKaggle` `service`'s HTTP server (the service answers)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            method = urlparse(self.path).path.rsplit("/", 1)[-1]
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            except ValueError:
                body = {}
            code, answer = service.answer(method, body)
            self._send(code, json.dumps(answer).encode(), "application/json")

        def do_PUT(self) -> None:  # a blob upload: a dataset's file, to the URL StartBlobUpload gave
            token = urlparse(self.path).path.rsplit("/", 1)[-1]
            length = int(self.headers.get("Content-Length") or 0)
            stored = service.datasets.receive(token, self.rfile, length)
            self._send(200 if stored else 404, b"{}", "application/json")

        def do_GET(self) -> None:
            path = service.output_file(urlparse(self.path).path)
            if path is None:
                self._send(404, b"not found", "text/plain")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            with open(path, "rb") as f:
                shutil.copyfileobj(f, self.wfile, 1 << 20)

        def _send(self, code: int, data: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
