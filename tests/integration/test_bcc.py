"""BCC ingestion end to end (docs/bcc.md): mailgated with two tenants, each with a bcc_address,
its relay `default` on Postfix's smtp-sink; mail submitted over SMTP (Python's smtplib) and
POST /v1/messages (curl). What the sink received, what GET /v1/events streams, and the
synced_messages rows are checked; nothing is assumed about timing beyond waiting for it."""
import email
import json
import smtplib
import sqlite3
import subprocess
import unittest

from mgtest import TOKEN, Mailgated, SmtpSink, Workdir, wait_for

REP = "rep1@acme.example"
ALIAS = "sales@acme.example"
BOSS = "boss@globex.example"
ACME_BCC = "acme-bcc@mailgate.local"
GLOBEX_BCC = "globex-bcc@mailgate.local"
READER = "reader-secret-value"


def config_yaml(sink_port):
    return (
        "node: {{id: bcc.test, data_dir: {data_dir}}}\n"
        "log: {{level: debug, format: text}}\n"
        "listeners:\n"
        "  smtp:\n"
        "    address: 127.0.0.1:{smtp_port}\n"
        "    require_tls: false\n"
        "  api:\n"
        "    address: 127.0.0.1:{api_port}\n"
        "    tokens:\n"
        "      - name: crm\n"
        "        secret: \"${{MAILGATE_TEST_TOKEN}}\"\n"
        "        roles: [submitter]\n"
        "        tenants: [\"*\"]\n"
        "      - name: reader\n"
        f"        secret: {READER}\n"
        "        roles: [reader]\n"
        "        tenants: [\"*\"]\n"
        "storage: {{backend: sqlite}}\n"
        "microsoft365:\n"
        # IMAP is not what these tests are about: a closed loopback port, never the real service.
        "  imap: {{host: 127.0.0.1, port: 9, tls: none}}\n"
        "relays:\n"
        "  default:\n"
        "    host: 127.0.0.1\n"
        f"    port: {sink_port}\n"
        "    tls: none\n"
        "tenants:\n"
        "  - id: acme\n"
        "    fallback: [default]\n"
        "    on_disconnect: fallback\n"
        f"    bcc_address: {ACME_BCC}\n"
        "    mailboxes:\n"
        f"      - address: {REP}\n"
        f"        aliases: [{ALIAS}]\n"
        "  - id: globex\n"
        "    fallback: [default]\n"
        "    on_disconnect: fallback\n"
        f"    bcc_address: {GLOBEX_BCC}\n"
        "    mailboxes:\n"
        f"      - address: {BOSS}\n"
        "queue:\n"
        "  retry_initial: 1s\n"
        "  retry_max: 2s\n")


def message(tag, sender=REP, to="prospect@example.test"):
    return (f"From: Rep <{sender}>\r\nTo: {to}\r\nCc: Boss <cc@example.test>\r\n"
            f"Subject: bcc {tag}\r\nDate: Thu, 03 Dec 2026 19:30:00 +0100\r\n"
            f"Message-ID: <bcc-{tag}@example.test>\r\n\r\nhello {tag}\r\n")


def curl(*args, timeout=30):
    return subprocess.run(["curl", "-s", "--max-time", str(timeout), *args],
                          capture_output=True, text=True, timeout=timeout + 10)


class BccTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._wd = Workdir()
        cls.tmp = cls._wd.__enter__()
        cls.sink = SmtpSink(cls.tmp)
        cls.gw = Mailgated(cls.tmp, config_yaml(cls.sink.port),
                           env={"MAILGATE_TEST_TOKEN": TOKEN}).start()
        cls.base = f"http://127.0.0.1:{cls.gw.api_port}"

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.sink.stop()
        cls._wd.__exit__(None, None, None)

    # --- helpers ---------------------------------------------------------------------------

    def smtp(self, sender, rcpts, data):
        """(code, text) of the end of DATA, as the client heard it."""
        with smtplib.SMTP("127.0.0.1", self.gw.smtp_port, timeout=30) as c:
            c.login("crm", TOKEN)
            c.mail(sender)
            for r in rcpts:
                code, text = c.rcpt(r)
                self.assertEqual(code, 250, text)
            return c.data(data.encode())

    def events(self):
        r = curl("-N", "-H", f"Authorization: Bearer {READER}",
                 self.base + "/v1/events?after=0&follow=false&types=message.*")
        self.assertEqual(r.returncode, 0, r.stderr)
        return [json.loads(l[6:]) for l in r.stdout.splitlines() if l.startswith("data: ")]

    def received(self, message_id):
        return [e for e in self.events()
                if e["type"] == "message.received" and e["data"]["message_id"] == message_id]

    def synced(self, message_id):
        db = sqlite3.connect(f"file:{self.gw.data_dir / 'mailgate.db'}?mode=ro", uri=True,
                             timeout=10)
        try:
            return db.execute("SELECT mailbox, folder, uidvalidity, uid, tenant, size, raw "
                              "FROM synced_messages WHERE message_id = ?",
                              (message_id,)).fetchall()
        finally:
            db.close()

    def sink_messages(self, message_id):
        """The sink's dumps of that message: (envelope recipients, parsed message)."""
        out = []
        for p in self.sink.files():
            raw = p.read_bytes()
            msg = email.message_from_bytes(raw)
            if msg.get("Message-ID") == message_id:
                rcpts = [v.strip("<>") for k, v in msg.items() if k.lower() == "x-rcpt-args"]
                out.append((rcpts, msg))
        return out

    def post(self, body, content_type="message/rfc822"):
        r = curl("-X", "POST", "-H", f"Authorization: Bearer {TOKEN}",
                 "-H", f"Content-Type: {content_type}", "--data-binary", body,
                 "-w", "\n%{http_code}", self.base + "/v1/messages")
        text, _, status = r.stdout.rpartition("\n")
        return int(status), json.loads(text) if text else None

    def marker(self, tag):
        """A message to prospect@ only, whose arrival at the sink shows what was sent before it
        had its chance to arrive too (one relay, one upstream connection pool)."""
        code, text = self.smtp(REP, ["marker@example.test"], message("marker-" + tag))
        self.assertEqual(code, 250, text)
        self.assertTrue(wait_for(lambda: self.sink_messages(f"<bcc-marker-{tag}@example.test>"),
                                 timeout=60))

    # --- tests -----------------------------------------------------------------------------

    def test_only_the_bcc_address_is_ingested_and_nothing_relayed(self):
        mid = "<bcc-only@example.test>"
        code, text = self.smtp(ALIAS, [ACME_BCC], message("only", sender=ALIAS))
        self.assertEqual(code, 250, text)
        self.assertIn(b"BCC copy ingested", text)
        # Answered after the commit: the row and its event are there already.
        rows = self.synced(mid)
        self.assertEqual(len(rows), 1)
        mailbox, folder, uidvalidity, uid, tenant, size, raw = rows[0]
        self.assertEqual((mailbox, folder, uidvalidity, tenant), (REP, "bcc", 0, "acme"))
        self.assertGreaterEqual(uid, 1)
        self.assertEqual(size, len(raw))
        self.assertIn(b"Subject: bcc only", raw)
        self.assertTrue(raw.startswith(b"Received: "))
        ev = self.received(mid)
        self.assertEqual(len(ev), 1)
        self.assertEqual((ev[0]["tenant"], ev[0]["mailbox"]), ("acme", REP))
        d = ev[0]["data"]
        self.assertEqual(d, {"message_id": mid, "folder": "bcc", "uid": uid, "uidvalidity": 0,
                             "direction": "outgoing", "source": "bcc", "from": ALIAS,
                             "to": ["prospect@example.test"], "cc": ["cc@example.test"],
                             "subject": "bcc only", "date": "2026-12-03T18:30:00Z",
                             "size": size, "flags": []})
        # Nothing queued, so nothing ever reaches the relay.
        self.assertFalse([e for e in self.events()
                          if e["type"] == "message.queued"
                          and e["data"].get("message_id") == mid])
        self.marker("only")
        self.assertEqual(self.sink_messages(mid), [])

    def test_mixed_recipients_are_relayed_without_the_bcc_address(self):
        mid = "<bcc-mixed@example.test>"
        code, text = self.smtp(REP, ["prospect@example.test", ACME_BCC.upper(), "cc@example.test"],
                               message("mixed"))
        self.assertEqual(code, 250, text)
        self.assertIn(b"queued as", text)
        self.assertIn(b"BCC copy ingested", text)
        self.assertEqual(len(self.synced(mid)), 1)
        self.assertEqual(len(self.received(mid)), 1)
        self.assertTrue(wait_for(lambda: self.sink_messages(mid), timeout=60))
        [(rcpts, msg)] = self.sink_messages(mid)
        self.assertEqual(sorted(rcpts), ["cc@example.test", "prospect@example.test"])
        self.assertNotIn(ACME_BCC, msg.as_string().lower())

    def test_a_sender_of_another_tenant_is_refused_and_nothing_is_lost(self):
        mid = "<bcc-stranger@example.test>"
        code, text = self.smtp(BOSS, [ACME_BCC], message("stranger", sender=BOSS))
        self.assertEqual(code, 550, text)
        self.assertIn(b"5.7.1 BCC ingestion: sender <boss@globex.example> is not a mailbox of "
                      b"tenant acme", text)
        self.assertEqual(self.synced(mid), [])
        self.assertEqual(self.received(mid), [])
        # With another recipient: that one is relayed, the skip is said and recorded.
        mid2 = "<bcc-stranger2@example.test>"
        code, text = self.smtp(BOSS, [ACME_BCC, "prospect@example.test"],
                               message("stranger2", sender=BOSS))
        self.assertEqual(code, 250, text)
        self.assertIn(b"queued as", text)
        self.assertIn(b"is not a mailbox of tenant acme; that copy was skipped", text)
        self.assertEqual(self.synced(mid2), [])
        skipped = [e for e in self.events() if e["type"] == "message.bcc_skipped"
                   and e["data"]["message_id"] == mid2]
        self.assertEqual(len(skipped), 1)
        self.assertEqual(skipped[0]["tenant"], "globex")
        self.assertEqual(skipped[0]["data"]["address"], ACME_BCC)
        self.assertEqual(skipped[0]["data"]["tenant"], "acme")
        self.assertTrue(wait_for(lambda: self.sink_messages(mid2), timeout=60))
        [(rcpts, _)] = self.sink_messages(mid2)
        self.assertEqual(rcpts, ["prospect@example.test"])
        # Its own tenant's bcc_address works for the same sender.
        code, text = self.smtp(BOSS, [GLOBEX_BCC], message("globex", sender=BOSS))
        self.assertEqual(code, 250, text)
        self.assertEqual([r[0] for r in self.synced("<bcc-globex@example.test>")], [BOSS])

    def test_the_api_ingests_the_same_way(self):
        # Raw message: the Bcc field names the address (the API takes recipients from it).
        mid = "<bcc-api-raw@example.test>"
        raw = message("api-raw").replace("Cc: Boss", f"Bcc: {ACME_BCC}\r\nCc: Boss")
        status, body = self.post(raw)
        self.assertEqual(status, 202, body)
        self.assertEqual(body["state"], "queued")
        self.assertEqual(body["recipients"], 2)  # prospect@ and cc@, not the bcc_address
        self.assertEqual(len(body["bcc"]["ingested"]), 1)
        self.assertEqual(body["bcc"]["ingested"][0]["mailbox"], REP)
        self.assertEqual(len(self.synced(mid)), 1)
        self.assertEqual(len(self.received(mid)), 1)
        self.assertTrue(wait_for(lambda: self.sink_messages(mid), timeout=60))
        [(rcpts, msg)] = self.sink_messages(mid)
        self.assertEqual(sorted(rcpts), ["cc@example.test", "prospect@example.test"])
        self.assertIsNone(msg.get("Bcc"))
        # JSON, the bcc address only: ingested, nothing queued.
        status, body = self.post(json.dumps({"from": REP, "bcc": ACME_BCC, "subject": "api only",
                                             "text": "hi", "message_id": "<bcc-api@example.test>"}),
                                 "application/json")
        self.assertEqual(status, 202, body)
        self.assertIsNone(body["id"])
        self.assertEqual(body["state"], "ingested")
        rows = self.synced("<bcc-api@example.test>")
        self.assertEqual(len(rows), 1)
        ev = self.received("<bcc-api@example.test>")
        self.assertEqual(len(ev), 1)
        self.assertEqual(ev[0]["data"]["subject"], "api only")
        self.assertEqual(ev[0]["data"]["uid"], rows[0][3])
        # An unknown sender: 422 with the same text, nothing stored.
        status, body = self.post(json.dumps({"from": BOSS, "bcc": ACME_BCC, "text": "hi",
                                             "message_id": "<bcc-api-bad@example.test>"}),
                                 "application/json")
        self.assertEqual(status, 422, body)
        self.assertEqual(body["error"]["code"], "message.bcc_unknown_sender")
        self.assertIn("sender <boss@globex.example> is not a mailbox of tenant acme",
                      body["error"]["message"])
        self.assertEqual(self.synced("<bcc-api-bad@example.test>"), [])

    def test_uids_grow_per_mailbox(self):
        uids = []
        for i in range(3):
            code, text = self.smtp(REP, [ACME_BCC], message(f"uid-{i}"))
            self.assertEqual(code, 250, text)
            [row] = self.synced(f"<bcc-uid-{i}@example.test>")
            uids.append(row[3])
        self.assertEqual(uids, [uids[0], uids[0] + 1, uids[0] + 2])


if __name__ == "__main__":
    unittest.main()
