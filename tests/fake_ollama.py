"""A minimal Ollama-shaped HTTP server on 127.0.0.1 for tests (``/api/tags``, ``/api/chat``).

It lets the real ``ollama`` client and ``ChatOllama`` talk to something local: the
answer for each request comes from ``respond(model, request_json) -> str``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOllama:
    def __init__(self, models: list[str], respond: Callable[[str, dict], str]):
        self.models = models
        self.respond = respond
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _json(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.startswith("/api/tags"):
                    self._json(200, {"models": [{"name": m, "model": m, "modified_at": "2024-01-01T00:00:00Z",
                                                 "size": 1, "digest": "0" * 12, "details": {}} for m in owner.models]})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                owner.requests.append(body)
                if self.path != "/api/chat":
                    return self._json(404, {"error": "not found"})
                model = body.get("model", "")
                if ":" not in model:  # like Ollama: a bare name means the :latest tag
                    model += ":latest" if model + ":latest" in owner.models else ""
                if model not in owner.models:
                    return self._json(404, {"error": f"model '{model}' not found"})
                content = owner.respond(model, body)
                done = {"model": model, "created_at": "2024-01-01T00:00:00Z", "done": True, "done_reason": "stop",
                        "message": {"role": "assistant", "content": ""}, "total_duration": 1, "eval_count": 1,
                        "prompt_eval_count": 1}
                if body.get("stream", True):
                    chunk = {**done, "done": False, "message": {"role": "assistant", "content": content}}
                    data = (json.dumps(chunk) + "\n" + json.dumps(done) + "\n").encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-ndjson")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._json(200, {**done, "message": {"role": "assistant", "content": content}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeOllama:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
