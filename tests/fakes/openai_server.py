"""A local HTTP server that speaks enough of the OpenAI API for the real ``openai`` client:
``POST /v1/chat/completions`` and ``POST /v1/embeddings``.

Scripted answers (status, latency, headers) are served in order, then the default one; every
request is logged on arrival (time, path, JSON body, whether it carried a bearer token), so a
test counts LLM calls from the server's side. Runs in a thread of the test process; workers in
other processes reach it over TCP like any OpenAI-compatible server.

    python -m tests.fakes.openai_server --port 8089 --latency 0.5   # for manual runs and bench
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Answer:
    """One scripted answer: an HTTP status (200 = a completion), latency and extra headers."""

    status: int = 200
    latency_s: float | None = None  # None: the server's default latency
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None  # None: the server's reply function decides


def rate_limited(retry_after: str | None = "1", **headers: str) -> Answer:
    extra = dict(headers)
    if retry_after is not None:
        extra["Retry-After"] = retry_after
    return Answer(status=429, headers=extra)


def server_error(status: int = 500) -> Answer:
    return Answer(status=status)


def slow(latency_s: float) -> Answer:
    return Answer(latency_s=latency_s)


@dataclass(frozen=True)
class LoggedRequest:
    at: float  # time.time() on arrival
    path: str
    body: dict[str, Any]
    authorized: bool


def default_reply(body: dict[str, Any]) -> str:
    """A short, deterministic summary: how many message lines the prompt carried."""
    prompt = body["messages"][-1]["content"]
    lines = [line for line in prompt.splitlines() if line.startswith("[")]
    return f"Summary of {len(lines)} messages."


def _embedding(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i % len(digest)] - 128) / 128 for i in range(dimensions)]


class FakeOpenAI:
    """The server. ``start()`` binds a free port on 127.0.0.1; ``url`` is the client's base_url."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        reply: Reply = default_reply,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.latency_s = latency_s
        self.reply = reply
        self.default = Answer()
        self._address = (host, port)
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Answer]] = {}
        self._log: list[LoggedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- control -----------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects
            # Headers and body go out in two writes: without this, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to every answer.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(self._address, Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def script(self, *answers: Answer, path: str = "/v1/chat/completions") -> None:
        """Serve these answers to the next requests to ``path`` (chat completions unless
        told), in order."""
        with self._lock:
            self._scripts.setdefault(path, []).extend(answers)

    def requests(self, path: str = "/v1/chat/completions") -> list[LoggedRequest]:
        with self._lock:
            return [request for request in self._log if request.path == path]

    def wait_for_requests(
        self, count: int, *, timeout_s: float = 30, path: str = "/v1/chat/completions"
    ) -> list[LoggedRequest]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.requests(path)
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise AssertionError(f"{len(self.requests(path))} requests to {path}, expected {count}")

    # --- serving -----------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        try:
            body = json.loads(handler.rfile.read(length) or b"{}")
        except ValueError:
            self._send(handler, 400, {"error": {"message": "body is not JSON"}})
            return
        path = handler.path.split("?", 1)[0]
        authorized = (handler.headers.get("Authorization") or "").startswith("Bearer ")
        with self._lock:
            self._log.append(LoggedRequest(time.time(), path, body, authorized))
            script = self._scripts.get(path)
            answer = script.pop(0) if script else None
        answer = answer or self.default
        latency = self.latency_s if answer.latency_s is None else answer.latency_s
        if latency:
            time.sleep(latency)
        if answer.status != 200:
            kind = "rate_limit_exceeded" if answer.status == 429 else "server_error"
            self._send(
                handler,
                answer.status,
                {"error": {"message": f"scripted {answer.status}", "type": kind, "code": kind}},
                answer.headers,
            )
        elif path == "/v1/chat/completions":
            self._send(handler, 200, self._completion(body, answer), answer.headers)
        elif path == "/v1/embeddings":
            self._send(handler, 200, self._embeddings(body), answer.headers)
        else:
            self._send(handler, 404, {"error": {"message": f"no route {path}"}})

    def _completion(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        text = answer.text if answer.text is not None else self.reply(body)
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in body["messages"]) // 4 + 1
        return {
            "id": f"chatcmpl-fake-{len(self._log)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(text) // 4 + 1,
                "total_tokens": prompt_tokens + len(text) // 4 + 1,
            },
        }

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input", [])
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        dimensions = int(body.get("dimensions") or 8)
        tokens = sum(len(str(text)) // 4 + 1 for text in texts)
        return {
            "object": "list",
            "model": body.get("model", "fake"),
            "data": [
                {"object": "embedding", "index": i, "embedding": _embedding(str(t), dimensions)}
                for i, t in enumerate(texts)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): that is what a timeout test wants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    args = parser.parse_args()
    with FakeOpenAI(latency_s=args.latency, port=args.port) as fake:
        print(f"fake OpenAI API at {fake.url} (Ctrl-C stops it)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
