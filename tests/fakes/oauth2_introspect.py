#!/usr/bin/python3
"""An OAuth2 token introspection endpoint (RFC 7662 style) for Dovecot's oauth2 passdb, for tests.

Dovecot sends each XOAUTH2/OAUTHBEARER bearer token here and logs the user in when the answer is
{"active": true, "username": <the login>}. Tokens the server knows are active until expired;
every other token is {"active": false}. The three ways Dovecot 2.3 can ask (introspection_mode)
are all understood, on any path:

    post  POST with the form body token=TOKEN
    get   GET with the token appended to the URL (introspection_url = http://H:P/introspect?token=)
    auth  GET with "Authorization: Bearer TOKEN"

A small admin interface changes the tokens while it runs (JSON bodies):

    POST /admin/tokens   {"token": T, "username": U, "expires_in": SECONDS (optional)}
    POST /admin/expire   {"token": T}     the token answers inactive from now on
    GET  /admin/stats    {"introspections": N, "active": N, "inactive": N, "tokens": N}

Run it as a process (prints "ready <port>" once it listens; SIGTERM/SIGINT stop it):

    oauth2_introspect.py [--host 127.0.0.1] [--port 0] [--token TOKEN=USER ...]

or inside a test: server = IntrospectionServer({"tok": "rep1@acme.example"}).start(); ...;
server.url is the introspection URL, server.stop() at the end.
"""
import argparse
import json
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class TokenStore:
    """Known tokens, their user and expiry time; thread-safe (the HTTP server is threaded)."""

    def __init__(self, tokens=None):
        self._lock = threading.Lock()
        self._tokens = {}  # token -> (username, expires_at or None)
        self.introspections = self.active = self.inactive = 0
        for token, username in (tokens or {}).items():
            self.add(token, username)

    def add(self, token, username, expires_in=None):
        with self._lock:
            expires = time.time() + expires_in if expires_in is not None else None
            self._tokens[token] = (username, expires)

    def expire(self, token):
        with self._lock:
            if token in self._tokens:
                self._tokens[token] = (self._tokens[token][0], 0)

    def introspect(self, token):
        """The JSON object Dovecot gets for token."""
        with self._lock:
            self.introspections += 1
            username, expires = self._tokens.get(token, (None, None))
            if username is None or (expires is not None and time.time() >= expires):
                self.inactive += 1
                return {"active": False}
            self.active += 1
            answer = {"active": True, "username": username, "token_type": "Bearer"}
            if expires is not None:
                answer["exp"] = int(expires)
            return answer

    def stats(self):
        with self._lock:
            return {"introspections": self.introspections, "active": self.active,
                    "inactive": self.inactive, "tokens": len(self._tokens)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # Dovecot's HTTP client keeps its connection open
    server_version = "oauth2-introspect-test/1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("oauth2_introspect: " + (fmt % args) + "\n")

    def _reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _token_from_request(self, body):
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        query = urllib.parse.urlsplit(self.path).query
        if body:
            query = body.decode("utf-8", errors="replace")
        values = urllib.parse.parse_qs(query, keep_blank_values=True).get("token")
        return values[0] if values else None

    def do_GET(self):
        store = self.server.store
        if urllib.parse.urlsplit(self.path).path == "/admin/stats":
            return self._reply(200, store.stats())
        token = self._token_from_request(b"")
        if token is None:
            return self._reply(400, {"error": "invalid_request"})
        return self._reply(200, store.introspect(token))

    def do_POST(self):
        store = self.server.store
        body = self._body()
        path = urllib.parse.urlsplit(self.path).path
        if path in ("/admin/tokens", "/admin/expire"):
            try:
                request = json.loads(body)
                token = request["token"]
                if path == "/admin/tokens":
                    store.add(token, request["username"], request.get("expires_in"))
                else:
                    store.expire(token)
            except (ValueError, KeyError, TypeError) as e:
                return self._reply(400, {"error": f"bad admin request: {e}"})
            return self._reply(200, {"ok": True})
        token = self._token_from_request(body)
        if token is None:
            return self._reply(400, {"error": "invalid_request"})
        return self._reply(200, store.introspect(token))


class IntrospectionServer:
    """The endpoint on host:port (0: a free port), served from a background thread."""

    def __init__(self, tokens=None, host="127.0.0.1", port=0, verbose=False):
        self.store = TokenStore(tokens)
        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.store = self.store
        self.httpd.verbose = verbose
        self.host, self.port = self.httpd.server_address[:2]
        self.url = f"http://{self.host}:{self.port}/introspect"
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # Shortcuts for tests in the same process (the admin endpoints do the same over HTTP).
    def add_token(self, token, username, expires_in=None):
        self.store.add(token, username, expires_in)

    def expire_token(self, token):
        self.store.expire(token)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", action="append", default=[], metavar="TOKEN=USER",
                        help="a token that is active for USER (repeatable)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    tokens = {}
    for item in args.token:
        token, sep, user = item.partition("=")
        if not sep or not token or not user:
            parser.error(f"--token wants TOKEN=USER, not {item!r}")
        tokens[token] = user
    try:
        server = IntrospectionServer(tokens, args.host, args.port, args.verbose)
    except OSError as e:
        print(f"oauth2_introspect: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.httpd.shutdown).start())
    print(f"ready {server.port}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
