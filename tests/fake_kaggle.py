"""A fake Kaggle API on loopback for the official client: it records requests and answers with scripted runs.

The client posts JSON to http://localhost/api/v1/<Service>/<Method> (KAGGLE_API_ENVIRONMENT=LOCALHOST); with
HTTP_PROXY pointing here, those requests (and output downloads) arrive at this server, whatever its port.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class FakeKaggle:
    def __init__(self):
        self.requests: list[tuple[str, dict]] = []  # (method, JSON body)
        self.statuses: deque[tuple[str, str | None]] = deque()  # answers to GetKernelSessionStatus, in order
        self.outputs: deque[dict[str, bytes]] = deque()  # each completed run's output files
        self.current_output: dict[str, bytes] = {}
        self.version = 0
        self.refuse_with: str | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def env(self, tmp_path) -> dict[str, str]:
        """Environment variables that send the official client here, with throwaway credentials."""
        proxy = f"http://127.0.0.1:{self.port}"
        return {
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "HTTP_PROXY": proxy,
            "http_proxy": proxy,
            "NO_PROXY": "",
            "no_proxy": "",
            "KAGGLE_USERNAME": "tester",
            "KAGGLE_KEY": "s3cr3t-key-0123456789",
            "KAGGLE_CONFIG_DIR": str(tmp_path / "kaggle-config"),
        }

    def calls(self, method: str) -> list[dict]:
        return [body for m, body in self.requests if m == method]

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, method: str, body: dict) -> dict:
        if method == "SaveKernel":
            if self.refuse_with:
                return {"error": self.refuse_with}
            self.version += 1
            slug = body.get("slug", "")
            return {"ref": f"/code/{slug}", "url": f"https://www.kaggle.com/code/{slug}", "versionNumber": self.version}
        if method == "GetKernelSessionStatus":
            status, failure = self.statuses.popleft() if self.statuses else ("COMPLETE", None)
            if status == "COMPLETE" and self.outputs:
                self.current_output = self.outputs.popleft()
            return {"status": status, **({"failureMessage": failure} if failure else {})}
        if method == "ListKernelSessionOutput":
            names = sorted(self.current_output)
            start = int(body.get("pageToken") or 0)
            size = int(body.get("pageSize") or 20)
            page = names[start : start + size]
            answer = {
                "files": [{"url": f"http://localhost/files/{n}", "fileName": n} for n in page],
                "log": "kernel log\n",
            }
            if start + size < len(names):
                answer["nextPageToken"] = str(start + size)
            return answer
        return {"code": 404, "message": f"fake Kaggle has no {method}"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                method = urlparse(self.path).path.rsplit("/", 1)[-1]
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                fake.requests.append((method, body))
                data = json.dumps(fake._answer(method, body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                name = urlparse(self.path).path.split("/files/", 1)[-1]
                data = fake.current_output.get(name)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

        return Handler
