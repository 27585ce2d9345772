"""The IMAP peers the gateway's IMAP client is proven against, proven first with clients nobody here
wrote: Python's imaplib, curl and mbsync against real Dovecot (tests/integration/dovecot.py), and
imaplib/raw sockets against the Microsoft 365 stand-in (tests/fakes/imap_standin.py). mailgated is
not involved.
"""
import base64
import contextlib
import imaplib
import pathlib
import socket
import ssl
import subprocess
import sys
import time
import unittest

_HERE = pathlib.Path(__file__).resolve().parent
for _path in (_HERE, _HERE.parent / "fakes"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from dovecot import M365_CAPABILITY, Dovecot  # noqa: E402
from imap_standin import ImapStandin  # noqa: E402
from mgtest import Workdir, wait_for  # noqa: E402
from oauth2_introspect import IntrospectionServer  # noqa: E402

USER, PASSWORD = "rep1@acme.example", "app-password-1"
OTHER, OTHER_PASSWORD = "rep2@acme.example", "app-password-2"
TOKEN = "access-token-rep1"

# Microsoft 365's texts (MICROSOFT365.md), written out here: the test states the contract.
THROTTLED = "NO Request is throttled. Suggested Backoff Time: 2000 milliseconds"
UNAVAILABLE = "NO Server Unavailable. 15"
BYE = "* BYE Connection closed. 14"
NOT_CONNECTED = "BAD User is authenticated but not connected."
AUTH_FAILED = "NO AUTHENTICATE failed."
GREETING = "* OK The Microsoft Exchange IMAP4 service is ready."


def client_tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def xoauth2(user, token):
    return lambda _: f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def message(subject):
    return (f"From: {USER}\r\nTo: prospect@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.test>\r\n\r\nhello\r\n").encode()


class Raw:
    """A line-level IMAP client on a plain or TLS socket, for what imaplib hides."""

    def __init__(self, port, tls=True, timeout=5.0):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = client_tls().wrap_socket(sock) if tls else sock
        self.file = self.sock.makefile("rb")

    def line(self):
        return self.file.readline().decode("latin-1").rstrip("\r\n")

    def send(self, text):
        self.sock.sendall(text.encode() + b"\r\n")

    def command(self, tag, text):
        """Sends TAG TEXT and returns every line up to the tagged one or a continuation."""
        self.send(f"{tag} {text}")
        lines = [self.line()]
        while not lines[-1].startswith((tag + " ", "+ ")) and lines[-1]:
            lines.append(self.line())
        return lines

    def close(self):
        self.file.close()
        self.sock.close()


class DovecotTest(unittest.TestCase):
    """One Dovecot per profile for the whole class: starting one takes about 0.05 s, but making
    its certificate takes longer."""

    @classmethod
    def setUpClass(cls):
        cls._work = Workdir()
        cls.work = cls._work.__enter__()
        cls.oauth = IntrospectionServer({TOKEN: USER}).start()
        users = {USER: PASSWORD, OTHER: OTHER_PASSWORD}
        cls.full = Dovecot(cls.work, users, capabilities="full").start()
        cls.m365 = Dovecot(cls.work, users, capabilities="m365",
                           oauth2_introspection_url=cls.oauth.url).start()
        cls.plain_names = Dovecot(cls.work, users, capabilities="m365", special_use=False).start()

    @classmethod
    def tearDownClass(cls):
        for dc in (cls.full, cls.m365, cls.plain_names):
            dc.stop()
        cls.oauth.stop()
        cls._work.__exit__(None, None, None)

    def login(self, dc, user=USER, password=PASSWORD):
        client = imaplib.IMAP4_SSL("127.0.0.1", dc.imaps_port, ssl_context=client_tls())
        client.login(user, password)
        self.addCleanup(self._logout, client)
        return client

    @staticmethod
    def _logout(client):
        if client.state == "LOGOUT":
            return
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            with contextlib.suppress(OSError):
                client.shutdown()  # the server is gone (kill9 test)

    def capability_after_login(self, dc):
        typ, data = self.login(dc).capability()
        self.assertEqual(typ, "OK")
        return data[0].decode().split()

    def test_capabilities_differ_as_configured(self):
        full = self.capability_after_login(self.full)
        for cap in ("CONDSTORE", "QRESYNC", "SPECIAL-USE", "ESEARCH", "ENABLE"):
            self.assertIn(cap, full)
        self.assertEqual(self.capability_after_login(self.m365), M365_CAPABILITY.split())

    def test_m365_login_capability_has_the_same_auth_mechanisms(self):
        raw = Raw(self.m365.imaps_port)
        self.addCleanup(raw.close)
        greeting = raw.line()
        self.assertIn("[CAPABILITY ", greeting)
        before = raw.command("a", "CAPABILITY")[0].split()[2:]
        self.assertEqual(sorted(before), sorted(M365_CAPABILITY.split()))
        self.assertEqual(len(before), len(set(before)))  # no AUTH= twice
        # The cleartext port offers STARTTLS besides.
        clear = Raw(self.m365.imap_port, tls=False)
        self.addCleanup(clear.close)
        clear.line()
        self.assertIn("STARTTLS", clear.command("a", "CAPABILITY")[0].split())

    def test_sent_items_carries_the_sent_flag_unless_special_use_is_off(self):
        for dc, flagged in ((self.full, True), (self.m365, True), (self.plain_names, False)):
            typ, lines = self.login(dc).list()
            self.assertEqual(typ, "OK")
            sent = [line.decode() for line in lines if line.endswith(b'"Sent Items"')]
            self.assertEqual(len(sent), 1, lines)
            self.assertEqual("\\Sent" in sent[0], flagged, sent[0])
            names = b" ".join(lines).decode()
            for folder in ("INBOX", "Drafts", '"Deleted Items"'):
                self.assertIn(folder, names)

    def test_deliver_and_count_seen_by_imaplib_curl_and_mbsync(self):
        dc = self.full
        before = dc.count(OTHER, "Sent Items")
        dc.deliver(OTHER, message("sent-1"), folder="Sent Items")
        dc.deliver(OTHER, message("sent-2"), folder="Sent Items")
        self.assertEqual(dc.count(OTHER, "Sent Items"), before + 2)
        client = self.login(dc, OTHER, OTHER_PASSWORD)
        typ, data = client.select('"Sent Items"', readonly=True)  # imaplib does not quote names
        self.assertEqual((typ, int(data[0])), ("OK", before + 2))
        # curl reads a message back over imaps.
        out = subprocess.run(
            ["curl", "-sS", "--insecure", "--max-time", "10", "-u", f"{OTHER}:{OTHER_PASSWORD}",
             f"imaps://127.0.0.1:{dc.imaps_port}/Sent%20Items;UID=1"],
            capture_output=True, check=True).stdout
        self.assertIn(b"Subject: sent-1", out)
        # mbsync mirrors the folder into a local maildir.
        local = self.work / "mbsync-local"
        local.mkdir()  # mbsync creates folders in a store, not the store itself
        config = self.work / "mbsyncrc"
        config.write_text(
            # Host localhost: mbsync checks the name against the certificate's CN, not its IP SAN.
            f"IMAPAccount test\nHost localhost\nPort {dc.imaps_port}\nUser {OTHER}\n"
            f"Pass {OTHER_PASSWORD}\nSSLType IMAPS\nCertificateFile {dc.cert}\n\n"
            "IMAPStore remote\nAccount test\n\n"
            f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
            'Channel sent\nFar :remote:"Sent Items"\nNear :local:sent\nCreate Near\n'
            "Sync Pull\nSyncState *\n")
        subprocess.run(["mbsync", "-q", "-c", str(config), "sent"], check=True, timeout=30,
                       capture_output=True)
        self.assertEqual(len(list((local / "sent" / "new").iterdir())
                             + list((local / "sent" / "cur").iterdir())), before + 2)

    def test_starttls_and_cleartext_logins(self):
        dc = self.m365
        client = imaplib.IMAP4("127.0.0.1", dc.imap_port)
        client.starttls(ssl_context=client_tls())
        self.assertEqual(client.login(USER, PASSWORD)[0], "OK")
        client.logout()
        client = imaplib.IMAP4("127.0.0.1", dc.imap_port)  # `tls: none`
        self.assertEqual(client.login(USER, PASSWORD)[0], "OK")
        client.logout()

    def test_xoauth2_through_the_oauth2_passdb(self):
        dc = self.m365

        def authenticate(user, token):
            client = imaplib.IMAP4_SSL("127.0.0.1", dc.imaps_port, ssl_context=client_tls())
            try:
                return client.authenticate("XOAUTH2", xoauth2(user, token))[0]
            except imaplib.IMAP4.error as e:
                return str(e)
            finally:
                self._logout(client)

        self.assertEqual(authenticate(USER, TOKEN), "OK")
        self.assertIn("AUTHENTICATIONFAILED", authenticate(USER, "not-a-token"))
        self.assertIn("AUTHENTICATIONFAILED", authenticate(OTHER, TOKEN))  # someone else's
        self.assertIn("AUTHENTICATIONFAILED", authenticate(USER, PASSWORD))  # not a bearer
        self.oauth.add_token("short-lived", OTHER)
        self.assertEqual(authenticate(OTHER, "short-lived"), "OK")
        self.oauth.expire_token("short-lived")
        self.assertIn("AUTHENTICATIONFAILED", authenticate(OTHER, "short-lived"))
        # PLAIN still goes to the passwd-file.
        self.assertEqual(self.login(dc).noop()[0], "OK")

    def test_connections_counts_open_sessions(self):
        dc = self.plain_names
        self.assertTrue(wait_for(lambda: dc.connections() == 0, timeout=5))
        clients = [self.login(dc) for _ in range(3)]
        self.assertTrue(wait_for(lambda: dc.connections() == 3, timeout=5), dc.connections())
        for client in clients:
            client.logout()
        self.assertTrue(wait_for(lambda: dc.connections() == 0, timeout=5), dc.connections())

    def test_kill9_and_restart_on_the_same_ports(self):
        dc = Dovecot(self.work, {USER: PASSWORD}).start()
        self.addCleanup(dc.stop)
        dc.deliver(USER, message("before-crash"))
        client = self.login(dc)
        pids = dc.pids()
        self.assertGreater(len(pids), 3)  # master, config, log, anvil, auth, login, imap...
        dc.kill9()
        self.assertEqual(dc.pids(), [])
        with self.assertRaises((imaplib.IMAP4.abort, OSError)):
            client.noop()
        dc.start()
        client = self.login(dc)
        typ, data = client.select("INBOX")
        self.assertEqual((typ, data[0]), ("OK", b"1"))
        self.assertIn("starting up", dc.log_text())
        dc.restart()
        self.assertEqual(self.login(dc).noop()[0], "OK")

    def test_a_bad_config_fails_start_with_the_log(self):
        dc = Dovecot(self.work, {USER: PASSWORD})
        with open(dc.config_path, "a") as f:
            f.write("no_such_setting = 1\n")
        with self.assertRaises(RuntimeError) as caught:
            dc.start()
        self.assertIn("no_such_setting", str(caught.exception))


class StandinTest(unittest.TestCase):
    """One stand-in with TLS whose users choose their fault mode by name, and one in cleartext
    whose server-wide mode the tests switch through the control port."""

    @classmethod
    def setUpClass(cls):
        cls._work = Workdir()
        cls.work = cls._work.__enter__()
        cls.tls = ImapStandin(cls.work, tls=True).start()
        cls.clear = ImapStandin(cls.work, tls=False,
                                extra_args=["--greeting-delay", "0.5"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.tls.stop()
        cls.clear.stop()
        cls._work.__exit__(None, None, None)

    def setUp(self):
        self.clear.set_mode("ok")

    def raw(self, standin=None, greet=True):
        standin = standin or self.tls
        raw = Raw(standin.port, tls=standin is self.tls)
        self.addCleanup(raw.close)
        if greet:
            self.assertEqual(raw.line(), GREETING)
        return raw

    def test_session_like_microsoft(self):
        client = imaplib.IMAP4_SSL("127.0.0.1", self.tls.port, ssl_context=client_tls())
        self.assertEqual(client.welcome.decode(), GREETING)
        self.assertIn("AUTH=XOAUTH2", client.capabilities)
        self.assertEqual(client.authenticate("PLAIN", lambda _: f"\0{USER}\0pw".encode())[0],
                         "OK")  # imaplib waits for the continuation: no SASL-IR
        typ, lines = client.list()
        self.assertIn(b'(\\HasNoChildren \\Sent) "/" "Sent Items"', lines)
        typ, data = client.select("INBOX")
        self.assertEqual((typ, data), ("OK", [b"3"]))
        self.assertEqual(client.uid("SEARCH", "ALL"), ("OK", [b"1 2 3"]))
        self.assertEqual(client.noop()[0], "OK")
        client.logout()
        raw = self.raw()
        ir = base64.b64encode(f"user={USER}\x01auth=Bearer tok\x01\x01".encode()).decode()
        self.assertEqual(raw.command("a", f"AUTHENTICATE XOAUTH2 {ir}"),
                         ["a OK AUTHENTICATE completed."])
        self.assertEqual(raw.command("b", "ENABLE UTF8=ACCEPT"), ["b BAD Command Error. 10"])
        self.assertEqual(raw.command("c", "FROBNICATE"), ["c BAD Command Error. 10"])
        raw.command("d", 'EXAMINE "Sent Items"')
        self.assertEqual(raw.command("e", "IDLE"), ["+ idling"])
        raw.send("DONE")
        self.assertEqual(raw.line(), "e OK IDLE completed.")
        # LOGIN with a synchronising literal.
        raw = self.raw()
        raw.send(f"f LOGIN {{{len(USER)}}}")
        self.assertTrue(raw.line().startswith("+ "))
        raw.send(f'{USER} "pw"')  # the literal, then the rest of the command line
        self.assertEqual(raw.line(), "f OK LOGIN completed.")

    def test_curl_lists_the_folders(self):
        out = subprocess.run(["curl", "-sS", "--insecure", "--max-time", "10", "-u", f"{USER}:pw",
                              f"imaps://127.0.0.1:{self.tls.port}/"],
                             capture_output=True, check=True).stdout.decode()
        self.assertIn('"Sent Items"', out)
        self.assertIn("\\Sent", out)

    def test_throttle_and_backoff_accounting(self):
        user = "rep1+throttle@acme.example"
        raw = self.raw()
        self.assertEqual(raw.command("a", f"LOGIN {user} pw"), [f"a {THROTTLED}"])
        self.assertEqual(raw.command("b", f"LOGIN {user} pw"), [f"b {THROTTLED}"])
        stats = self.tls.stats()["users"][user]
        self.assertEqual((stats["throttled"], stats["attempts_during_backoff"]), (2, 1))
        raw = self.raw()
        raw.command("a", "LOGIN throttleselect@acme.example pw")
        self.assertEqual(raw.command("b", "SELECT INBOX"), [f"b {THROTTLED}"])

    def test_login_refusals(self):
        raw = self.raw()
        self.assertEqual(raw.command("a", "LOGIN unavailable@acme.example pw"),
                         [f"a {UNAVAILABLE}"])
        ir = base64.b64encode(b"\0authfail@acme.example\0pw").decode()
        self.assertEqual(raw.command("b", f"AUTHENTICATE PLAIN {ir}"), [f"b {AUTH_FAILED}"])
        self.assertEqual(raw.command("c", "LOGIN rep1+authfail@acme.example pw"),
                         ["c NO LOGIN failed."])

    def test_bye_after_login(self):
        raw = self.raw()
        self.assertEqual(raw.command("a", "LOGIN bye@acme.example pw"),
                         ["a OK LOGIN completed."])
        self.assertEqual(raw.line(), BYE)
        self.assertEqual(raw.line(), "")  # closed

    def test_not_connected_after_login(self):
        raw = self.raw()
        raw.command("a", "LOGIN notconnected@acme.example pw")
        self.assertEqual(raw.command("b", "SELECT INBOX"), [f"b {NOT_CONNECTED}"])

    def test_garbage_and_huge_literal(self):
        raw = self.raw()
        raw.command("a", "LOGIN garbage@acme.example pw")
        junk = b""
        while len(junk) < 65536:
            chunk = raw.sock.recv(65536)
            if not chunk:
                break
            junk += chunk
        self.assertEqual(len(junk), 65536)
        raw = self.raw()
        raw.command("a", "LOGIN hugeliteral@acme.example pw")
        raw.send("b SELECT INBOX")
        self.assertEqual(raw.line(), "* 1 FETCH (BODY[] {2147483648}")
        self.assertEqual(raw.file.read(2048), b"x" * 2048)  # and it keeps coming, slowly

    def test_dropidle_goes_quiet(self):
        raw = Raw(self.tls.port, timeout=1.0)
        self.addCleanup(raw.close)
        raw.line()
        raw.command("a", "LOGIN dropidle@acme.example pw")
        self.assertEqual(raw.command("b", "IDLE"), ["+ idling"])
        raw.send("DONE")
        raw.send("c NOOP")
        with self.assertRaises(socket.timeout):
            raw.line()

    def test_silent_and_slow_greeting(self):
        self.clear.set_mode("silent")
        raw = Raw(self.clear.port, tls=False, timeout=0.7)
        self.addCleanup(raw.close)
        with self.assertRaises(socket.timeout):
            raw.line()
        self.clear.set_mode("slowgreeting")
        raw = Raw(self.clear.port, tls=False, timeout=3)
        self.addCleanup(raw.close)
        started = time.monotonic()
        self.assertEqual(raw.line(), GREETING)
        self.assertGreaterEqual(time.monotonic() - started, 0.4)

    def test_stats_count_sessions_per_user(self):
        self.clear.reset()
        user = "counted@acme.example"
        raws = [self.raw(self.clear) for _ in range(3)]
        for raw in raws:
            raw.command("a", f"LOGIN {user} pw")
        stats = self.clear.stats()
        self.assertEqual((stats["users"][user]["current"], stats["users"][user]["max_concurrent"],
                          stats["users"][user]["logins"], stats["sessions"]), (3, 3, 3, 3))
        for raw in raws:
            raw.command("z", "LOGOUT")
        self.assertTrue(wait_for(lambda: self.clear.stats()["users"][user]["current"] == 0,
                                 timeout=5))
        self.assertEqual(self.clear.stats()["users"][user]["max_concurrent"], 3)


if __name__ == "__main__":
    unittest.main()
