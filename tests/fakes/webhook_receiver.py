#!/usr/bin/python3
"""A webhook endpoint for tests: records every request and checks its X-Mailgate-Signature.

Standard library only (http.server in a thread of the test process). Each request is recorded
with its method, path, headers (names lower-cased), raw body, parsed JSON, whether the signature
is the HMAC-SHA256 of the raw body under the configured secret, and the status it was answered.
The receiver can be told to answer another status (500, 503, ...) or to be down (not listening at
all, its connections closed) and come back later on the same port:

    rx = WebhookReceiver(secret="whsec-1").start()   # free port, kept across restarts
    rx.url                                            # http://127.0.0.1:PORT/hook
    rx.set_status(503); rx.set_status(200)
    rx.set_delay(0.2)                                 # answer each request that much later
    rx.set_failing_types({"message.sending"}, 503)    # that status for those X-Mailgate-Event
    rx.max_concurrent                                 # most requests open at once so far
    rx.stop(); rx.start()                             # down, then back on the same port
    rx.requests(); rx.acknowledged()                  # lists of Record, oldest first
    rx.acknowledged_ids()                             # event ids answered 2xx, in order

Every answer closes its connection (HTTP/1.0), so stopping cuts the endpoint off completely.
"""
import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _free_port(host):
    with socket.socket(socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Record:
    method: str
    path: str
    headers: dict
    body: bytes
    status: int
    valid: bool  # the signature matched the raw body
    json: object = field(default=None)

    @property
    def event_id(self):
        return self.headers.get("x-mailgate-event-id")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class WebhookReceiver:
    def __init__(self, secret, host="127.0.0.1", port=None, path="/hook"):
        self.secret = secret.encode()
        self.host = host
        self.port = port or _free_port(host)
        self.path = path
        self._lock = threading.Lock()
        self._records = []
        self._status = 200
        self._delay = 0.0
        self._failing_types = set()
        self._failing_status = 503
        self._open = 0
        self.max_concurrent = 0
        self._server = None
        self._thread = None

    @property
    def url(self):
        return f"http://{self.host}:{self.port}{self.path}"

    def running(self):
        return self._server is not None

    def set_status(self, status):
        with self._lock:
            self._status = status

    def set_failing_types(self, types, status=503):
        """Answers `status` to events of these types (whatever set_status says); empty: none."""
        with self._lock:
            self._failing_types = set(types or ())
            self._failing_status = status

    def set_delay(self, seconds):
        with self._lock:
            self._delay = seconds

    def start(self):
        if self._server is not None:
            return self
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                with receiver._lock:
                    receiver._open += 1
                    receiver.max_concurrent = max(receiver.max_concurrent, receiver._open)
                    delay = receiver._delay
                try:
                    self._answer(delay)
                finally:
                    with receiver._lock:
                        receiver._open -= 1

            def _answer(self, delay):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if delay:
                    time.sleep(delay)
                headers = {k.lower(): v for k, v in self.headers.items()}
                expected = "sha256=" + hmac.new(receiver.secret, body, hashlib.sha256).hexdigest()
                valid = hmac.compare_digest(expected,
                                            headers.get("x-mailgate-signature", "").lower())
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                with receiver._lock:
                    status = receiver._status
                    if headers.get("x-mailgate-event") in receiver._failing_types:
                        status = receiver._failing_status
                    receiver._records.append(Record(self.command, self.path, headers, body,
                                                    status, valid, parsed))
                answer = b"ok\n" if 200 <= status < 300 else b"not now\n"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client gave up (timeout, cancelled at stop): recorded all the same

            do_PUT = do_POST

            def log_message(self, fmt, *args):
                pass

        self._server = _Server((self.host, self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self):
        """Stops listening; the port refuses connections until start() again."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(5)

    def requests(self):
        with self._lock:
            return list(self._records)

    def acknowledged(self):
        return [r for r in self.requests() if 200 <= r.status < 300]

    def acknowledged_ids(self):
        return [r.event_id for r in self.acknowledged()]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
