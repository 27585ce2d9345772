"""The microsoft365 route end to end: mailgated → the Microsoft 365 stand-in (tests/fakes) for a
mailbox until its limits stop it, then the tenant's relay (smtp-sink), then back.

Every test counts messages by Message-ID at both ends: none lost, none twice.
"""
import collections
import json
import pathlib
import smtplib
import sqlite3
import sys
import time
import unittest

from mgtest import TOKEN, Mailgated, SmtpSink, Workdir, gateway_yaml, wait_for

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "fakes"))
from m365fake import M365Fake  # noqa: E402

REP = "rep1@acme.example"
ALIAS = "sales@acme.example"
PASSWORD = "app-password-for-tests-only"


def tenant_yaml(fake, recipients_per_day=50, window_seconds=86400, reserve=0,
                on_disconnect="hold", fallback="[default]", with_auth=True, max_connections=3):
    """The tenants section: one tenant, one mailbox routed to the stand-in."""
    auth = f"        auth: {{{{method: app_password, password: {PASSWORD}}}}}\n" if with_auth else ""
    return (
        "microsoft365:\n"
        # IMAP is not what these tests are about: a closed loopback port, never the real service.
        "  imap: {{host: 127.0.0.1, port: 9, tls: none}}\n"
        "  login_retry_initial: 1s\n"
        "  login_retry_max: 2s\n"
        "tenants:\n"
        "  - id: acme\n"
        f"    fallback: {fallback}\n"
        f"    priority_reserve_percent: {reserve}\n"
        f"    on_disconnect: {on_disconnect}\n"
        "    limits:\n"
        f"      recipients_per_day: {recipients_per_day}\n"
        f"      window_seconds: {window_seconds}\n"
        "      messages_per_minute: 100000\n"
        "      recipients_per_message: 1\n"
        f"      max_connections: {max_connections}\n"
        "    mailboxes:\n"
        f"      - address: {REP}\n"
        f"        aliases: [{ALIAS}]\n"
        + auth +
        "        smtp:\n"
        "          host: 127.0.0.1\n"
        f"          port: {fake.port}\n"
        "          tls: starttls\n"
        "          allow_self_signed: true\n")


def mid(tag, i):
    return f"<route-{tag}-{i}@example.test>"


def message(tag, i, sender=REP, priority=None):
    extra = f"X-Mailgate-Priority: {priority}\r\n" if priority else ""
    return (f"From: Rep <{sender}>\r\nTo: prospect{i}@example.test\r\nSubject: {tag} {i}\r\n"
            f"Message-ID: {mid(tag, i)}\r\n{extra}\r\nhello {i}\r\n")


def submit(gw, tag, ids, sender=REP, priority=None):
    with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=60) as c:
        c.login("crm", TOKEN)
        for i in ids:
            c.sendmail(sender, [f"prospect{i}@example.test"], message(tag, i, sender, priority))


def events(gw, type_prefix="route."):
    db = sqlite3.connect(f"file:{gw.data_dir / 'mailgate.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT type, mailbox, data FROM events WHERE type LIKE ? ORDER BY seq",
                          (type_prefix + "%",)).fetchall()
    finally:
        db.close()
    return [(t, m, json.loads(d)) for t, m, d in rows]


def messages(gw):
    db = sqlite3.connect(f"file:{gw.data_dir / 'mailgate.db'}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT message_id, state, route, route_pinned, last_reply, writeback "
                          "FROM messages ORDER BY created_ms").fetchall()
    finally:
        db.close()


def message_states(gw):
    db = sqlite3.connect(f"file:{gw.data_dir / 'mailgate.db'}?mode=ro", uri=True, timeout=10)
    try:
        return collections.Counter(s for (s,) in db.execute("SELECT state FROM messages"))
    finally:
        db.close()


class RouteTest(unittest.TestCase):
    def setUp(self):
        self._wd = Workdir()
        self.tmp = self._wd.__enter__()
        self.sink = SmtpSink(self.tmp)
        self.fake = M365Fake(self.tmp, {REP: {"password": PASSWORD, "aliases": [ALIAS],
                                              "recipients_per_window": 100000,
                                              "messages_per_minute": 100000}}).start()
        self.gws = []

    def tearDown(self):
        for gw in self.gws:
            gw.stop()
        self.fake.stop()
        self.sink.stop()
        self._wd.__exit__(None, None, None)

    def gateway(self, **tenant):
        yaml = gateway_yaml(self.sink.port, require_tls=False) + tenant_yaml(self.fake, **tenant)
        gw = Mailgated(self.tmp, yaml, env={"MAILGATE_TEST_TOKEN": TOKEN})
        self.gws.append(gw)
        return gw.start()

    def at_fake(self, tag):
        return [r["message_id"] for r in self.fake.accepted(REP) if f"-{tag}-" in r["message_id"]]

    def at_sink(self, tag):
        return [m for m in self.sink.message_ids() if m and f"-{tag}-" in m]

    def wait_total(self, tag, n, timeout=60):
        ok = wait_for(lambda: len(self.at_fake(tag)) + len(self.at_sink(tag)) >= n, timeout)
        return ok

    def assert_once_each(self, tag, n):
        got = self.at_fake(tag) + self.at_sink(tag)
        counts = collections.Counter(got)
        self.assertEqual(set(counts), {mid(tag, i) for i in range(n)}, "lost or unexpected")
        self.assertEqual(max(counts.values()), 1, "a message arrived twice")

    def test_budget_splits_between_microsoft_and_relay_and_survives_restart(self):
        gw = self.gateway(recipients_per_day=50)
        submit(gw, "b", range(30))
        self.assertTrue(self.wait_total("b", 30), gw.log_text()[-3000:])
        self.assertEqual(len(self.at_fake("b")), 30)
        # At most max_connections (3) sessions at once, so Microsoft 365 never said 432. (Checked
        # before the restart: the stand-in may see the old sessions end after new ones begin.)
        self.assertEqual(self.fake.mailbox_stats(REP).get("concurrency_refusals", 0), 0)
        self.assertLessEqual(self.fake.mailbox_stats(REP).get("max_concurrent", 0), 3)
        # Restart half-way: the ledger (20 recipients left) must hold.
        self.assertEqual(gw.terminate(), 0)
        gw.stop()
        gw.start()  # same configuration, same data directory
        submit(gw, "b", range(30, 120))
        self.assertTrue(self.wait_total("b", 120), gw.log_text()[-3000:])
        time.sleep(1)  # let a late duplicate show up, were there one
        self.assertEqual(len(self.at_fake("b")), 50)
        self.assertEqual(len(self.at_sink("b")), 70)
        self.assert_once_each("b", 120)
        types = [t for t, _, _ in events(gw)]
        self.assertIn("route.exhausted", types)
        self.assertIn("route.failover", types)

    def test_microsoft_quota_reply_before_the_ledger_expects_it(self):
        self.fake.set_mailbox(REP, recipients_per_window=10)
        gw = self.gateway(recipients_per_day=50)
        submit(gw, "q", range(25))
        self.assertTrue(self.wait_total("q", 25), gw.log_text()[-3000:])
        time.sleep(1)
        self.assertEqual(len(self.at_fake("q")), 10)
        self.assertEqual(len(self.at_sink("q")), 15)
        self.assert_once_each("q", 25)
        exhausted = [d for t, _, d in events(gw) if t == "route.exhausted"]
        self.assertTrue(any("SubmissionQuotaExceeded" in d.get("reason", "") for d in exhausted),
                        exhausted)

    def test_window_frees_and_mail_returns_to_microsoft(self):
        # The window is long enough that the first ten are all sent inside it even on a slow,
        # busy machine (sanitizer builds in CI).
        gw = self.gateway(recipients_per_day=5, window_seconds=10)
        started = time.monotonic()
        submit(gw, "w", range(10))
        self.assertTrue(self.wait_total("w", 10), gw.log_text()[-3000:])
        if time.monotonic() - started > 9:
            self.skipTest("the first ten took longer than the window; the split is not defined")
        self.assertEqual(len(self.at_fake("w")), 5)
        self.assertEqual(len(self.at_sink("w")), 5)
        # The window (10 s, in buckets of 1 s) frees: later mail goes through Microsoft 365 again.
        time.sleep(max(0.0, started + 12 - time.monotonic()))
        submit(gw, "w", range(10, 13))
        self.assertTrue(self.wait_total("w", 13), gw.log_text()[-3000:])
        self.assertEqual(len(self.at_fake("w")), 8)
        self.assert_once_each("w", 13)
        self.assertIn("route.failback", [t for t, _, _ in events(gw)])

    def test_personal_mail_uses_the_reserve_after_bulk_failed_over(self):
        gw = self.gateway(recipients_per_day=10, reserve=50)
        submit(gw, "p", range(8), priority="bulk")
        self.assertTrue(self.wait_total("p", 8), gw.log_text()[-3000:])
        self.assertEqual(len(self.at_fake("p")), 5)
        submit(gw, "p", range(8, 11), priority="Personal")
        self.assertTrue(self.wait_total("p", 11), gw.log_text()[-3000:])
        self.assertEqual(len(self.at_fake("p")), 8)
        self.assertEqual(len(self.at_sink("p")), 3)
        self.assert_once_each("p", 11)
        # The priority header is the gateway's own: it never leaves it.
        for f in self.sink.files():
            self.assertNotIn(b"X-Mailgate-Priority", f.read_bytes())

    def test_smtp_auth_disabled_holds_mail_with_a_hint(self):
        self.fake.set_mailbox(REP, auth="smtp_auth_disabled_tenant")
        gw = self.gateway(on_disconnect="hold")
        submit(gw, "h", range(3))
        self.assertTrue(wait_for(lambda: any(t == "route.disconnected" for t, _, _ in events(gw)),
                                 30), gw.log_text()[-3000:])
        d = [d for t, _, d in events(gw) if t == "route.disconnected"][0]
        self.assertIn("5.7.139", d["reason"])
        self.assertIn("Set-CASMailbox", d["hint"])
        time.sleep(1)
        self.assertEqual(self.at_fake("h") + self.at_sink("h"), [])
        self.assertEqual(message_states(gw).get("sent", 0), 0)
        # The admin enables SMTP AUTH: the next login probe works and the held mail goes out
        # through Microsoft 365, once each.
        self.fake.set_mailbox(REP, auth="ok")
        self.assertTrue(wait_for(lambda: len(self.at_fake("h")) == 3, 60), gw.log_text()[-3000:])
        self.assertIn("route.connected", [t for t, _, _ in events(gw)])
        time.sleep(0.5)
        self.assertEqual(self.at_sink("h"), [])
        self.assert_once_each("h", 3)
        self.assertNotIn(PASSWORD, gw.log_text())

    def test_smtp_auth_disabled_with_fallback_goes_through_the_relay(self):
        self.fake.set_mailbox(REP, auth="basic_auth_disabled")
        gw = self.gateway(on_disconnect="fallback")
        submit(gw, "f", range(3))
        self.assertTrue(wait_for(lambda: len(self.at_sink("f")) == 3, 30), gw.log_text()[-3000:])
        self.assertEqual(self.at_fake("f"), [])
        d = [d for t, _, d in events(gw) if t == "route.disconnected"][0]
        self.assertIn("OAuth2", d["hint"])
        self.assert_once_each("f", 3)

    def test_alias_accepted_foreign_from_and_unknown_sender_refused(self):
        gw = self.gateway()
        submit(gw, "a", [0], sender=ALIAS)
        self.assertTrue(wait_for(lambda: len(self.at_fake("a")) == 1, 30), gw.log_text()[-3000:])
        self.assertEqual(self.fake.accepted(REP)[-1]["mail_from"].lower(), ALIAS)
        with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=30) as c:
            c.login("crm", TOKEN)
            with self.assertRaises(smtplib.SMTPSenderRefused) as refused:
                c.sendmail("stranger@acme.example", ["p@example.test"], message("a", 1))
            self.assertEqual(refused.exception.smtp_code, 550)
            self.assertIn(b"5.7.1", refused.exception.smtp_error)
            self.assertIn(b"acme", refused.exception.smtp_error)
            foreign = message("a", 2).replace(f"From: Rep <{REP}>", "From: boss@other.example")
            with self.assertRaises(smtplib.SMTPDataError) as data:
                c.sendmail(REP, ["p@example.test"], foreign)
            self.assertEqual(data.exception.smtp_code, 550)
            self.assertIn(b"boss@other.example", data.exception.smtp_error)
            # Two From fields, both the mailbox's: still refused (RFC 5322 allows one).
            twice = message("a", 3).replace(f"From: Rep <{REP}>",
                                            f"From: Rep <{REP}>\r\nFrom: {ALIAS}")
            with self.assertRaises(smtplib.SMTPDataError) as data:
                c.sendmail(REP, ["p@example.test"], twice)
            self.assertEqual(data.exception.smtp_code, 554)
            self.assertIn(b"more than one From", data.exception.smtp_error)
        time.sleep(0.5)
        self.assertEqual(len(self.at_fake("a")) + len(self.at_sink("a")), 1)
        self.assertEqual(sum(message_states(gw).values()), 1)  # nothing else was queued

    def test_from_that_would_be_read_short_is_refused_and_not_queued(self):
        # GMime alone read each of these From fields as rep1@acme.example, the envelope sender's
        # own mailbox, so the From check passed while a mail reader could show another address.
        gw = self.gateway()
        spoofs = [
            (b"From: rep1@acme.example\x7f.evil.example", b"holds a control character"),
            (b"From: rep1@acme.example\x01.evil.example", b"holds a control character"),
            (b"From: rep1@acme.example.", b"not an address list"),
            (b"From: Evil Corp, rep1@acme.example", b"not an address list"),
            (b"From: a@[x] (y", b"unclosed quote, comment or domain literal"),
            (b"From: R\xc3\xa9p <rep1@acme.example>", b"8BITMIME or SMTPUTF8"),
        ]
        with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=30) as c:
            c.login("crm", TOKEN)
            for i, (from_line, reason) in enumerate(spoofs):
                with self.subTest(from_line=from_line):
                    data = message("s", i).encode().replace(f"From: Rep <{REP}>".encode(),
                                                             from_line)
                    with self.assertRaises(smtplib.SMTPDataError) as refused:
                        c.sendmail(REP, [f"prospect{i}@example.test"], data)
                    self.assertEqual(refused.exception.smtp_code, 554)
                    self.assertIn(b"5.6.0 the From field", refused.exception.smtp_error)
                    self.assertIn(reason, refused.exception.smtp_error)
                    self.assertTrue(all(32 <= b < 127 for b in refused.exception.smtp_error))
            # The same session goes on; a UTF-8 display name is fine with BODY=8BITMIME.
            n = len(spoofs)
            eight_bit = message("s", n).encode().replace(f"From: Rep <{REP}>".encode(),
                                                         b"From: R\xc3\xa9p <rep1@acme.example>")
            c.sendmail(REP, [f"prospect{n}@example.test"], eight_bit,
                       mail_options=["BODY=8BITMIME"])
        self.assertTrue(wait_for(lambda: len(self.at_fake("s")) + len(self.at_sink("s")) == 1, 30),
                        gw.log_text()[-3000:])
        self.assertEqual(self.at_fake("s") + self.at_sink("s"), [mid("s", len(spoofs))])
        time.sleep(0.5)
        self.assertEqual(len(self.at_fake("s")) + len(self.at_sink("s")), 1)
        self.assertEqual(sum(message_states(gw).values()), 1)  # none of the spoofs was queued
        self.assertEqual(gw.log_text().count("message refused: 554 5.6.0 the From field"),
                         len(spoofs))

    def test_uncertain_outcome_stays_on_its_route(self):
        # Microsoft 365 takes the first message but the connection is cut before its 250. The
        # ledger (1 recipient per 4 s) is then spent, which would send any other message to the
        # relay: this one is pinned to Microsoft 365 and waits for it instead.
        self.fake.set_mailbox(REP, drop_after_data=1)
        gw = self.gateway(recipients_per_day=1, window_seconds=4)
        submit(gw, "u", [0])
        self.assertTrue(wait_for(lambda: len(self.at_fake("u")) == 2, 60), gw.log_text()[-3000:])
        self.assertTrue(wait_for(lambda: messages(gw)[0][1] == "sent", 30))
        self.assertEqual(self.at_sink("u"), [])
        _, state, route, pinned, _, writeback = messages(gw)[0]
        self.assertEqual((state, route, pinned, writeback), ("sent", "microsoft365", 1, ""))
        uncertain = events(gw, "message.uncertain")
        self.assertEqual(len(uncertain), 1, uncertain)
        self.assertEqual(uncertain[0][2]["route"], "microsoft365")

    def test_concurrency_replies_shrink_the_pool_and_lose_nothing(self):
        self.fake.set_mailbox(REP, max_connections=1)
        # A backlog makes the mailbox's pool open all 3 of its connections (one per 4 waiting
        # messages): Microsoft 365 is down while the 20 messages arrive, then comes back.
        self.fake.stop()
        gw = self.gateway(recipients_per_day=1000, max_connections=3)
        submit(gw, "c", range(20))
        self.assertTrue(wait_for(lambda: "cannot deliver" in gw.log_text(), 30),
                        gw.log_text()[-3000:])
        self.fake.start()
        self.assertTrue(wait_for(lambda: len(self.at_fake("c")) == 20, 90), gw.log_text()[-3000:])
        time.sleep(1)
        self.assertEqual(self.at_sink("c"), [])
        self.assert_once_each("c", 20)
        throttled = [d for t, _, d in events(gw) if t == "route.throttled"]
        self.assertTrue(throttled, "no concurrency reply was seen; the test proves nothing")
        self.assertIn("432 4.3.2", throttled[0]["reply"])

    def test_send_as_denied_fails_the_message_with_a_hint(self):
        # mailgate lets the alias send, Microsoft 365 does not know it: 550 5.7.60.
        self.fake.set_mailbox(REP, aliases=[])
        gw = self.gateway()
        submit(gw, "s", [0], sender=ALIAS)
        self.assertTrue(wait_for(lambda: messages(gw) and messages(gw)[0][1] == "failed", 30),
                        gw.log_text()[-3000:])
        last_reply = messages(gw)[0][4]
        self.assertIn("5.7.60", last_reply)
        self.assertIn("alias", last_reply.lower())
        self.assertEqual(self.at_fake("s") + self.at_sink("s"), [])

    def test_relay_sent_mail_is_marked_for_sent_folder_write_back(self):
        gw = self.gateway(recipients_per_day=1)
        submit(gw, "r", range(2))
        self.assertTrue(self.wait_total("r", 2), gw.log_text()[-3000:])
        self.assertTrue(wait_for(lambda: [m[1] for m in messages(gw)] == ["sent", "sent"], 30))
        by_route = {m[2]: m[5] for m in messages(gw)}
        self.assertEqual(by_route, {"microsoft365": "", "default": "pending"})


if __name__ == "__main__":
    unittest.main()
