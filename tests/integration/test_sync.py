"""Mailbox sync (imap/sync_engine) against real Dovecot, seen through mailgated's API and the
events outbox (GET /v1/events), and the synced_messages table.

- Backfill: INBOX and "Sent Items" reach the CRM as one message.received each, newest first,
  with progress shown on GET /v1/mailboxes/{address}; then new mail arrives through IDLE.
- Restart in the middle of the backfill: every message is emitted exactly once in all.
- UIDVALIDITY reset: mailbox.reset, and the folder is synced again under the new UIDVALIDITY.
- Modes: one_way and none sync nothing from the mailbox.
"""
import json
import pathlib
import sqlite3
import sys
import unittest
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mgtest  # noqa: E402
from dovecot import Dovecot  # noqa: E402

USER = "rep1@acme.example"
PASSWORD = "app-password-for-tests"


def api_get(gw, path):
    request = urllib.request.Request(f"http://127.0.0.1:{gw.api_port}{path}",
                                     headers={"Authorization": f"Bearer {mgtest.TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def events(gw, types="message.received,mailbox.reset,sync.progress"):
    """Every stored event of those types, oldest first (the SSE stream with follow=false)."""
    body = api_get(gw, f"/v1/events?after=0&follow=false&types={types}").decode()
    out = []
    for block in body.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                out.append(json.loads(line[len("data: "):]))
    return out


def raw_message(i, folder="in"):
    return (f"From: Prospect {i} <prospect{i}@example.test>\r\n"
            f"To: {USER}\r\n"
            f"Subject: {folder} message {i}\r\n"
            f"Date: Thu, 03 Dec 2026 10:{i // 60 % 60:02d}:{i % 60:02d} +0000\r\n"
            f"Message-ID: <{folder}-{i}@sync.test>\r\n"
            "\r\n"
            f"Body of message {i}.\r\n").encode()


def mailbox_yaml(port, sync="two_way"):
    return (f"      - address: {USER}\n"
            "        access: custom\n"
            f"        auth: {{method: app_password, password: \"{PASSWORD}\"}}\n"
            f"        imap: {{host: 127.0.0.1, port: {port}, tls: implicit,"
            " allow_self_signed: true, sync_folders: [Archive, Missing]}\n"
            "        smtp: {host: 127.0.0.1, port: 9, tls: none}\n"
            f"        sync: {sync}\n")


def gateway_config(sink_port, mailboxes):
    tenants = "tenants:\n  - id: acme\n    fallback: [default]\n    mailboxes:\n" + "".join(
        mailboxes)
    return (mgtest.gateway_yaml(sink_port, token_roles="[admin]")
            + tenants.replace("{", "{{").replace("}", "}}"))


class SyncTest(unittest.TestCase):
    """Dovecot with its full capabilities: CONDSTORE, so flag changes come from CHANGEDSINCE."""
    capabilities = "full"

    def setUp(self):
        self.work_cm = mgtest.Workdir()
        self.work = self.work_cm.__enter__()
        self.addCleanup(self.work_cm.__exit__, None, None, None)
        self.sink = mgtest.SmtpSink(self.work, dump=False)
        self.addCleanup(self.sink.stop)
        self.dc = Dovecot(self.work, users={USER: PASSWORD},
                          capabilities=self.capabilities).start()
        self.addCleanup(self.dc.stop)

    def gateway(self, sync="two_way", name="gw"):
        gw = mgtest.Mailgated(self.work, gateway_config(self.sink.port,
                                                        [mailbox_yaml(self.dc.imaps_port, sync)]),
                              env={"MAILGATE_TEST_TOKEN": mgtest.TOKEN}, name=name).start()
        self.addCleanup(gw.stop)
        mgtest.wait_port("127.0.0.1", gw.api_port, proc=gw.proc)
        return gw

    def progress(self, gw):
        return json.loads(api_get(gw, f"/v1/mailboxes/{USER}"))["sync_progress"]

    def wait_received(self, gw, count, timeout=60):
        seen = {}

        def check():
            seen["ev"] = [e for e in events(gw, "message.received")]
            return len(seen["ev"]) >= count
        ok = mgtest.wait_for(check, timeout=timeout, interval=0.3)
        self.assertTrue(ok, f"{len(seen.get('ev', []))} of {count}\n{gw.log_text()[-3000:]}")
        return seen["ev"]

    def synced_rows(self, gw):
        db = sqlite3.connect(f"file:{gw.data_dir}/mailgate.db?mode=ro", uri=True)
        try:
            return db.execute("SELECT folder, uid, message_id FROM synced_messages").fetchall()
        finally:
            db.close()

    def test_backfill_newest_first_then_new_mail_through_idle(self):
        for i in range(40):
            self.dc.deliver(USER, raw_message(i, "in"))
        for i in range(7):
            self.dc.deliver(USER, raw_message(i, "sent"), folder="Sent Items")
        self.dc.doveadm("mailbox", "create", "-u", USER, "Archive")
        for i in range(3):
            self.dc.deliver(USER, raw_message(i, "archive"), folder="Archive")
        gw = self.gateway()
        received = self.wait_received(gw, 50)
        archived = [e["data"] for e in received if e["data"]["folder_role"] == "Archive"]
        self.assertEqual(sorted(d["message_id"] for d in archived),
                         [f"<archive-{i}@sync.test>" for i in range(3)])
        self.assertEqual({d["direction"] for d in archived}, {"incoming"})
        received = [e for e in received if e["data"]["folder_role"] != "Archive"]
        ids = [e["data"]["message_id"] for e in received]
        self.assertEqual(len(ids), len(set(ids)), "a message was emitted twice")
        self.assertEqual(set(ids), {f"<in-{i}@sync.test>" for i in range(40)}
                         | {f"<sent-{i}@sync.test>" for i in range(7)})
        inbox = [e["data"] for e in received if e["data"]["folder_role"] == "inbox"]
        self.assertEqual([d["uid"] for d in inbox], sorted((d["uid"] for d in inbox),
                                                           reverse=True),
                         "the backfill goes newest first")
        first = inbox[0]
        self.assertEqual(first["folder"], "INBOX")
        self.assertEqual(first["direction"], "incoming")
        self.assertEqual(first["from"], "prospect39@example.test")
        self.assertEqual(first["to"], [USER])
        self.assertEqual(first["subject"], "in message 39")
        sent = [e for e in received if e["data"]["folder_role"] == "sent"]
        self.assertEqual({e["data"]["folder"] for e in sent}, {"Sent Items"})
        self.assertEqual({e["data"]["direction"] for e in sent}, {"outgoing"})
        self.assertEqual({(e["tenant"], e["mailbox"]) for e in received}, {("acme", USER)})

        def live():
            p = self.progress(gw)
            return p["phase"] == "live" and all(f["backfill_done"] for f in p["folders"])
        self.assertTrue(mgtest.wait_for(live, timeout=30), self.progress(gw))
        p = self.progress(gw)
        by_role = {f["role"]: f for f in p["folders"]}
        self.assertEqual((by_role["inbox"]["done"], by_role["inbox"]["total"]), (40, 40))
        self.assertEqual((by_role["sent"]["done"], by_role["sent"]["total"]), (7, 7))
        self.assertEqual(by_role["inbox"]["percent"], 100)
        done_events = [e for e in events(gw, "sync.progress") if e["data"]["backfill_done"]]
        self.assertEqual({e["data"]["folder_role"] for e in done_events}, {"inbox", "sent", "Archive"})

        # New mail: the IDLE session's push wakes the engine.
        self.dc.deliver(USER, raw_message(100, "in"))
        received = self.wait_received(gw, 51, timeout=20)
        self.assertEqual(received[-1]["data"]["message_id"], "<in-100@sync.test>")
        self.assertEqual(len(self.synced_rows(gw)), 51)
        # The raw text is stored byte for byte.
        db = sqlite3.connect(f"file:{gw.data_dir}/mailgate.db?mode=ro", uri=True)
        raw = db.execute("SELECT raw FROM synced_messages WHERE message_id = ?",
                         ("<in-100@sync.test>",)).fetchone()[0]
        db.close()
        self.assertEqual(bytes(raw), raw_message(100, "in"))

    def flag_change_is_reported(self, gw):
        received = self.wait_received(gw, 5)
        uid = next(e["data"]["uid"] for e in received
                   if e["data"]["message_id"] == "<in-2@sync.test>")
        self.assertTrue(mgtest.wait_for(lambda: self.progress(gw)["phase"] == "live", timeout=30))
        self.dc.doveadm("flags", "add", "-u", USER, "\\Flagged \\Seen", "mailbox", "INBOX",
                        "uid", str(uid))
        updated = {}

        def check():
            updated["ev"] = events(gw, "message.updated")
            return len(updated["ev"]) >= 1
        self.assertTrue(mgtest.wait_for(check, timeout=30, interval=0.3), gw.log_text()[-3000:])
        data = updated["ev"][0]["data"]
        self.assertEqual(data["message_id"], "<in-2@sync.test>")
        self.assertEqual(data["uid"], uid)
        self.assertEqual(sorted(data["flags"]), ["\\Flagged", "\\Seen"])
        self.assertEqual(data["previous_flags"], [])
        self.assertEqual(len(updated["ev"]), 1, "one change, one event")

    def test_flag_changes(self):
        for i in range(5):
            self.dc.deliver(USER, raw_message(i, "in"))
        self.flag_change_is_reported(self.gateway())

    def test_one_way_and_none_sync_nothing_from_the_mailbox(self):
        for i in range(3):
            self.dc.deliver(USER, raw_message(i, "in"))
        for mode in ("one_way", "none"):
            gw = self.gateway(sync=mode, name=f"gw-{mode}")
            self.assertIsNone(self.progress(gw))
            # The pool is up (write-back still needs it), but nothing is fetched.
            self.assertTrue(mgtest.wait_for(
                lambda: json.loads(api_get(gw, f"/v1/mailboxes/{USER}"))["imap"]["state"]
                == "connected", timeout=30))
            self.assertEqual(events(gw, "message.received"), [])
            gw.stop()


    def test_uidvalidity_reset_syncs_the_folder_again(self):
        self.dc.fill(USER, "INBOX", 30, seed=1)
        gw = self.gateway()
        first = self.wait_received(gw, 30)
        old = {e["data"]["uidvalidity"] for e in first if e["data"]["folder_role"] == "inbox"}
        self.assertEqual(len(old), 1)
        self.assertTrue(mgtest.wait_for(lambda: self.progress(gw)["phase"] == "live", timeout=30))
        was, now = self.dc.reset_uidvalidity(USER, "INBOX")
        self.assertEqual(old, {was})
        # New mail wakes the engine at once (without it, the periodic check finds the change).
        self.dc.fill(USER, "INBOX", 1, seed=1, start=30)
        received = self.wait_received(gw, 30 + 31)
        resets = events(gw, "mailbox.reset")
        self.assertEqual(len(resets), 1, resets)
        data = resets[0]["data"]
        self.assertEqual((data["folder"], data["folder_role"], data["old_uidvalidity"],
                          data["uidvalidity"]), ("INBOX", "inbox", was, now))
        again = [e["data"] for e in received[30:]]
        self.assertEqual({d["uidvalidity"] for d in again}, {now})
        self.assertEqual(sorted(d["message_id"] for d in again),
                         sorted(f"<fill-1-{i}@fill.test>" for i in range(31)))
        # The rows of the old UIDVALIDITY stay; the folder's progress starts over and completes.
        self.assertEqual(len(self.synced_rows(gw)), 61)
        self.assertTrue(mgtest.wait_for(lambda: self.progress(gw)["phase"] == "live", timeout=30))
        inbox = next(f for f in self.progress(gw)["folders"] if f["role"] == "inbox")
        self.assertEqual((inbox["uidvalidity"], inbox["done"], inbox["total"]), (now, 31, 31))

    def test_restart_in_the_middle_of_the_backfill_emits_each_message_once(self):
        ids = set(self.dc.fill(USER, "INBOX", 3000, size=4096, seed=2))
        ids |= set(self.dc.fill(USER, "Sent Items", 500, size=4096, seed=3))
        gw = self.gateway()
        # Stopped with a part of the backfill stored: SIGKILL, the harshest stop.
        self.assertTrue(mgtest.wait_for(lambda: 250 <= len(self.synced_rows(gw)), timeout=60,
                                        interval=0.05), gw.log_text()[-3000:])
        gw.kill9()
        before = len(self.synced_rows(gw))
        self.assertLess(before, len(ids), "the backfill ended before the restart; use more mail")
        gw.start()
        mgtest.wait_port("127.0.0.1", gw.api_port, proc=gw.proc)
        received = self.wait_received(gw, len(ids), timeout=120)
        got = [e["data"]["message_id"] for e in received]
        self.assertEqual(len(got), len(set(got)), "a message was emitted twice")
        self.assertEqual(set(got), ids)
        self.assertEqual(len(self.synced_rows(gw)), len(ids))

class SyncM365CapabilitiesTest(SyncTest):
    """The same against Microsoft 365's capability list: no CONDSTORE, so new mail is found from
    UIDNEXT and flag changes by the bounded FETCH FLAGS scan."""
    capabilities = "m365"


if __name__ == "__main__":
    unittest.main()
