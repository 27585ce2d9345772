"""Webhook delivery end to end (docs/webhooks.md): mailgated with two tenants whose mail goes to
Postfix's smtp-sink, webhooks[] pointing at tests/fakes/webhook_receiver.py (a standard-library
HTTP server in this process). What the receiver got is compared with what GET /v1/events serves
from the same outbox; nothing is assumed about timing beyond waiting for it (mgtest.wait_for)."""
import json
import pathlib
import signal
import smtplib
import sqlite3
import subprocess
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "fakes"))

from mgtest import TOKEN, Mailgated, SmtpSink, Workdir, free_port, wait_for  # noqa: E402
from webhook_receiver import WebhookReceiver  # noqa: E402

REP = "rep1@acme.example"
BOSS = "boss@globex.example"
READER = "reader-secret-value"


def hook_yaml(url, secret, events=None, tenants=None):
    out = f"  - url: {url}\n    secret: {secret}\n"
    if events is not None:
        out += "    events: [" + ", ".join(f'"{e}"' for e in events) + "]\n"
    if tenants is not None:
        out += "    tenants: [" + ", ".join(f'"{t}"' for t in tenants) + "]\n"
    return out


def config_yaml(sink_port, hooks):
    return (
        "node: {{id: webhooks.test, data_dir: {data_dir}}}\n"
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
        "    mailboxes:\n"
        f"      - address: {REP}\n"
        "  - id: globex\n"
        "    fallback: [default]\n"
        "    on_disconnect: fallback\n"
        "    mailboxes:\n"
        f"      - address: {BOSS}\n"
        "queue:\n"
        "  retry_initial: 1s\n"
        "  retry_max: 2s\n"
        + ("webhooks:\n" + "".join(hooks) if hooks else "")).replace("{{{{", "{{")


def message(tag, sender=REP):
    return (f"From: <{sender}>\r\nTo: prospect@example.test\r\nSubject: webhook {tag}\r\n"
            f"Message-ID: <wh-{tag}@example.test>\r\n\r\nhello {tag}\r\n")


class WebhookTest(unittest.TestCase):
    def setUp(self):
        self._wd = Workdir()
        self.tmp = self._wd.__enter__()
        self.sink = SmtpSink(self.tmp)
        self.receivers = []
        self.gw = None

    def tearDown(self):
        if self.gw:
            self.gw.stop()
        for rx in self.receivers:
            rx.stop()
        self.sink.stop()
        self._wd.__exit__(None, None, None)

    # --- helpers ---------------------------------------------------------------------------

    def receiver(self, secret):
        rx = WebhookReceiver(secret).start()
        self.receivers.append(rx)
        return rx

    def start(self, hooks):
        self.gw = Mailgated(self.tmp, config_yaml(self.sink.port, hooks),
                            env={"MAILGATE_TEST_TOKEN": TOKEN}).start()
        self.base = f"http://127.0.0.1:{self.gw.api_port}"
        return self.gw

    def submit(self, tag, sender=REP):
        with smtplib.SMTP("127.0.0.1", self.gw.smtp_port, timeout=30) as c:
            c.login("crm", TOKEN)
            refused = c.sendmail(sender, ["prospect@example.test"], message(tag, sender))
            self.assertEqual(refused, {})

    def feed(self, with_seq=False):
        """Every event of the outbox, as GET /v1/events serves it; with_seq: (seq, event)."""
        r = subprocess.run(["curl", "-s", "--max-time", "20", "-N", "-H",
                            f"Authorization: Bearer {READER}",
                            self.base + "/v1/events?after=0&follow=false"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        out, seq = [], None
        for line in r.stdout.splitlines():
            if line.startswith("id: "):
                seq = int(line[4:])
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                out.append((seq, event) if with_seq else event)
        return out

    def cursor(self, url):
        db = sqlite3.connect(f"file:{self.gw.data_dir / 'mailgate.db'}?mode=ro", uri=True,
                             timeout=10)
        try:
            row = db.execute("SELECT seq FROM webhook_cursors WHERE webhook = ?",
                             (url,)).fetchone()
        finally:
            db.close()
        return row[0] if row else None

    def metrics(self):
        r = subprocess.run(["curl", "-s", "--max-time", "20", "-H",
                            f"Authorization: Bearer {READER}", self.base + "/metrics"],
                           capture_output=True, text=True, timeout=30)
        return r.stdout

    def sent_ids(self, tags):
        """Wait until every message `tags` names has its message.sent event; the feed then."""
        want = {f"<wh-{t}@example.test>" for t in tags}

        def done():
            events = self.feed()
            sent = {e["data"].get("message_id") for e in events if e["type"] == "message.sent"}
            return events if want <= sent else None
        events = wait_for(done, timeout=60, interval=0.2)
        self.assertTrue(events, f"not every message was sent: {tags}\n{self.gw.log_text()[-3000:]}")
        return events

    def wait_acknowledged(self, rx, ids, timeout=120):
        ok = wait_for(lambda: set(ids) <= set(rx.acknowledged_ids()), timeout=timeout,
                      interval=0.1)
        missing = set(ids) - set(rx.acknowledged_ids())
        self.assertTrue(ok, f"{len(missing)} event(s) never acknowledged: {sorted(missing)[:5]}"
                            f"\n{self.gw.log_text()[-3000:]}")

    def assert_exactly_once(self, rx):
        ids = [r.event_id for r in rx.requests()]
        dupes = {i for i in ids if ids.count(i) > 1}
        self.assertFalse(dupes, f"delivered more than once: {sorted(dupes)[:5]}")

    # --- tests -----------------------------------------------------------------------------

    def test_events_arrive_signed_once_each_with_their_headers(self):
        rx = self.receiver("whsec-one")
        self.start([hook_yaml(rx.url, "whsec-one")])
        for i in range(5):
            self.submit(f"a{i}")
        events = self.sent_ids([f"a{i}" for i in range(5)])
        self.wait_acknowledged(rx, [e["id"] for e in events])
        self.assert_exactly_once(rx)
        by_id = {e["id"]: e for e in self.feed()}
        types = set()
        for r in rx.requests():
            self.assertTrue(r.valid, f"bad signature on {r.event_id}")
            self.assertEqual(r.method, "POST")
            self.assertEqual(r.path, "/hook")
            self.assertEqual(r.headers.get("content-type"), "application/json")
            self.assertTrue(r.headers.get("user-agent", "").startswith("mailgate/"), r.headers)
            self.assertEqual(r.headers.get("x-mailgate-event"), r.json["type"])
            self.assertEqual(r.headers.get("x-mailgate-event-id"), r.json["id"])
            # The body is the feed's envelope, field for field.
            self.assertEqual(r.json, by_id[r.event_id])
            self.assertEqual(set(r.json), {"id", "type", "time", "tenant", "mailbox", "data"})
            types.add(r.json["type"])
        self.assertIn("message.queued", types)
        self.assertIn("message.sent", types)
        # /metrics counts what the endpoint acknowledged.
        line = f'mailgate_webhook_delivered_total{{url="{rx.url}"}} {len(rx.requests())}'
        self.assertTrue(wait_for(lambda: line in self.metrics()), self.metrics())
        self.assertIn(f'mailgate_webhook_backlog{{url="{rx.url}"}} 0', self.metrics())

    def test_at_most_eight_requests_are_open_per_endpoint(self):
        rx = self.receiver("whsec-window")
        rx.set_delay(0.3)
        self.start([hook_yaml(rx.url, "whsec-window")])
        tags = [f"w{i}" for i in range(10)]
        for t in tags:
            self.submit(t)
        events = self.sent_ids(tags)
        self.assertGreater(len(events), 16)
        self.wait_acknowledged(rx, [e["id"] for e in events])
        self.assertLessEqual(rx.max_concurrent, 8)
        self.assertGreater(rx.max_concurrent, 1, "requests were not sent side by side")
        self.assert_exactly_once(rx)

    def test_the_cursor_stops_below_the_oldest_unacknowledged_event(self):
        rx = self.receiver("whsec-cursor")
        rx.set_failing_types({"message.sending"})
        self.start([hook_yaml(rx.url, "whsec-cursor")])
        tags = ["g0", "g1"]
        for t in tags:
            self.submit(t)
        self.sent_ids(tags)
        events = self.feed(with_seq=True)
        sent = [e["id"] for _, e in events if e["type"] == "message.sent"]
        # Later events get through while the earlier message.sending ones are being retried...
        self.wait_acknowledged(rx, sent)
        first_failing = min(s for s, e in events if e["type"] == "message.sending")
        self.assertFalse(set(rx.acknowledged_ids()) & {e["id"] for _, e in events
                                                        if e["type"] == "message.sending"})
        # ...but the stored cursor stays just below the oldest of those.
        self.assertTrue(wait_for(lambda: self.cursor(rx.url) == first_failing - 1),
                        (self.cursor(rx.url), first_failing))
        rx.set_failing_types(())
        self.wait_acknowledged(rx, [e["id"] for _, e in events])
        last = max(s for s, _ in self.feed(with_seq=True))
        self.assertTrue(wait_for(lambda: (self.cursor(rx.url) or 0) >= last),
                        (self.cursor(rx.url), last))
        acked = rx.acknowledged_ids()
        self.assertEqual(len(acked), len(set(acked)))

    def test_a_crash_loses_nothing(self):
        rx = self.receiver("whsec-crash")
        rx.set_delay(0.2)
        self.start([hook_yaml(rx.url, "whsec-crash")])
        for i in range(4):
            self.submit(f"k{i}")
        self.sent_ids([f"k{i}" for i in range(4)])
        self.gw.kill9()  # with requests in flight and cursor writes pending
        rx.set_delay(0)
        self.gw.log.close()
        self.gw.start()
        for i in range(4, 6):
            self.submit(f"k{i}")
        events = self.sent_ids([f"k{i}" for i in range(6)])
        # At-least-once: every event, some perhaps twice.
        self.wait_acknowledged(rx, [e["id"] for e in events])
        ids = rx.acknowledged_ids()
        print(f"\n  kill -9: {len(events)} events, {len(ids) - len(set(ids))} acknowledged twice",
              file=sys.stderr)

    def test_an_endpoint_that_fails_then_is_down_gets_every_event_once_back(self):
        rx = self.receiver("whsec-two")
        rx.set_status(503)
        self.start([hook_yaml(rx.url, "whsec-two")])
        for i in range(3):
            self.submit(f"b{i}")
        self.sent_ids([f"b{i}" for i in range(3)])
        self.assertTrue(wait_for(lambda: len(rx.requests()) >= 3, timeout=30))
        self.assertFalse(rx.acknowledged())
        rx.stop()  # now nothing listens at all
        for i in range(3, 6):
            self.submit(f"b{i}")
        self.sent_ids([f"b{i}" for i in range(6)])
        self.assertTrue(wait_for(lambda: "http.connect" in self.gw.log_text(), timeout=60),
                        "no attempt met the closed port")
        rx.set_status(200)
        rx.start()
        events = self.feed()
        self.wait_acknowledged(rx, [e["id"] for e in events])
        acked = rx.acknowledged_ids()
        self.assertEqual(len(acked), len(set(acked)), "an acknowledged event came again")
        self.assertTrue(all(r.valid for r in rx.requests()))

    def test_a_dead_endpoint_does_not_hold_up_a_live_one(self):
        live = self.receiver("whsec-live")
        failing = self.receiver("whsec-failing")
        failing.set_status(500)
        closed = f"http://127.0.0.1:{free_port()}/nobody"
        self.start([hook_yaml(closed, "whsec-closed"), hook_yaml(failing.url, "whsec-failing"),
                    hook_yaml(live.url, "whsec-live")])
        tags = [f"c{i}" for i in range(12)]  # more events than one window
        for t in tags:
            self.submit(t)
        events = self.sent_ids(tags)
        self.wait_acknowledged(live, [e["id"] for e in events], timeout=30)
        self.assert_exactly_once(live)
        self.assertTrue(failing.requests())
        self.assertFalse(failing.acknowledged())

    def test_events_and_tenants_filters(self):
        sent_only = self.receiver("whsec-sent")
        globex = self.receiver("whsec-globex")
        wrong_key = self.receiver("not-the-configured-secret")
        self.start([hook_yaml(sent_only.url, "whsec-sent", events=["message.sent"]),
                    hook_yaml(globex.url, "whsec-globex", tenants=["globex"]),
                    hook_yaml(wrong_key.url, "whsec-other", events=["message.queued"])])
        tags = ["d-acme-0", "d-acme-1"]
        for t in tags:
            self.submit(t)
        gtags = ["d-globex-0", "d-globex-1"]
        for t in gtags:
            self.submit(t, sender=BOSS)
        events = self.sent_ids(tags + gtags)
        want_sent = [e["id"] for e in events if e["type"] == "message.sent"]
        want_globex = [e["id"] for e in events if e["tenant"] == "globex"]
        want_queued = [e["id"] for e in events if e["type"] == "message.queued"]
        self.assertEqual(len(want_sent), 4)
        self.assertTrue(want_globex)
        self.wait_acknowledged(sent_only, want_sent)
        self.wait_acknowledged(globex, want_globex)
        self.wait_acknowledged(wrong_key, want_queued)
        self.assertEqual(sorted(sent_only.acknowledged_ids()), sorted(want_sent))
        self.assertTrue(all(r.json["type"] == "message.sent" for r in sent_only.requests()))
        self.assertTrue(all(r.json["tenant"] == "globex" for r in globex.requests()))
        self.assertEqual(sorted(globex.acknowledged_ids()), sorted(want_globex))
        # The receiver checks with another key than the one configured: every signature fails.
        self.assertTrue(wrong_key.requests())
        self.assertFalse(any(r.valid for r in wrong_key.requests()))
        self.assertTrue(all(r.valid for r in sent_only.requests() + globex.requests()))

    def test_a_restart_does_not_redeliver_what_was_acknowledged(self):
        rx = self.receiver("whsec-restart")
        self.start([hook_yaml(rx.url, "whsec-restart")])
        for i in range(4):
            self.submit(f"e{i}")
        events = self.sent_ids([f"e{i}" for i in range(4)])
        self.wait_acknowledged(rx, [e["id"] for e in events])
        self.assertEqual(self.gw.terminate(), 0)
        before = len(rx.requests())
        acked_before = set(rx.acknowledged_ids())
        db = sqlite3.connect(f"file:{self.gw.data_dir / 'mailgate.db'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT webhook, seq FROM webhook_cursors").fetchall()
        finally:
            db.close()
        self.assertEqual([w for w, _ in rows], [rx.url])
        self.gw.log.close()
        self.gw.start()
        self.assertTrue(wait_for(lambda: "resumes at event seq" in self.gw.log_text()))
        for i in range(4, 6):
            self.submit(f"e{i}")
        events = self.sent_ids([f"e{i}" for i in range(6)])
        self.wait_acknowledged(rx, [e["id"] for e in events])
        after = [r.event_id for r in rx.requests()[before:]]
        again = acked_before & set(after)
        self.assertFalse(again, f"redelivered after the restart: {sorted(again)[:5]}")
        self.assert_exactly_once(rx)

    def test_sigterm_sends_the_events_of_the_drain_but_does_not_wait_for_a_dead_endpoint(self):
        self.sink.stop()
        self.sink = SmtpSink(self.tmp, extra_args=["-w", "3"])  # a delivery still in flight
        live = self.receiver("whsec-live")
        dead = self.receiver("whsec-dead")
        dead.set_status(503)
        self.start([hook_yaml(dead.url, "whsec-dead"), hook_yaml(live.url, "whsec-live")])
        self.submit("t0")

        def queued():
            return [r for r in live.acknowledged() if r.json["type"] == "message.queued"]
        self.assertTrue(wait_for(queued, timeout=30))
        self.assertTrue(wait_for(dead.requests, timeout=30))
        self.assertEqual(self.gw.terminate(60), 0)
        sent = [r for r in live.acknowledged() if r.json["type"] == "message.sent"
                and r.json["data"].get("message_id") == "<wh-t0@example.test>"]
        self.assertEqual(len(sent), 1, self.gw.log_text()[-3000:])
        # It stopped because every endpoint was caught up or failing, not at the grace period.
        self.assertIn("webhooks drained: every webhook caught up or is failing",
                      self.gw.log_text())
        self.assertFalse(dead.acknowledged())

    def test_reload_adds_a_hook_at_now_and_keeps_the_others(self):
        old = self.receiver("whsec-old")
        self.start([hook_yaml(old.url, "whsec-old")])
        self.submit("f0")
        first = self.sent_ids(["f0"])
        self.wait_acknowledged(old, [e["id"] for e in first])
        new = self.receiver("whsec-new")
        text = config_yaml(self.sink.port, [hook_yaml(old.url, "whsec-old"),
                                            hook_yaml(new.url, "whsec-new")])
        self.gw.config_path.write_text(text.format(
            data_dir=self.gw.data_dir, smtp_port=self.gw.smtp_port, api_port=self.gw.api_port,
            workdir=self.gw.workdir))
        self.gw.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: f"webhook {new.url}: starts" in self.gw.log_text()))
        self.submit("f1")
        events = self.sent_ids(["f0", "f1"])
        f1 = [e["id"] for e in events if e["id"] not in {x["id"] for x in first}]
        self.wait_acknowledged(new, f1)
        self.wait_acknowledged(old, [e["id"] for e in events])
        self.assertFalse({e["id"] for e in first} & set(new.acknowledged_ids()),
                         "a new hook got history from before it was configured")
        self.assert_exactly_once(old)
        self.assert_exactly_once(new)

    def reload(self, hooks, expect):
        text = config_yaml(self.sink.port, hooks)
        self.gw.config_path.write_text(text.format(
            data_dir=self.gw.data_dir, smtp_port=self.gw.smtp_port, api_port=self.gw.api_port,
            workdir=self.gw.workdir))
        self.gw.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: self.gw.log_text().count(expect) >= 1),
                        self.gw.log_text()[-2000:])

    def test_a_hook_removed_and_configured_again_resumes_where_it_stopped(self):
        keep = self.receiver("whsec-keep")
        away = self.receiver("whsec-away")
        both = [hook_yaml(keep.url, "whsec-keep"), hook_yaml(away.url, "whsec-away")]
        self.start(both)
        self.submit("h0")
        first = self.sent_ids(["h0"])
        self.wait_acknowledged(away, [e["id"] for e in first])
        self.reload([hook_yaml(keep.url, "whsec-keep")], f"webhook {away.url}: removed")
        self.submit("h1")
        events = self.sent_ids(["h0", "h1"])
        self.wait_acknowledged(keep, [e["id"] for e in events])
        self.assertEqual(len(away.requests()), len(first), "a removed hook was still sent to")
        self.reload(both, f"webhook {away.url}: resumes")
        # What happened while it was gone comes now, and what it had does not come again.
        self.wait_acknowledged(away, [e["id"] for e in events])
        self.assert_exactly_once(away)
        self.assert_exactly_once(keep)


if __name__ == "__main__":
    unittest.main()
