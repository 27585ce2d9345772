"""IMAP sessions and pools against real Dovecot (and the Microsoft 365 stand-in for the texts and
faults Dovecot cannot produce).

- The session itself (imap_live_tests, C++) against Dovecot with its full capabilities and with
  them trimmed to Microsoft 365's list: implicit TLS, STARTTLS, LIST and "Sent Items", APPEND with
  APPENDUID, UID SEARCH/FETCH, IDLE seeing new mail, XOAUTH2 through Dovecot's oauth2 passdb
  against the introspection stand-in.
- mailgated's pools through the API: connected and idling, Sent found by flag or by name, wrong
  App Password → disconnected with a hint (and never the password in the log), Dovecot killed
  mid-IDLE and restarted → the pool recovers by itself; a garbage server, a 2 GB literal and a
  silent server fail their mailbox cleanly while the others stay connected; throttling texts.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import unittest
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "fakes"))
import mgtest  # noqa: E402
from dovecot import Dovecot  # noqa: E402
from imap_standin import ImapStandin  # noqa: E402
from oauth2_introspect import IntrospectionServer  # noqa: E402

LIVE = os.environ.get("IMAP_LIVE_TESTS", str(HERE.parents[1] / "build/tests/imap/imap_live_tests"))
USER = "rep1@acme.example"
PASSWORD = "app-password-for-tests"


def api_get(gw, path, token=mgtest.TOKEN):
    request = urllib.request.Request(f"http://127.0.0.1:{gw.api_port}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def mailbox_yaml(address, port, password, tls="implicit", max_sessions=3, extra=""):
    return (f"      - address: {address}\n"
            "        access: custom\n"
            f"        auth: {{method: app_password, password: \"{password}\"}}\n"
            f"        imap: {{host: 127.0.0.1, port: {port}, tls: {tls}, allow_self_signed: true,"
            f" pool: {{max_sessions: {max_sessions}}}}}\n"
            "        smtp: {host: 127.0.0.1, port: 9, tls: none}\n"
            "        sync: none\n" + extra)


def gateway_config(sink_port, mailboxes):
    """gateway_yaml() is a format template already; the mailboxes' braces are escaped for it."""
    tenants = "tenants:\n  - id: acme\n    fallback: [default]\n    mailboxes:\n" + "".join(
        mailboxes)
    return (mgtest.gateway_yaml(sink_port, token_roles="[admin]")
            + tenants.replace("{", "{{").replace("}", "}}"))


class LiveSessionTest(unittest.TestCase):
    """The C++ session against Dovecot: one run per capability profile."""

    def run_live(self, capabilities):
        with mgtest.Workdir() as work:
            token = "live-oauth-token-1"
            introspect = IntrospectionServer({token: USER}).start()
            self.addCleanup(introspect.stop)
            dc = Dovecot(work, users={USER: PASSWORD}, capabilities=capabilities,
                         oauth2_introspection_url=introspect.url).start()
            self.addCleanup(dc.stop)
            env = dict(os.environ, MG_DOVECOT_IMAPS_PORT=str(dc.imaps_port),
                       MG_DOVECOT_IMAP_PORT=str(dc.imap_port), MG_DOVECOT_CA=str(dc.cert),
                       MG_DOVECOT_USER=USER, MG_DOVECOT_PASSWORD=PASSWORD,
                       MG_DOVECOT_TOKEN=token, MG_DOVECOT_CAPS=capabilities,
                       MG_DOVECOT_DELIVER=dc.deliver_command(USER, "INBOX"))
            result = subprocess.run([LIVE], env=env, capture_output=True, timeout=300)
            output = result.stdout.decode(errors="replace") + result.stderr.decode(
                errors="replace")
            self.assertEqual(result.returncode, 0, output[-6000:] + dc.log_text()[-3000:])
            self.assertIn("[  PASSED  ] 6 tests", output)

    def test_full_capabilities(self):
        self.run_live("full")

    def test_microsoft_365_capabilities(self):
        self.run_live("m365")


class PoolTest(unittest.TestCase):
    """mailgated's pools, seen through GET /v1/mailboxes/{address}."""

    def setUp(self):
        self.work_cm = mgtest.Workdir()
        self.work = self.work_cm.__enter__()
        self.addCleanup(self.work_cm.__exit__, None, None, None)
        self.sink = mgtest.SmtpSink(self.work, dump=False)
        self.addCleanup(self.sink.stop)

    def gateway(self, mailboxes):
        gw = mgtest.Mailgated(self.work, gateway_config(self.sink.port, mailboxes),
                              env={"MAILGATE_TEST_TOKEN": mgtest.TOKEN}).start()
        self.addCleanup(gw.stop)
        mgtest.wait_port("127.0.0.1", gw.api_port, proc=gw.proc)  # start() waits for SMTP only
        return gw

    def imap(self, gw, address=USER):
        return api_get(gw, f"/v1/mailboxes/{address}")["imap"]

    def wait_imap(self, gw, predicate, address=USER, timeout=30):
        seen = {}

        def check():
            seen["imap"] = self.imap(gw, address)
            return predicate(seen["imap"])
        self.assertTrue(mgtest.wait_for(check, timeout=timeout),
                        f"{address}: {seen.get('imap')}\n{gw.log_text()[-3000:]}")
        return seen["imap"]

    def test_connects_idles_and_finds_sent_by_flag_or_by_name(self):
        full = Dovecot(self.work, users={USER: PASSWORD}, capabilities="full").start()
        self.addCleanup(full.stop)
        named = Dovecot(self.work, users={"rep2@acme.example": PASSWORD}, capabilities="m365",
                        special_use=False).start()
        self.addCleanup(named.stop)
        gw = self.gateway([mailbox_yaml(USER, full.imaps_port, PASSWORD),
                           mailbox_yaml("rep2@acme.example", named.imaps_port, PASSWORD)])
        for address in (USER, "rep2@acme.example"):
            state = self.wait_imap(gw, lambda s: s["state"] == "connected"
                                   and s["sessions"]["idle"] == 1, address)
            self.assertEqual(state["sent_folder"], "Sent Items")
            self.assertEqual(state["max_sessions"], 3)
            self.assertEqual(state["logins"], 1)
        self.assertTrue(mgtest.wait_for(lambda: full.connections() == 1, timeout=10))
        listing = api_get(gw, "/v1/mailboxes")
        self.assertIn("imap", json.dumps(listing))

    def test_wrong_password_disconnects_with_a_hint_and_a_reload_reconnects(self):
        dc = Dovecot(self.work, users={USER: PASSWORD}).start()
        self.addCleanup(dc.stop)
        wrong = "wrong-app-password-77"
        gw = self.gateway([mailbox_yaml(USER, dc.imaps_port, wrong)])
        state = self.wait_imap(gw, lambda s: s["state"] == "disconnected")
        self.assertEqual(state["last_error"]["code"], "imap.auth")
        self.assertTrue(state["last_error"]["hint"])
        self.assertIsNotNone(state["next_retry_at"])
        self.assertNotIn(wrong, gw.log_text())
        # The operator fixes the password and reloads: the pool connects now, not at the next
        # slow retry (minutes away).
        gw.config_path.write_text(gw.config_path.read_text().replace(wrong, PASSWORD))
        gw.proc.send_signal(signal.SIGHUP)
        state = self.wait_imap(gw, lambda s: s["state"] == "connected"
                               and s["sessions"]["idle"] == 1)
        self.assertEqual(state["logins"], 1)
        self.assertNotIn(PASSWORD, gw.log_text())

    def test_dovecot_killed_mid_idle_and_restarted_the_pool_recovers(self):
        dc = Dovecot(self.work, users={USER: PASSWORD}).start()
        self.addCleanup(dc.stop)
        gw = self.gateway([mailbox_yaml(USER, dc.imaps_port, PASSWORD)])
        self.wait_imap(gw, lambda s: s["state"] == "connected" and s["sessions"]["idle"] == 1)
        dc.kill9()
        state = self.wait_imap(gw, lambda s: s["state"] in ("backoff", "connecting")
                               and s["sessions"]["open"] == 0)
        self.assertIsNotNone(state["last_error"])
        dc.restart()
        state = self.wait_imap(gw, lambda s: s["state"] == "connected"
                               and s["sessions"]["idle"] == 1 and s["logins"] >= 2, timeout=60)
        self.assertTrue(mgtest.wait_for(lambda: dc.connections() == 1, timeout=10))

    def test_hostile_servers_fail_their_mailbox_only(self):
        dc = Dovecot(self.work, users={USER: PASSWORD}).start()
        self.addCleanup(dc.stop)
        standins = {}
        for mode in ("garbage", "hugeliteral", "silent"):
            standin = ImapStandin(self.work, tls=True, mode=mode,
                                  users={f"{mode}@acme.example": PASSWORD}).start()
            self.addCleanup(standin.stop)
            standins[mode] = standin
        boxes = [mailbox_yaml(USER, dc.imaps_port, PASSWORD)]
        boxes += [mailbox_yaml(f"{mode}@acme.example", s.port, PASSWORD)
                  for mode, s in standins.items()]
        gw = self.gateway(boxes)
        self.wait_imap(gw, lambda s: s["state"] == "connected")
        rss_before = _rss_kib(gw.proc.pid)
        expected = {"garbage": "imap.protocol", "hugeliteral": "imap.protocol",
                    "silent": "imap.timeout"}
        for mode, code in expected.items():
            state = self.wait_imap(gw, lambda s, code=code: s["last_error"] is not None
                                   and s["last_error"]["code"] == code,
                                   f"{mode}@acme.example", timeout=60)
            self.assertEqual(state["sessions"]["open"], 0)
            self.assertIn(state["state"], ("backoff", "connecting"))
        good = self.imap(gw)
        self.assertEqual(good["state"], "connected")
        self.assertEqual(good["logins"], 1)  # never disturbed
        # A 2 GB claim and garbage cost nothing lasting.
        self.assertLess(_rss_kib(gw.proc.pid) - rss_before, 32 * 1024)

    def test_throttling_and_not_connected_texts(self):
        standin = ImapStandin(self.work, tls=True, users={
            "throttle@acme.example": PASSWORD, "notconnected@acme.example": PASSWORD}).start()
        self.addCleanup(standin.stop)
        gw = self.gateway([mailbox_yaml("throttle@acme.example", standin.port, PASSWORD),
                           mailbox_yaml("notconnected@acme.example", standin.port, PASSWORD)])
        state = self.wait_imap(gw, lambda s: s["last_error"] is not None
                               and s["last_error"]["code"] == "imap.throttled",
                               "throttle@acme.example")
        self.assertIsNotNone(state["next_retry_at"])
        state = self.wait_imap(gw, lambda s: s["state"] == "disconnected",
                               "notconnected@acme.example")
        self.assertTrue(state["last_error"]["hint"])
        # The throttled mailbox waits as asked: not a login storm.
        logins = standin.stats()["users"]["throttle@acme.example"]["logins"]
        self.assertLessEqual(logins, 3)


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":
    unittest.main()
