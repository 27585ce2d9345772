"""The control API end to end, with real clients: curl over HTTP/1.1, curl with HTTP/2 prior
knowledge, nghttp, curl over TLS with ALPN h2, Python's http.client, a raw HTTP/2 client built
from hyperframe/hpack frames (to misbehave on purpose), raw sockets.

One gateway serves most tests of a class (starting one per test would cost seconds each): a
Microsoft 365 stand-in for rep1@acme.example, Postfix's smtp-sink as relay `default`, tokens of
every role and two tenants. Tests that need their own gateway (reload, drain, TLS) start one.
"""
import email
import email.header
import http.client
import json
import pathlib
import re
import smtplib
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

from mgtest import (Mailgated, SmtpSink, Workdir, free_port, make_cert, wait_for,
                    wait_port)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "fakes"))
from m365fake import M365Fake  # noqa: E402

REP = "rep1@acme.example"      # has an App Password: goes through the stand-in
REP2 = "rep2@acme.example"     # no credentials: goes through the relay
GLOBEX = "rep@globex.example"  # another tenant; its relay does not answer
PASSWORD = "app-password-for-tests-only"

# Throwaway secrets of the test gateway's own tokens.
TOKENS = {
    "admin": "admin-token-0123456789",
    "ops": "operator-token-0123456789",
    "sub": "submitter-acme-token-01234",
    "reader": "reader-acme-token-0123456",
    "greader": "reader-globex-token-012345",
    "conn": "connector-acme-token-01234",
    "scraper": "reader-all-token-01234567",
}


def tokens_yaml():
    rows = [("admin", "[admin]", '["*"]'), ("ops", "[operator]", '["*"]'),
            ("sub", "[submitter]", "[acme]"), ("reader", "[reader]", "[acme]"),
            ("greader", "[reader]", "[globex]"), ("conn", "[connector]", "[acme]"),
            ("scraper", "[reader]", '["*"]')]
    return "".join(f"      - {{name: {n}, secret: {TOKENS[n]}, roles: {r}, tenants: {t}}}\n"
                   for n, r, t in rows)


def config_yaml(fake_port, sink_port, dead_port, api_tls=None, extra_tokens=""):
    tls = f"    tls: {{{{cert: {api_tls[0]}, key: {api_tls[1]}}}}}\n" if api_tls else ""
    return (
        "node: {{id: api.test, data_dir: {data_dir}}}\n"
        "log: {{level: debug, format: text}}\n"
        "listeners:\n"
        "  smtp:\n"
        "    address: 127.0.0.1:{smtp_port}\n"
        "    require_tls: false\n"
        "    max_message_bytes: 200000\n"
        "  api:\n"
        "    address: 127.0.0.1:{api_port}\n"
        + tls +
        "    tokens:\n" + tokens_yaml().replace("{", "{{").replace("}", "}}") + extra_tokens +
        "storage: {{backend: sqlite}}\n"
        "microsoft365:\n"
        # IMAP is not what these tests are about: a closed loopback port, never the real service.
        "  imap: {{host: 127.0.0.1, port: 9, tls: none}}\n"
        "  login_retry_initial: 1s\n"
        "  login_retry_max: 2s\n"
        "relays:\n"
        f"  default: {{{{host: 127.0.0.1, port: {sink_port}, tls: none}}}}\n"
        f"  dead: {{{{host: 127.0.0.1, port: {dead_port}, tls: none}}}}\n"
        "tenants:\n"
        "  - id: acme\n"
        "    fallback: [default]\n"
        "    on_disconnect: fallback\n"
        "    limits: {{messages_per_minute: 100000}}\n"
        "    mailboxes:\n"
        f"      - address: {REP}\n"
        f"        auth: {{{{method: app_password, password: {PASSWORD}}}}}\n"
        f"        smtp: {{{{host: 127.0.0.1, port: {fake_port}, tls: starttls, "
        "allow_self_signed: true}}\n"
        f"      - address: {REP2}\n"
        "  - id: globex\n"
        "    fallback: [dead]\n"
        "    on_disconnect: fallback\n"
        "    mailboxes:\n"
        f"      - address: {GLOBEX}\n"
        "queue:\n"
        "  retry_initial: 1s\n"
        "  retry_max: 2s\n")


def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Client:
    """Python's http.client against the gateway (HTTP/1.1, keep-alive)."""

    def __init__(self, port):
        self.port = port

    def call(self, method, path, token=None, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            h = dict(headers or {})
            if token:
                h["Authorization"] = f"Bearer {TOKENS.get(token, token)}"
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
                h.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            ctype = r.getheader("content-type") or ""
            parsed = json.loads(data) if ctype.startswith("application/json") and data else data
            return r.status, parsed, {k.lower(): v for k, v in r.getheaders()}
        finally:
            conn.close()


def curl(*args, timeout=30):
    return subprocess.run(["curl", "-s", "--max-time", str(timeout), *args],
                          capture_output=True, text=True, timeout=timeout + 10)


class ApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._wd = Workdir()
        cls.tmp = cls._wd.__enter__()
        cls.sink = SmtpSink(cls.tmp)
        cls.fake = M365Fake(cls.tmp, {REP: {"password": PASSWORD,
                                            "recipients_per_window": 100000,
                                            "messages_per_minute": 100000}}).start()
        cls.dead_port = free_port()
        cls.gw = Mailgated(cls.tmp, config_yaml(cls.fake.port, cls.sink.port, cls.dead_port))
        cls.gw.start()
        wait_port("127.0.0.1", cls.gw.api_port, proc=cls.gw.proc)
        cls.api = Client(cls.gw.api_port)
        cls.base = f"http://127.0.0.1:{cls.gw.api_port}"

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.fake.stop()
        cls.sink.stop()
        cls._wd.__exit__(None, None, None)

    def submit(self, token="sub", **fields):
        body = {"from": REP2, "to": "prospect@example.test", "subject": "hello", "text": "hi"}
        body.update(fields)
        return self.api.call("POST", "/v1/messages", token, body)

    def sink_has(self, message_id):
        return message_id in self.sink.message_ids()

    # ---- protocols --------------------------------------------------------------------------

    def test_every_client_speaks_to_the_same_port(self):
        r = curl("-o", "/dev/null", "-w", "%{http_version} %{http_code}", self.base + "/healthz")
        self.assertEqual(r.stdout, "1.1 200")
        r = curl("--http2-prior-knowledge", "-w", "\n%{http_version}",
                 "-H", f"Authorization: Bearer {TOKENS['reader']}", self.base + "/v1/status")
        body, version = r.stdout.rsplit("\n", 1)
        self.assertEqual(version, "2")
        self.assertTrue(json.loads(body)["ready"])
        r = subprocess.run(["nghttp", "-n", "-s", "-H", f"authorization: Bearer {TOKENS['reader']}",
                            self.base + "/v1/tenants"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        status, body, _ = self.api.call("GET", "/v1/tenants", "reader")
        self.assertEqual(status, 200)
        self.assertEqual([t["id"] for t in body["tenants"]], ["acme"])

    def test_pipelined_http1_requests_are_answered_in_order(self):
        with socket.create_connection(("127.0.0.1", self.gw.api_port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
        self.assertEqual(statuses, [b"200", b"404", b"200"])

    # ---- roles and scopes -------------------------------------------------------------------

    def test_role_and_scope_boundaries(self):
        api = self.api
        quoted = urllib.parse.quote(GLOBEX)
        cases = [
            ("GET", "/healthz", None, 200), ("GET", "/readyz", None, 200),
            ("GET", "/v1/openapi.json", None, 200),
            ("GET", "/v1/status", None, 401), ("GET", "/v1/status", "wrong-secret", 401),
            ("GET", "/metrics", "scraper", 200), ("GET", "/metrics", "reader", 403),
            ("GET", f"/v1/mailboxes/{REP}", "reader", 200),
            ("GET", f"/v1/mailboxes/{quoted}", "reader", 404),
            ("GET", f"/v1/mailboxes/{quoted}", "greader", 200),
            ("GET", "/v1/mailboxes?tenant=globex", "reader", 404),
            ("POST", f"/v1/mailboxes/{REP2}/failover", "reader", 403),
            ("POST", f"/v1/mailboxes/{REP2}/failover", "sub", 403),
            ("POST", f"/v1/mailboxes/{REP2}/failover", "conn", 403),
            ("POST", "/v1/config/reload", "reader", 403),
            ("POST", "/v1/config/reload", "sub", 403),
            ("GET", "/v1/queue", "conn", 200),
            ("GET", "/v1/queue?tenant=globex", "reader", 404),
            ("GET", "/v1/events?follow=false", "reader", 200),
            ("GET", "/v1/events?tenant=globex&follow=false", "reader", 404),
            ("POST", "/v1/messages/NOSUCHID/retry", "reader", 403),
            ("DELETE", "/v1/messages/NOSUCHID", "sub", 403),
            ("DELETE", "/v1/messages/NOSUCHID", "ops", 404),
        ]
        for method, path, token, want in cases:
            with self.subTest(method=method, path=path, token=token):
                status, body, headers = api.call(method, path, token)
                self.assertEqual(status, want, body)
                if status >= 400:
                    self.assertEqual(set(body["error"]), {"code", "message", "hint"})
                    self.assertNotIn(TOKENS.get(token or "", "-"), json.dumps(body))
                if status == 401:
                    self.assertEqual(headers["www-authenticate"], 'Bearer realm="mailgate"')
        # A reader may not submit; a submitter of acme may not send as globex's mailbox.
        self.assertEqual(self.submit("reader")[0], 403)
        status, body, _ = self.submit("sub", **{"from": GLOBEX})
        self.assertEqual(status, 422)
        self.assertEqual(body["error"]["code"], "message.unknown_sender")
        # It names the token's own tenant, never the one the address belongs to.
        self.assertIn("tenant acme", body["error"]["message"])
        self.assertNotIn("tenant globex", body["error"]["message"])
        # Another tenant's message is 404 to a reader of acme, and absent from its queue.
        status, body, _ = self.submit("admin", **{"from": GLOBEX})
        self.assertEqual(status, 202, body)
        gid = body["id"]
        self.assertEqual(api.call("GET", f"/v1/messages/{gid}", "reader")[0], 404)
        self.assertEqual(api.call("GET", f"/v1/messages/{gid}", "greader")[0], 200)
        _, queue, _ = api.call("GET", "/v1/queue?limit=500", "reader")
        self.assertNotIn(gid, [m["id"] for m in queue["messages"]])
        self.assertTrue(all(m["tenant"] == "acme" for m in queue["messages"]))

    # ---- messages ---------------------------------------------------------------------------

    def test_api_message_is_delivered_like_an_smtp_message(self):
        status, body, headers = self.submit(
            to=[{"name": "Prospect Ümlaut", "address": "p1@example.test"}],
            bcc="hidden@example.test", subject="Grüße from the API",
            html="<p>hello</p>", text="hello",
            attachments=[{"name": "a.txt", "content_type": "text/plain", "content": "aGVsbG8="}])
        self.assertEqual(status, 202, body)
        self.assertEqual(headers["location"], f"/v1/messages/{body['id']}")
        self.assertEqual(body["recipients"], 2)
        api_mid = body["message_id"]
        with smtplib.SMTP("127.0.0.1", self.gw.smtp_port, timeout=30) as c:
            c.login("sub", TOKENS["sub"])
            c.sendmail(REP2, ["p1@example.test"],
                       f"From: {REP2}\r\nTo: p1@example.test\r\nSubject: smtp\r\n"
                       f"Message-ID: <smtp-twin@example.test>\r\n\r\nhello\r\n")
        self.assertTrue(wait_for(lambda: self.sink_has(api_mid) and
                                 self.sink_has("<smtp-twin@example.test>"), 30))
        raw = next(p.read_bytes() for p in self.sink.files() if api_mid.encode() in p.read_bytes())
        parsed = email.message_from_bytes(raw)
        self.assertIsNone(parsed.get_all("Bcc"), "Bcc reached the relay")
        self.assertEqual(parsed.get_content_type(), "multipart/mixed")
        self.assertEqual(str(email.header.make_header(email.header.decode_header(
            parsed["Subject"]))), "Grüße from the API")
        status, msg, _ = self.api.call("GET", f"/v1/messages/{body['id']}", "sub")
        self.assertEqual(status, 200)
        self.assertTrue(wait_for(lambda: self.api.call(
            "GET", f"/v1/messages/{body['id']}", "sub")[1]["state"] == "sent", 30))
        status, msg, _ = self.api.call("GET", f"/v1/messages/{body['id']}", "sub")
        self.assertEqual(msg["route"], "default")
        self.assertEqual(sorted(r["status"] for r in msg["recipients"]), ["sent", "sent"])
        self.assertEqual(msg["events"][0]["type"], "message.queued")
        self.assertIn("message.sent", [e["type"] for e in msg["events"]])

    def test_raw_message_through_microsoft_365(self):
        raw = (f"From: Rep <{REP}>\nTo: p2@example.test\nBcc: secret@example.test\n"
               "Subject: raw\nX-Mailgate-Priority: personal\n\nbody line\n")
        status, body, _ = self.api.call("POST", "/v1/messages", "sub", raw,
                                        {"Content-Type": "message/rfc822"})
        self.assertEqual(status, 202, body)
        self.assertEqual(body["recipients"], 2)
        got = lambda: [r for r in self.fake.accepted(REP) if r["message_id"] == body["message_id"]]
        self.assertTrue(wait_for(got, 30), self.gw.log_text()[-2000:])

    def test_idempotency_key_returns_the_first_answer_and_never_a_second_message(self):
        key = f"order-{time.time_ns()}"
        payload = {"from": REP2, "to": "idem@example.test", "subject": "once", "text": "once"}
        first = self.api.call("POST", "/v1/messages", "sub", payload, {"Idempotency-Key": key})
        self.assertEqual(first[0], 202, first[1])
        # The retry arrives over HTTP/2 this time: same answer, flagged as a replay.
        r = curl("--http2-prior-knowledge", "-i", "-H", f"Authorization: Bearer {TOKENS['sub']}",
                 "-H", "Content-Type: application/json", "-H", f"Idempotency-Key: {key}",
                 "--data-binary", json.dumps(payload), self.base + "/v1/messages")
        head, _, body = r.stdout.partition("\n\n")  # text mode: CRLF reads as LF
        self.assertIn("HTTP/2 202", head)
        self.assertIn("idempotent-replayed: true", head)
        self.assertEqual(json.loads(body), first[1])
        changed = dict(payload, text="something else")
        status, err, _ = self.api.call("POST", "/v1/messages", "sub", changed,
                                       {"Idempotency-Key": key})
        self.assertEqual(status, 422)
        self.assertEqual(err["error"]["code"], "idempotency.mismatch")
        # Another token's identical key is another message.
        other = self.api.call("POST", "/v1/messages", "admin", payload, {"Idempotency-Key": key})
        self.assertEqual(other[0], 202)
        self.assertNotEqual(other[1]["id"], first[1]["id"])
        self.assertEqual(self.api.call("POST", "/v1/messages", "sub", payload,
                                       {"Idempotency-Key": "bad\x7fkey"})[0], 400)
        mid = first[1]["message_id"]
        self.assertTrue(wait_for(lambda: self.sink_has(mid), 30))
        self.assertEqual(self.sink.message_ids().count(mid), 1)

    def test_hostile_input_gets_clear_errors_and_queues_nothing(self):
        _, before, _ = self.api.call("GET", "/v1/queue?limit=1", "admin")
        cases = [
            ("not json", "application/json", 400, "message.invalid_json"),
            ('{"from": "x"', "application/json", 400, "message.invalid_json"),
            (json.dumps({"from": REP2, "to": "p@example.test", "subject": "a\r\nBcc: x@y.z",
                         "text": "x"}), "application/json", 400, "message.header_injection"),
            (json.dumps({"from": {"name": "Evil\nX-Injected: 1", "address": REP2},
                         "to": "p@example.test", "text": "x"}), "application/json", 400,
             "message.header_injection"),
            (json.dumps({"from": REP2, "to": "p@example.test", "text": "x",
                         "attachments": [{"name": "a\r\n.txt", "content": "aGk="}]}),
             "application/json", 400, "message.header_injection"),
            (json.dumps({"from": REP2, "to": "p@example.test", "text": "x",
                         "headers": {"X-A": "v\u0000"}}), "application/json", 400,
             "message.header_injection"),
            (json.dumps({"from": REP2, "to": "p@example.test", "sbject": "typo", "text": "x"}),
             "application/json", 422, "message.invalid"),
            (json.dumps({"from": REP2, "text": "no recipient"}), "application/json", 422,
             "message.invalid"),
            ("From: a\x00b@acme.example\r\n\r\nx", "message/rfc822", 422, "message.invalid"),
            ("hello", "text/plain", 415, "api.unsupported_media_type"),
        ]
        for body, ctype, want, code in cases:
            with self.subTest(body=body[:40], ctype=ctype):
                status, err, _ = self.api.call("POST", "/v1/messages", "sub", body,
                                               {"Content-Type": ctype})
                self.assertEqual((status, err["error"]["code"]), (want, code), err)
        # A message over listeners.smtp.max_message_bytes (200,000 here).
        big = {"from": REP2, "to": "p@example.test", "text": "x" * 250_000}
        status, err, _ = self.api.call("POST", "/v1/messages", "sub", big)
        self.assertEqual((status, err["error"]["code"]), (413, "message.too_large"))
        # A body past the request limit: refused by the server, not read to its end.
        huge = b"x" * (3 * 1024 * 1024)
        status, err, _ = self.api.call("POST", "/v1/messages", "sub", huge,
                                       {"Content-Type": "application/json"})
        self.assertEqual((status, err["error"]["code"]), (413, "http.body_too_large"))
        # Without a valid token the limit is 1 MiB whatever the path.
        status, err, _ = self.api.call("POST", "/v1/messages", "wrong", b"x" * (1024 * 1024 + 10),
                                       {"Content-Type": "application/json"})
        self.assertEqual(status, 413)
        # A header block over 16 KiB, and garbage instead of HTTP.
        status, err, _ = self.api.call("GET", "/v1/status", "reader", None, {"X-Big": "y" * 20000})
        self.assertEqual((status, err["error"]["code"]), (431, "http.headers_too_large"))
        with socket.create_connection(("127.0.0.1", self.gw.api_port), timeout=10) as s:
            s.sendall(b"\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n")
            data = s.recv(65536)
        self.assertTrue(data.startswith(b"HTTP/1.1 400"), data[:80])
        _, after, _ = self.api.call("GET", "/v1/queue?limit=1", "admin")
        queued = lambda c: sum(c.values())
        self.assertEqual(queued(after["counts"]), queued(before["counts"]), "something was queued")

    def test_ten_thousand_streams_at_once_are_refused_past_the_limit(self):
        import hpack
        from hyperframe.frame import HeadersFrame, SettingsFrame
        rss_before = rss_kib(self.gw.proc.pid)
        enc = hpack.Encoder()
        frames = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", SettingsFrame(0).serialize()]
        for i in range(10_000):
            block = enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/healthz"),
                                (":authority", "gw.test")])
            frames.append(HeadersFrame(2 * i + 1, data=block,
                                       flags=["END_HEADERS", "END_STREAM"]).serialize())
        def count(data):
            pos, kinds = 0, {}
            while pos + 9 <= len(data):
                length = int.from_bytes(data[pos:pos + 3], "big")
                if pos + 9 + length > len(data):
                    break
                kinds[data[pos + 3]] = kinds.get(data[pos + 3], 0) + 1
                pos += 9 + length
            return kinds
        with socket.create_connection(("127.0.0.1", self.gw.api_port), timeout=30) as s:
            s.sendall(b"".join(frames))
            data = b""
            deadline = time.monotonic() + 60
            # Count frame types as they come: answers (HEADERS), refusals (RST_STREAM), GOAWAY;
            # done once every stream is accounted for or the connection ends.
            while time.monotonic() < deadline:
                kinds = count(data)
                if kinds.get(0x1, 0) + kinds.get(0x3, 0) >= 10_000 or kinds.get(0x7, 0):
                    break
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        kinds = count(data)
        answered, refused, goaway = kinds.get(0x1, 0), kinds.get(0x3, 0), kinds.get(0x7, 0)
        self.assertGreater(answered, 0)
        self.assertTrue(answered + refused == 10_000 or goaway > 0, kinds)
        self.assertLessEqual(answered, 10_000)
        # The gateway stays healthy and its memory bounded.
        self.assertEqual(self.api.call("GET", "/healthz")[0], 200)
        self.assertLess(rss_kib(self.gw.proc.pid) - rss_before, 64 * 1024)

    def test_a_client_that_never_reads_is_held_back_and_others_are_served(self):
        rss_before = rss_kib(self.gw.proc.pid)
        request = b"GET /v1/openapi.json HTTP/1.1\r\nHost: t\r\n\r\n"
        stuck = socket.create_connection(("127.0.0.1", self.gw.api_port), timeout=10)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 10
        # Each answer is ~37 KiB: 20,000 of them would be 740 MiB if the gateway kept producing.
        while sent < 20_000 * len(request) and time.monotonic() < deadline:
            try:
                sent += stuck.send(request * 100)
            except BlockingIOError:
                time.sleep(0.01)  # the gateway stopped reading us: what we want
        try:
            self.assertEqual(self.api.call("GET", "/healthz")[0], 200)
            status, _, _ = self.api.call("GET", "/v1/status", "reader")
            self.assertEqual(status, 200)
            self.assertLess(rss_kib(self.gw.proc.pid) - rss_before, 64 * 1024)
        finally:
            stuck.close()

    def test_retry_and_cancel_of_a_waiting_message(self):
        # globex's relay does not answer: its mail waits.
        status, body, _ = self.submit("admin", **{"from": GLOBEX})
        self.assertEqual(status, 202, body)
        mid = body["id"]
        status, msg, _ = self.api.call("POST", f"/v1/messages/{mid}/retry", "ops")
        self.assertEqual(status, 200, msg)
        self.assertIn(msg["state"], ("queued", "deferred"))
        status, msg, _ = self.api.call("DELETE", f"/v1/messages/{mid}", "ops")
        self.assertEqual(status, 200, msg)
        self.assertEqual(msg["state"], "failed")
        self.assertEqual(msg["last_reply"], "cancelled by API token ops")
        status, err, _ = self.api.call("POST", f"/v1/messages/{mid}/retry", "ops")
        self.assertEqual((status, err["error"]["code"]), (409, "store.state"))
        _, full, _ = self.api.call("GET", f"/v1/messages/{mid}", "admin")
        types = [e["type"] for e in full["events"]]
        self.assertIn("message.retry", types)
        self.assertEqual(types[-1], "message.failed")

    def test_failover_and_failback_move_new_mail_and_survive_nothing_else(self):
        status, mb, _ = self.api.call("POST", f"/v1/mailboxes/{REP}/failover", "ops",
                                      {"reason": "test"})
        self.assertEqual(status, 200, mb)
        self.assertEqual(mb["route"]["manual"]["actor"], "API token ops")
        self.assertTrue(mb["route"]["failed_over"])
        status, body, _ = self.submit("sub", **{"from": REP, "subject": "during failover"})
        self.assertEqual(status, 202)
        self.assertTrue(wait_for(lambda: self.sink_has(body["message_id"]), 30))
        status, mb, _ = self.api.call("POST", f"/v1/mailboxes/{REP}/failback", "ops")
        self.assertEqual(status, 200, mb)
        self.assertIsNone(mb["route"]["manual"])
        status, body2, _ = self.submit("sub", **{"from": REP, "subject": "after failback"})
        self.assertEqual(status, 202)
        at_fake = lambda: [r for r in self.fake.accepted(REP)
                           if r["message_id"] == body2["message_id"]]
        self.assertTrue(wait_for(at_fake, 30), self.gw.log_text()[-3000:])
        self.assertFalse(self.sink_has(body2["message_id"]))
        # The tenant without a usable relay chain still can fail over (its relay is configured).
        status, mb, _ = self.api.call("GET", f"/v1/mailboxes/{REP}", "reader")
        self.assertEqual(mb["ledger"]["recipients"]["limit"], 10000)
        self.assertGreaterEqual(mb["ledger"]["recipients"]["used"], 1)

    def test_mailboxes_show_their_imap_side(self):
        # REP has credentials: its pool tries microsoft365.imap, a closed loopback port here, and
        # shows that. The mailboxes without credentials have the documented "off" form.
        off = {"state": "off", "max_sessions": 0,
               "sessions": {"open": 0, "idle": 0, "busy": 0, "connecting": 0},
               "jobs_waiting": 0, "sent_folder": None, "last_error": None,
               "next_retry_at": None, "connected_since": None, "logins": 0, "failures": 0}
        seen = {}

        def failing():
            status, mb, _ = self.api.call("GET", f"/v1/mailboxes/{REP}", "reader")
            seen["mb"] = mb
            return status == 200 and mb["imap"]["last_error"] is not None
        self.assertTrue(wait_for(failing, 30), seen.get("mb"))
        imap = seen["mb"]["imap"]
        self.assertIn(imap["state"], ("backoff", "connecting"))
        self.assertEqual(imap["last_error"]["code"], "net.connect")
        self.assertEqual(imap["max_sessions"], 3)
        self.assertEqual(imap["sessions"]["open"], 0)
        self.assertGreaterEqual(imap["failures"], 1)
        self.assertIn("smtp", seen["mb"])
        status, page, _ = self.api.call("GET", "/v1/mailboxes", "admin")
        self.assertEqual(status, 200, page)
        others = [m for m in page["mailboxes"] if m["address"] != REP]
        self.assertTrue(others)
        for m in others:
            self.assertEqual(m["imap"], off, m["address"])
        # The OpenAPI document describes the same keys.
        _, doc, _ = self.api.call("GET", "/v1/openapi.json")
        schema = doc["components"]["schemas"]
        self.assertEqual(schema["Mailbox"]["properties"]["imap"],
                         {"$ref": "#/components/schemas/MailboxImap"})
        self.assertEqual(set(schema["MailboxImap"]["properties"]), set(off))
        r = curl("-H", f"Authorization: Bearer {TOKENS['scraper']}", self.base + "/metrics")
        self.assertIn(f'mailgate_imap_pool_state{{tenant="acme",mailbox="{REP}"', r.stdout)
        self.assertNotIn(f'mailgate_imap_pool_state{{tenant="acme",mailbox="{REP2}"', r.stdout)

    def test_event_stream_delivers_and_resumes_without_gaps_or_repeats(self):
        status, body, _ = self.submit(subject="watched")
        self.assertEqual(status, 202)
        qid = body["id"]
        # From the start of the outbox, so it does not matter when curl gets connected.
        proc = subprocess.Popen(["curl", "-sN", "--max-time", "60", "-H",
                                 f"Authorization: Bearer {TOKENS['reader']}",
                                 self.base + "/v1/events?after=0&types=message.*"],
                                stdout=subprocess.PIPE, text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        try:
            self.assertTrue(wait_for(lambda: any(qid in l and "message.sent" in l
                                                 for l in list(lines)), 60))
        finally:
            proc.terminate()
            proc.wait()
            reader.join(10)
            proc.stdout.close()
        frames = [l for l in lines if l.startswith("id: ")]
        seqs = [int(l[4:]) for l in frames]
        self.assertEqual(seqs, sorted(set(seqs)), "ids strictly increase")
        events = [json.loads(l[6:]) for l in lines if l.startswith("data: ")]
        self.assertEqual(len(events), len(seqs))
        self.assertTrue(all(e["tenant"] == "acme" for e in events), "another tenant's event")
        self.assertTrue(all(e["type"].startswith("message.") for e in events))
        mine = [e["type"] for e in events if e["data"].get("queue_id") == qid]
        self.assertEqual(mine[0], "message.queued")
        self.assertIn("message.sent", mine)
        # Resume after the first event: everything after it, nothing before it, then the end.
        first = seqs[0]
        r = curl("-N", "-H", f"Authorization: Bearer {TOKENS['reader']}",
                 "-H", f"Last-Event-ID: {first}",
                 self.base + "/v1/events?types=message.*&follow=false", timeout=30)
        resumed = [int(l[4:]) for l in r.stdout.splitlines() if l.startswith("id: ")]
        self.assertTrue(resumed)
        self.assertGreater(min(resumed), first)
        self.assertTrue(set(seqs[1:]) <= set(resumed), (seqs, resumed))

    def test_metrics_are_prometheus_text(self):
        r = curl("-H", f"Authorization: Bearer {TOKENS['scraper']}", self.base + "/metrics")
        names = set()
        for line in r.stdout.splitlines():
            if line.startswith("# TYPE "):
                names.add(line.split()[2])
        for name in ("mailgate_queue_messages", "mailgate_messages_total",
                     "mailgate_upstream_replies_total", "mailgate_failovers_total",
                     "mailgate_ledger_recipients_used", "mailgate_ledger_recipients_remaining",
                     "mailgate_route_state", "mailgate_connections", "mailgate_api_requests_total"):
            self.assertIn(name, names)
        self.assertIn(f'mailgate_ledger_recipients_remaining{{tenant="acme",mailbox="{REP}"}}',
                      r.stdout)

    def test_openapi_lists_what_the_server_answers(self):
        _, doc, _ = self.api.call("GET", "/v1/openapi.json")
        for path, ops in doc["paths"].items():
            concrete = path.replace("{address}", REP).replace("{id}", "NOSUCHID")
            if path == "/v1/events":
                concrete += "?follow=false"  # a stream otherwise: it would never end
            for method in ops:
                with self.subTest(path=path, method=method):
                    status, body, _ = self.api.call(method.upper(), concrete, "reader")
                    # Served: whatever the status, it is never "no such endpoint".
                    if isinstance(body, dict) and "error" in body:
                        self.assertNotIn(body["error"]["code"],
                                         ("api.not_found", "api.method_not_allowed"))


class ApiLifecycleTest(unittest.TestCase):
    """Tests with a gateway of their own: reload, drain, TLS."""

    def setUp(self):
        self._wd = Workdir()
        self.tmp = self._wd.__enter__()
        self.sink = SmtpSink(self.tmp)
        self.fake = M365Fake(self.tmp, {REP: {"password": PASSWORD}}).start()
        self.gws = []

    def tearDown(self):
        for gw in self.gws:
            gw.stop()
        self.fake.stop()
        self.sink.stop()
        self._wd.__exit__(None, None, None)

    def gateway(self, **kw):
        gw = Mailgated(self.tmp, config_yaml(self.fake.port, self.sink.port, free_port(), **kw))
        self.gws.append(gw)
        gw.start()
        wait_port("127.0.0.1", gw.api_port, proc=gw.proc)
        return gw

    def test_reload_applies_a_good_file_and_a_bad_one_changes_nothing(self):
        gw = self.gateway()
        api = Client(gw.api_port)
        good = gw.config_path.read_text()
        new_token = "      - {name: late, secret: added-by-reload-0123, roles: [reader]}\n"
        gw.config_path.write_text(good.replace("    tokens:\n", "    tokens:\n" + new_token, 1))
        self.assertEqual(api.call("GET", "/v1/status", "added-by-reload-0123")[0], 401)
        status, report, _ = api.call("POST", "/v1/config/reload", "ops")
        self.assertEqual(status, 200, report)
        self.assertIn("listeners.api.tokens: 8 token(s)", report["applied"])
        self.assertEqual(api.call("GET", "/v1/status", "added-by-reload-0123")[0], 200)
        # A broken file: 422 with every FILE:LINE:COL line, and the running config stays.
        broken = good.replace("storage: {backend: sqlite}", "storage: {backend: sqlite, bogus: 1}")
        gw.config_path.write_text(broken.replace("retry_initial: 1s", "retry_initial: soon"))
        status, err, _ = api.call("POST", "/v1/config/reload", "ops")
        self.assertEqual(status, 422, err)
        self.assertEqual(err["error"]["code"], "config.invalid")
        self.assertGreaterEqual(len(err["error"]["details"]), 2)
        for line in err["error"]["details"]:
            self.assertRegex(line, r"^/.+\.yaml:\d+:\d+: ")
        self.assertEqual(api.call("GET", "/v1/status", "added-by-reload-0123")[0], 200)
        # SIGHUP with the same broken file: logged, still serving.
        gw.proc.send_signal(1)
        self.assertTrue(wait_for(lambda: "reload:" in gw.log_text() and "is invalid"
                                 in gw.log_text(), 10))
        self.assertEqual(api.call("GET", "/healthz")[0], 200)
        # A changed listener address is reported as needing a restart.
        gw.config_path.write_text(good.replace(f"127.0.0.1:{gw.api_port}",
                                               f"127.0.0.1:{free_port()}"))
        status, report, _ = api.call("POST", "/v1/config/reload", "ops")
        self.assertEqual(status, 200, report)
        self.assertIn("listeners.api.address", report["restart_required"])

    def test_sigterm_ends_streams_says_draining_and_exits_zero(self):
        gw = self.gateway()
        base = f"http://127.0.0.1:{gw.api_port}"
        stream = subprocess.Popen(["curl", "-sN", "--http2-prior-knowledge", "--max-time", "30",
                                   "-H", f"Authorization: Bearer {TOKENS['reader']}",
                                   base + "/v1/events"], stdout=subprocess.PIPE, text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(stream.stdout), daemon=True)
        reader.start()
        # The stream is open once its first frame (the SSE retry hint) has arrived.
        self.assertTrue(wait_for(lambda: "retry: 1000\n" in list(lines), 20))
        started = time.monotonic()
        self.assertEqual(gw.terminate(30), 0)
        self.assertEqual(stream.wait(30), 0, "the stream ended cleanly, not by a timeout")
        reader.join(10)
        stream.stdout.close()
        self.assertLess(time.monotonic() - started, 25)

    def test_tls_with_alpn_h2_and_http11(self):
        cert, key = make_cert(self.tmp)
        gw = self.gateway(api_tls=(str(cert), str(key)))
        base = f"https://127.0.0.1:{gw.api_port}"
        r = curl("--cacert", str(cert), "-w", "\n%{http_version}",
                 "-H", f"Authorization: Bearer {TOKENS['reader']}", base + "/v1/status")
        body, version = r.stdout.rsplit("\n", 1)
        self.assertEqual(version, "2", r.stderr)
        self.assertTrue(json.loads(body)["ready"])
        r = curl("--http1.1", "--cacert", str(cert), "-o", "/dev/null", "-w", "%{http_version}",
                 base + "/healthz")
        self.assertEqual(r.stdout, "1.1")
        r = subprocess.run(["nghttp", "-n", "-s", base + "/healthz"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Cleartext on the TLS port is not served.
        status = curl("-o", "/dev/null", "-w", "%{http_code}",
                      f"http://127.0.0.1:{gw.api_port}/healthz").stdout
        self.assertEqual(status, "000")


if __name__ == "__main__":
    unittest.main()
