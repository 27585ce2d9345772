"""Connecting and disconnecting a mailbox through the API (POST /v1/mailboxes/{address}/connect
and .../disconnect), against real Dovecot: the connection is stored before the answer, survives
a restart, opens and closes the mailbox's sessions and sync; disconnect keeps what was synced
(or deletes it with keep_synced=false) and holds the mailbox's mail even when the tenant's
on_disconnect says fallback, until it is connected again; only the connector role may do it.
"""
import json
import pathlib
import smtplib
import sqlite3
import sys
import time
import unittest
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mgtest  # noqa: E402
from dovecot import Dovecot  # noqa: E402
from test_sync import events, raw_message  # noqa: E402

USER = "rep1@acme.example"
PASSWORD = "app-password-for-connect"


def call(gw, method, path, body=None, token=mgtest.TOKEN):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{gw.api_port}{path}", data=data,
                                     method=method,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def config(sink_port, imaps_port):
    # No auth in the file: the mailbox is connected through the API only.
    mailbox = (f"      - address: {USER}\n"
               "        access: custom\n"
               f"        imap: {{host: 127.0.0.1, port: {imaps_port}, tls: implicit,"
               " allow_self_signed: true}\n"
               "        smtp: {host: 127.0.0.1, port: 9, tls: none}\n"
               "        sync: two_way\n")
    tenants = ("tenants:\n  - id: acme\n    fallback: [default]\n    on_disconnect: fallback\n"
               "    mailboxes:\n" + mailbox)
    return (mgtest.gateway_yaml(sink_port, token_roles="[submitter, connector, reader]")
            + tenants.replace("{", "{{").replace("}", "}}"))


class ConnectTest(unittest.TestCase):
    def setUp(self):
        self.work_cm = mgtest.Workdir()
        self.work = self.work_cm.__enter__()
        self.addCleanup(self.work_cm.__exit__, None, None, None)
        self.sink = mgtest.SmtpSink(self.work)
        self.addCleanup(self.sink.stop)
        self.dc = Dovecot(self.work, users={USER: PASSWORD}).start()
        self.addCleanup(self.dc.stop)
        for i in range(3):
            self.dc.deliver(USER, raw_message(i, "in"))

    def gateway(self):
        gw = mgtest.Mailgated(self.work, config(self.sink.port, self.dc.imaps_port),
                              env={"MAILGATE_TEST_TOKEN": mgtest.TOKEN}).start()
        self.addCleanup(gw.stop)
        mgtest.wait_port("127.0.0.1", gw.api_port, proc=gw.proc)
        return gw

    def mailbox(self, gw):
        return call(gw, "GET", f"/v1/mailboxes/{USER}")[1]

    def rows(self, gw):
        db = sqlite3.connect(f"file:{gw.data_dir}/mailgate.db?mode=ro", uri=True)
        try:
            return db.execute("SELECT count(*) FROM synced_messages").fetchone()[0]
        finally:
            db.close()

    def received(self, gw):
        return [e["data"]["message_id"] for e in events(gw, "message.received")]

    def submit(self, gw, i):
        with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=30) as c:
            c.login("crm", mgtest.TOKEN)
            c.sendmail(USER, ["prospect@example.test"], mgtest.message(i, sender=USER))

    def test_connect_disconnect_keep_synced_and_reconnect(self):
        gw = self.gateway()
        self.assertEqual(self.mailbox(gw)["imap"]["state"], "off")
        self.assertIsNone(self.mailbox(gw)["sync_progress"])

        status, body = call(gw, "POST", f"/v1/mailboxes/{USER}/connect",
                            {"auth": {"method": "app_password", "password": PASSWORD}},
                            token="reader-secret-value")
        self.assertEqual(status, 403, body)
        status, body = call(gw, "POST", f"/v1/mailboxes/{USER}/connect",
                            {"auth": {"method": "app_password"}})
        self.assertEqual(status, 400, body)
        status, body = call(gw, "POST", "/v1/mailboxes/nobody@acme.example/connect",
                            {"auth": {"method": "app_password", "password": PASSWORD}})
        self.assertEqual(status, 404, body)

        status, body = call(gw, "POST", f"/v1/mailboxes/{USER}/connect",
                            {"auth": {"method": "app_password", "password": PASSWORD}})
        self.assertEqual((status, body["state"]), (200, "connected"), body)
        self.assertTrue(mgtest.wait_for(lambda: len(self.received(gw)) == 3, timeout=30),
                        gw.log_text()[-3000:])
        self.assertNotIn(PASSWORD, gw.log_text(), "the password reached the log")

        status, body = call(gw, "POST", f"/v1/mailboxes/{USER}/disconnect?keep_synced=maybe")
        self.assertEqual(status, 400, body)
        status, body = call(gw, "POST", f"/v1/mailboxes/{USER}/disconnect?keep_synced=true")
        self.assertEqual((status, body["state"], body["keep_synced"]),
                         (200, "disconnected", True), body)
        self.assertTrue(mgtest.wait_for(lambda: self.mailbox(gw)["imap"]["state"] == "off",
                                        timeout=20))
        self.assertTrue(mgtest.wait_for(lambda: self.dc.connections() == 0, timeout=20),
                        "sessions stayed open after disconnect")
        self.assertIsNone(self.mailbox(gw)["sync_progress"])
        self.assertEqual(self.rows(gw), 3, "disconnect lost synced messages")
        self.assertEqual(len(self.received(gw)), 3)
        disconnected = events(gw, "mailbox.disconnected")
        self.assertEqual(len(disconnected), 1)
        self.assertIn("connect", disconnected[0]["data"]["hint"])
        route = self.mailbox(gw)["route"]
        self.assertIn("disconnected through the API", route["reason"])

        # Held, although on_disconnect says fallback: nothing reaches the relay.
        self.submit(gw, 1)
        time.sleep(3)
        self.assertEqual(self.sink.message_ids(), [], "a disconnected mailbox's mail was sent")

        # A restart keeps the connection as the API left it.
        gw.stop()
        gw = self.gateway()
        self.assertEqual(self.mailbox(gw)["imap"]["state"], "off")
        self.assertIn("disconnected through the API", self.mailbox(gw)["route"]["reason"])

        # Connected again: the sync goes on from its stored state (no message twice), new mail
        # comes, and the mailbox's route is no longer held (its SMTP, unreachable here, is tried).
        status, body = call(gw, "POST", f"/v1/mailboxes/{USER}/connect",
                            {"auth": {"method": "app_password", "password": PASSWORD}})
        self.assertEqual(status, 200, body)
        self.dc.deliver(USER, raw_message(3, "in"))
        self.assertTrue(mgtest.wait_for(lambda: len(self.received(gw)) == 4, timeout=30),
                        gw.log_text()[-3000:])
        self.assertEqual(sorted(self.received(gw)), sorted({f"<in-{i}@sync.test>"
                                                            for i in range(4)}))
        route = self.mailbox(gw)["route"]
        self.assertNotEqual(route["state"], "unconfigured", route)
        self.assertTrue(mgtest.wait_for(lambda: "via 127.0.0.1:9 connecting" in gw.log_text(),
                                        timeout=30), "the held message was not tried")

        # keep_synced=false deletes what was synced; the events stay.
        status, body = call(gw, "POST", f"/v1/mailboxes/{USER}/disconnect?keep_synced=false")
        self.assertEqual((status, body["synced_messages_deleted"]), (200, 4), body)
        self.assertEqual(self.rows(gw), 0)
        self.assertEqual(len(self.received(gw)), 4)


if __name__ == "__main__":
    unittest.main()
