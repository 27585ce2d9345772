"""mailgatectl against a real mailgated on 127.0.0.1: commands, output, exit codes, tokens.

Each test runs the real build/mailgatectl. Tests of endpoints the lead is still adding to the
server (mailboxes, failover, failback, queue, retry, cancel) skip themselves while the endpoint
answers 404 api.not_found, and run as soon as it is served.
"""
import contextlib
import json
import os
import pathlib
import re
import smtplib
import socket
import subprocess
import time
import unittest

from mgtest import ROOT, Mailgated, Workdir, free_port, make_cert

MAILGATECTL = os.environ.get("MAILGATECTL", str(ROOT / "build" / "mailgatectl"))

# Throwaway credentials for the tests' own gateway.
OPS = "ops-token-3c1d9a7e5b"              # admin, every tenant (read from a file with a newline)
CRM = "crm-token-8b2f4e6a1c"              # submitter: SMTP AUTH user "crm"
READER = "reader-token-5e7a9c1b3d"        # reader, every tenant
ACME_OPERATOR = "acme-operator-2d4f6b8a"  # operator, tenant acme only
GLOBEX_READER = "globex-reader-9a8b7c6d"  # reader, tenant globex only
WRONG = "not-a-configured-token-1234"

REP = "rep1@acme.example"
GLOBEX_REP = "rep@globex.example"

NOT_SERVED = "the endpoint is not served by this mailgated yet (404 api.not_found)"


def config_text(dead_port, tls=None):
    """Two tenants with one mailbox each and no Microsoft 365 credentials, so their mail takes the
    relay `default`, which points at a port where nothing listens: submitted mail stays deferred
    (an hour between attempts), ready for queue, retry and cancel."""
    tls_line = f"    tls: {{{{cert: {tls[0]}, key: {tls[1]}}}}}\n" if tls else ""
    return (
        "node: {{id: ctl-test, data_dir: {data_dir}}}\n"
        "log: {{level: debug, format: text}}\n"
        "listeners:\n"
        "  smtp:\n"
        "    address: 127.0.0.1:{smtp_port}\n"
        "    require_tls: false\n"
        "  api:\n"
        "    address: 127.0.0.1:{api_port}\n"
        + tls_line +
        "    tokens:\n"
        "      - name: ops\n"
        "        secret_file: {workdir}/ops.token\n"
        "        roles: [admin]\n"
        "      - name: crm\n"
        f"        secret: {CRM}\n"
        "        roles: [submitter]\n"
        "      - name: reader\n"
        f"        secret: {READER}\n"
        "        roles: [reader]\n"
        "      - name: acme-operator\n"
        f"        secret: {ACME_OPERATOR}\n"
        "        roles: [operator]\n"
        "        tenants: [acme]\n"
        "      - name: globex-reader\n"
        f"        secret: {GLOBEX_READER}\n"
        "        roles: [reader]\n"
        "        tenants: [globex]\n"
        "storage: {{backend: sqlite}}\n"
        "microsoft365:\n"
        f"  smtp: {{{{host: 127.0.0.1, port: {dead_port}, tls: starttls}}}}\n"
        f"  imap: {{{{host: 127.0.0.1, port: {dead_port}, tls: implicit}}}}\n"
        "relays:\n"
        "  default:\n"
        "    host: 127.0.0.1\n"
        f"    port: {dead_port}\n"
        "    tls: none\n"
        "queue:\n"
        "  retry_initial: 1h\n"
        "  retry_max: 1h\n"
        "tenants:\n"
        "  - id: acme\n"
        "    fallback: [default]\n"
        "    mailboxes:\n"
        f"      - address: {REP}\n"
        "  - id: globex\n"
        "    fallback: [default]\n"
        "    mailboxes:\n"
        f"      - address: {GLOBEX_REP}\n")


def ctl(*args, token=None, env=None, timeout=60):
    """Runs build/mailgatectl with a clean MAILGATE_* environment plus `env`."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    if token is not None:
        e["MAILGATE_TOKEN"] = token
    e.update(env or {})
    return subprocess.run([MAILGATECTL, *args], capture_output=True, text=True, timeout=timeout,
                          env=e)


def submit(gw, i, sender=REP):
    """Submits one message over SMTP and returns its queue id (from "250 ... queued as ID")."""
    msg = (f"From: {sender}\r\nTo: prospect{i}@example.test\r\nSubject: ctl {i}\r\n"
           f"Message-ID: <ctl-{i}-{time.monotonic_ns()}@example.test>\r\n\r\nhello {i}\r\n")
    with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=30) as c:
        c.login("crm", CRM)
        c.mail(sender)
        code, _ = c.rcpt(f"prospect{i}@example.test")
        assert code == 250, code
        code, reply = c.data(msg)
        assert code == 250, (code, reply)
    return reply.decode().split()[-1]


class CtlTest(unittest.TestCase):
    """One gateway for every test of the class; tests that change it put it back."""

    @classmethod
    def setUpClass(cls):
        cls._wd = Workdir()
        cls.tmp = cls._wd.__enter__()
        (cls.tmp / "ops.token").write_text(OPS + "\n")
        cls.dead_port = free_port()
        cls.gw = Mailgated(cls.tmp, config_text(cls.dead_port)).start()
        cls.url = f"http://127.0.0.1:{cls.gw.api_port}"
        cls.ops_file = str(cls.tmp / "ops.token")

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls._wd.__exit__(None, None, None)

    def run_ctl(self, *args, token=None, ops=False, env=None):
        """mailgatectl against this class's gateway; ops=True uses the admin token file."""
        e = {"MAILGATE_URL": self.url}
        if ops:
            e["MAILGATE_TOKEN_FILE"] = self.ops_file
        e.update(env or {})
        r = ctl(*args, token=token, env=e)
        for secret in (OPS, CRM, READER, ACME_OPERATOR, GLOBEX_READER, WRONG):
            self.assertNotIn(secret, r.stdout + r.stderr, "a token was printed")
        return r

    def served(self, r):
        """Skips the test while the server does not have the endpoint yet."""
        if r.returncode == 4 and "(api.not_found)" in r.stderr:
            self.skipTest(NOT_SERVED)
        return r

    def assertExit(self, r, code):
        self.assertEqual(r.returncode, code, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")

    # --- no server needed ---------------------------------------------------------------------

    def test_help_version_and_usage(self):
        r = ctl("--help")
        self.assertExit(r, 0)
        for word in ("status", "mailboxes", "queue", "failover", "reload", "MAILGATE_TOKEN",
                     "--token-file", "Exit codes"):
            self.assertIn(word, r.stdout)
        for code in range(9):
            self.assertRegex(r.stdout, rf"\n  {code}  ")
        r = ctl("--version")
        self.assertExit(r, 0)
        self.assertRegex(r.stdout, r"^mailgatectl \d+\.\d+\.\d+\n$")
        r = ctl("frobnicate")
        self.assertExit(r, 2)
        self.assertIn("unknown command frobnicate", r.stderr)
        r = ctl("status", "--token", WRONG)
        self.assertExit(r, 2)
        self.assertIn("never taken on the command line", r.stderr)
        self.assertNotIn(WRONG, r.stderr)

    def test_missing_token_exits_3_before_connecting(self):
        r = self.run_ctl("status")
        self.assertExit(r, 3)
        self.assertIn("no API token given", r.stderr)
        self.assertIn("MAILGATE_TOKEN", r.stderr)
        r = self.run_ctl("status", "--token-file", str(self.tmp / "no-such-file"))
        self.assertExit(r, 3)
        self.assertIn("cannot read token file", r.stderr)

    # --- status -------------------------------------------------------------------------------

    def test_status(self):
        r = self.run_ctl("status", ops=True)
        self.assertExit(r, 0)
        self.assertRegex(r.stdout, r"(?m)^node: +ctl-test$")
        self.assertRegex(r.stdout, r"(?m)^ready: +yes$")
        self.assertRegex(r.stdout, r"(?m)^tenants: +2$")
        self.assertRegex(r.stdout, r"(?m)^queue: +queued \d+, sending \d+, deferred \d+")
        self.assertEqual(r.stderr, "")

    def test_status_json_parses(self):
        r = self.run_ctl("--json", "status", ops=True)
        self.assertExit(r, 0)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["node"], "ctl-test")
        self.assertIs(doc["ready"], True)
        self.assertIn("queue", doc)

    def test_status_with_a_scoped_token_counts_its_tenants_only(self):
        r = self.run_ctl("status", "--json", token=ACME_OPERATOR)
        self.assertExit(r, 0)
        scoped = json.loads(r.stdout)
        self.assertEqual(scoped["tenants"], 1)
        r = self.run_ctl("status", "--json", ops=True)
        every = json.loads(r.stdout)
        for state, n in scoped["queue"].items():
            self.assertLessEqual(n, every["queue"][state], state)

    def test_status_over_h2c_and_with_the_token_file_option(self):
        r = self.run_ctl("status", "--http2", "--token-file", self.ops_file)
        self.assertExit(r, 0)
        self.assertRegex(r.stdout, r"(?m)^ready: +yes$")

    def test_bad_token_exits_3(self):
        r = self.run_ctl("status", token=WRONG)
        self.assertExit(r, 3)
        self.assertIn("(auth.invalid)", r.stderr)
        self.assertIn("hint:", r.stderr)
        bad = self.tmp / "wrong.token"
        bad.write_text(WRONG + "\n")
        r = self.run_ctl("status", "--token-file", str(bad))
        self.assertExit(r, 3)

    def test_server_down_exits_7(self):
        r = self.run_ctl("status", ops=True, env={"MAILGATE_URL": f"http://127.0.0.1:{free_port()}"})
        self.assertExit(r, 7)
        self.assertIn("cannot reach", r.stderr)
        self.assertIn("(net.connect)", r.stderr)

    def test_silent_server_times_out_with_7(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)  # never accepted, never answered
            url = f"http://127.0.0.1:{s.getsockname()[1]}"
            start = time.monotonic()
            r = self.run_ctl("status", "--url", url, "--timeout", "0.5", ops=True)
            self.assertLess(time.monotonic() - start, 10)
        self.assertExit(r, 7)
        self.assertIn("(net.timeout)", r.stderr)

    # --- reload -------------------------------------------------------------------------------

    def test_reload_good_file(self):
        r = self.run_ctl("reload", ops=True)
        self.assertExit(r, 0)
        self.assertRegex(r.stdout, r"(?m)^status: +reloaded$")
        self.assertIn(str(self.gw.config_path), r.stdout)
        r = self.run_ctl("reload", "--json", ops=True)
        self.assertExit(r, 0)
        self.assertEqual(json.loads(r.stdout)["status"], "reloaded")

    def test_reload_broken_file_exits_6_with_every_position(self):
        path = self.gw.config_path
        good = path.read_text()
        broken = good.replace("node: {id: ctl-test,", "node: {colour: blue, id: ctl-test,", 1)
        broken = broken.replace("    tls: none\n", "    tls: sometimes\n", 1)
        self.assertNotEqual(broken, good)
        try:
            path.write_text(broken)
            r = self.run_ctl("reload", ops=True)
            self.assertExit(r, 6)
            self.assertEqual(r.stdout, "")
            lines = [l.strip() for l in r.stderr.splitlines() if l.startswith("  ")]
            self.assertGreaterEqual(len(lines), 2, r.stderr)
            for line in lines:
                self.assertRegex(line, re.escape(str(path)) + r":\d+:\d+: ")
            self.assertTrue(any(f"{path}:1:" in l and "colour" in l for l in lines), r.stderr)
            self.assertTrue(any("sometimes" in l or "tls" in l for l in lines), r.stderr)
            self.assertIn("(config.invalid)", r.stderr)
            r = self.run_ctl("reload", "--json", ops=True)
            self.assertExit(r, 6)
            doc = json.loads(r.stdout)
            self.assertEqual(doc["error"]["code"], "config.invalid")
            self.assertEqual([l for l in doc["error"]["details"]], lines)
        finally:
            path.write_text(good)
        # Nothing was changed: the gateway still answers as before, and the good file reloads.
        self.assertExit(self.run_ctl("status", ops=True), 0)
        self.assertExit(self.run_ctl("reload", ops=True), 0)

    def test_reload_needs_an_operator_of_every_tenant(self):
        r = self.run_ctl("reload", token=ACME_OPERATOR)
        self.assertExit(r, 3)
        self.assertIn("(auth.forbidden)", r.stderr)
        r = self.run_ctl("reload", token=READER)
        self.assertExit(r, 3)

    # --- messages -----------------------------------------------------------------------------

    def test_message_unknown_id_exits_4(self):
        r = self.run_ctl("message", "01JNOSUCHMESSAGE0000000000", ops=True)
        self.assertExit(r, 4)
        self.assertIn("(message.not_found)", r.stderr)
        self.assertIn("hint:", r.stderr)
        r = self.run_ctl("--json", "message", "01JNOSUCHMESSAGE0000000000", ops=True)
        self.assertExit(r, 4)
        self.assertEqual(json.loads(r.stdout)["error"]["code"], "message.not_found")

    def test_message_shows_a_submitted_message_within_scope_only(self):
        mid = submit(self.gw, 1)
        r = self.run_ctl("message", mid, ops=True)
        self.assertExit(r, 0)
        self.assertRegex(r.stdout, rf"(?m)^id: +{mid}$")
        self.assertRegex(r.stdout, r"(?m)^tenant: +acme$")
        self.assertRegex(r.stdout, r"(?m)^state: +(queued|sending|deferred)$")
        self.assertIn("prospect1@example.test", r.stdout)
        r = self.run_ctl("message", mid, "--json", token=ACME_OPERATOR)
        self.assertExit(r, 0)
        self.assertEqual(json.loads(r.stdout)["id"], mid)
        # Another tenant's token cannot tell it exists.
        r = self.run_ctl("message", mid, token=GLOBEX_READER)
        self.assertExit(r, 4)

    def test_retry_and_cancel(self):
        mid = submit(self.gw, 2)
        r = self.served(self.run_ctl("retry", mid, token=READER))
        self.assertExit(r, 3)
        r = self.run_ctl("retry", mid, token=GLOBEX_READER)
        self.assertIn(r.returncode, (3, 4), r.stderr)
        r = self.retry_while_in_flight("retry", mid)
        self.assertExit(r, 0)
        self.assertRegex(r.stdout, rf"(?m)^id: +{mid}$")
        r = self.retry_while_in_flight("cancel", mid)
        self.assertExit(r, 0)
        r = self.run_ctl("message", mid, "--json", ops=True)
        self.assertEqual(json.loads(r.stdout)["state"], "failed", r.stdout)
        r = self.run_ctl("cancel", mid, ops=True)
        self.assertExit(r, 5)
        self.assertIn("(store.state)", r.stderr)
        r = self.run_ctl("retry", mid, ops=True)
        self.assertExit(r, 5)
        r = self.run_ctl("cancel", "01JNOSUCHMESSAGE0000000000", ops=True)
        self.assertExit(r, 4)

    def retry_while_in_flight(self, command, mid):
        """Runs `command mid` as ops; while the message is being attempted it answers 409
        message.in_flight (exit 5), so try again for a while."""
        deadline = time.monotonic() + 30
        while True:
            r = self.run_ctl(command, mid, ops=True)
            if r.returncode != 5 or "message.in_flight" not in r.stderr or \
                    time.monotonic() > deadline:
                return r
            time.sleep(0.2)

    # --- queue --------------------------------------------------------------------------------

    def test_queue(self):
        ids = [submit(self.gw, 10 + i) for i in range(3)]
        r = self.served(self.run_ctl("queue", ops=True))
        self.assertExit(r, 0)
        header = r.stdout.splitlines()[0].split()
        self.assertEqual(header, ["ID", "STATE", "TENANT", "MAILBOX", "ROUTE", "ATTEMPTS",
                                  "CREATED", "LAST_REPLY"])
        for mid in ids:
            self.assertIn(mid, r.stdout)
        self.assertIn("counts in scope:", r.stdout)

        r = self.run_ctl("queue", "--limit", "1", ops=True)
        self.assertExit(r, 0)
        rows = [l for l in r.stdout.splitlines()[1:] if l and not l.startswith("counts")]
        self.assertEqual(len(rows), 1, r.stdout)
        self.assertIn(ids[-1], rows[0])  # newest first
        self.assertIn("more messages match", r.stderr)

        r = self.run_ctl("queue", "--all", "--json", "--mailbox", REP, ops=True)
        self.assertExit(r, 0)
        doc = json.loads(r.stdout)
        got = [m["id"] for m in doc["messages"]]
        for mid in ids:
            self.assertIn(mid, got)
        self.assertIsNone(doc["next"])
        self.assertTrue(all(m["mailbox"] == REP for m in doc["messages"]))

        r = self.run_ctl("queue", "--json", "--tenant", "acme", token=GLOBEX_READER)
        self.assertIn(r.returncode, (0, 4), r.stderr)
        if r.returncode == 0:
            self.assertEqual(json.loads(r.stdout)["messages"], [])
        r = self.run_ctl("queue", "--json", token=GLOBEX_READER)
        self.assertExit(r, 0)
        self.assertFalse(set(ids) & {m["id"] for m in json.loads(r.stdout)["messages"]})
        r = self.run_ctl("queue", "--state", "bogus", ops=True)
        self.assertExit(r, 2)

    # --- mailboxes ----------------------------------------------------------------------------

    def test_mailboxes(self):
        r = self.served(self.run_ctl("mailboxes", ops=True))
        self.assertExit(r, 0)
        self.assertEqual(r.stdout.splitlines()[0].split(),
                         ["ADDRESS", "TENANT", "ROUTE", "IMAP", "USED/LIMIT", "REMAINING",
                          "FREES_AT", "LAST_ERROR"])
        self.assertIn(REP, r.stdout)
        # No IMAP in this gateway yet: every mailbox's IMAP column says off.
        rows = [line.split() for line in r.stdout.splitlines()[1:]]
        self.assertTrue(rows)
        self.assertTrue(all(row[3] == "off" for row in rows), r.stdout)
        self.assertIn(GLOBEX_REP, r.stdout)
        r = self.run_ctl("mailboxes", "--tenant", "acme", ops=True)
        self.assertExit(r, 0)
        self.assertIn(REP, r.stdout)
        self.assertNotIn(GLOBEX_REP, r.stdout)
        r = self.run_ctl("mailboxes", "--json", token=ACME_OPERATOR)
        self.assertExit(r, 0)
        self.assertEqual([m["address"] for m in json.loads(r.stdout)["mailboxes"]], [REP])

    def test_mailbox(self):
        r = self.served(self.run_ctl("mailbox", REP, ops=True))
        self.assertExit(r, 0)
        self.assertRegex(r.stdout, rf"(?m)^address: +{re.escape(REP)}$")
        self.assertRegex(r.stdout, r"(?m)^tenant: +acme$")
        self.assertRegex(r.stdout, r"(?m)^route: +\w+")
        self.assertRegex(r.stdout, r"(?m)^imap: +off$")
        r = self.run_ctl("mailbox", REP, "--json", token=READER)
        self.assertExit(r, 0)
        self.assertEqual(json.loads(r.stdout)["address"], REP)
        self.assertEqual(json.loads(r.stdout)["imap"]["state"], "off")
        self.assertExit(self.run_ctl("mailbox", "nobody@acme.example", ops=True), 4)
        self.assertExit(self.run_ctl("mailbox", REP, token=GLOBEX_READER), 4)

    def test_failover_and_failback(self):
        r = self.served(self.run_ctl("failover", GLOBEX_REP, "--reason", "ctl test", ops=True))
        try:
            self.assertExit(r, 0)
            self.assertRegex(r.stdout, r"(?m)^route: +\w+ \(failed over to the fallback relays\)")
            self.assertRegex(r.stdout, r"(?m)^manual failover: +by .*ops")
            r = self.run_ctl("mailbox", GLOBEX_REP, "--json", token=READER)
            self.assertExit(r, 0)
            route = json.loads(r.stdout)["route"]
            self.assertEqual(route["manual"]["actor"], "API token ops")
            self.assertTrue(route["failed_over"])
            self.assertExit(self.run_ctl("failback", GLOBEX_REP, token=READER), 3)
            self.assertExit(self.run_ctl("failback", GLOBEX_REP, token=ACME_OPERATOR), 4)
        finally:
            r = self.run_ctl("failback", GLOBEX_REP, "--json", ops=True)
        self.assertExit(r, 0)
        self.assertIsNone(json.loads(r.stdout)["route"]["manual"])
        self.assertExit(self.run_ctl("failover", "nobody@acme.example", ops=True), 4)


class CtlTlsTest(unittest.TestCase):
    """The API behind TLS: HTTP/2 via ALPN, verified against a private CA with --cacert."""

    @classmethod
    def setUpClass(cls):
        cls._wd = Workdir()
        cls.tmp = cls._wd.__enter__()
        (cls.tmp / "ops.token").write_text(OPS + "\n")
        cls.cert, key = make_cert(cls.tmp)
        cls.gw = Mailgated(cls.tmp, config_text(free_port(), tls=(cls.cert, key))).start()
        cls.env = {"MAILGATE_URL": f"https://127.0.0.1:{cls.gw.api_port}",
                   "MAILGATE_TOKEN_FILE": str(cls.tmp / "ops.token")}

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls._wd.__exit__(None, None, None)

    def test_status_over_https_with_the_private_ca(self):
        r = ctl("status", "--cacert", str(self.cert), env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^ready: +yes$")

    def test_unverified_certificate_exits_7(self):
        r = ctl("status", env=self.env)
        self.assertEqual(r.returncode, 7, r.stderr)
        self.assertIn("(net.tls)", r.stderr)
        self.assertIn("--cacert", r.stderr)

    def test_missing_ca_file_is_a_usage_error(self):
        r = ctl("status", "--cacert", str(self.tmp / "nope.pem"), env=self.env)
        self.assertEqual(r.returncode, 2, r.stderr)


if __name__ == "__main__":
    unittest.main()
