"""The submission server against real SMTP clients (swaks, smtplib) and hostile ones."""
import smtplib
import socket
import ssl
import subprocess
import time
import unittest

from mgtest import (TOKEN, Mailgated, SmtpSink, Workdir, gateway_yaml, make_cert, message,
                    wait_for)


def recv_reply(sock, timeout=10.0):
    """Reads one complete SMTP reply (possibly multi-line); returns its text."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data.decode(errors="replace")
        data += chunk
        lines = data.split(b"\r\n")
        complete = [l for l in lines[:-1]]
        if complete and len(complete[-1]) >= 4 and complete[-1][3:4] == b" ":
            return data.decode(errors="replace")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class SubmissionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Class cleanups run even when setUpClass fails half-way, so no server outlives the test.
        cls.tmp_ctx = Workdir()
        cls.tmp = cls.tmp_ctx.__enter__()
        cls.addClassCleanup(cls.tmp_ctx.__exit__, None, None, None)
        cls.cert, cls.key = make_cert(cls.tmp)
        cls.sink = SmtpSink(cls.tmp)
        cls.addClassCleanup(cls.sink.stop)
        yaml = gateway_yaml(cls.sink.port, tls=(cls.cert, cls.key), require_tls=True,
                            extra_smtp="    max_message_bytes: 100000\n"
                                       "    max_recipients: 5\n"
                                       "    max_auth_failures: 2\n"
                                       "    command_timeout: 3s\n"
                                       "    max_line_length: 1000\n")
        cls.gw = Mailgated(cls.tmp, yaml, env={"MAILGATE_TEST_TOKEN": TOKEN})
        cls.addClassCleanup(cls.gw.stop)
        cls.gw.start()

    def tls_context(self):
        ctx = ssl.create_default_context(cafile=str(self.cert))
        return ctx

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.gw.smtp_port), timeout=10)
        greeting = recv_reply(s)
        self.assertTrue(greeting.startswith("220 "), greeting)
        return s

    def delivered(self, msgid, timeout=30):
        return wait_for(lambda: msgid in self.sink.message_ids(), timeout)

    def test_swaks_starttls_auth_plain_and_login(self):
        for i, mech in ((1, "PLAIN"), (2, "LOGIN")):
            with self.subTest(mech=mech):
                data = message(100 + i)
                r = subprocess.run(
                    ["swaks", "--server", f"127.0.0.1:{self.gw.smtp_port}", "--tls",
                     "--auth", mech, "--auth-user", "crm", "--auth-password", TOKEN,
                     "--from", "rep1@acme.example", "--to", "prospect@example.test",
                     "--data", data.replace("\r\n", "\n")],
                    capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("250 2.0.0 Ok: queued as", r.stdout)
                self.assertTrue(self.delivered(f"<mg-test-{100 + i}@example.test>"))

    def test_smtplib_starttls_login_many_recipients(self):
        with smtplib.SMTP("127.0.0.1", self.gw.smtp_port, timeout=30) as c:
            c.starttls(context=self.tls_context())
            c.login("crm", TOKEN)
            refused = c.sendmail("rep1@acme.example",
                                 ["a@example.test", "b@example.test", "c@example.test"],
                                 message(200))
            self.assertEqual(refused, {})
        self.assertTrue(self.delivered("<mg-test-200@example.test>"))
        # One delivery of the message carried all three recipients.
        dumps = [p.read_bytes() for p in self.sink.files() if b"mg-test-200@" in p.read_bytes()]
        self.assertEqual(len(dumps), 1)
        for rcpt in (b"a@example.test", b"b@example.test", b"c@example.test"):
            self.assertIn(rcpt, dumps[0])

    def test_trace_header_added(self):
        with smtplib.SMTP("127.0.0.1", self.gw.smtp_port, timeout=30) as c:
            c.starttls(context=self.tls_context())
            c.login("crm", TOKEN)
            c.sendmail("rep1@acme.example", ["a@example.test"], message(201))
        self.assertTrue(self.delivered("<mg-test-201@example.test>"))
        dump = [p.read_bytes() for p in self.sink.files() if b"mg-test-201@" in p.read_bytes()][0]
        self.assertRegex(dump, rb"Received: from [^\r\n]*\r?\n\tby mailgate.test \(mailgate\) "
                               rb"with ESMTPSA;")

    def test_require_tls_refuses_before_starttls(self):
        s = self.connect()
        s.sendall(b"EHLO client.test\r\n")
        ehlo = recv_reply(s)
        self.assertIn("STARTTLS", ehlo)
        self.assertNotIn("AUTH", ehlo)  # never offered in cleartext when TLS is required
        s.sendall(b"AUTH PLAIN AGNybQB4\r\n")
        self.assertTrue(recv_reply(s).startswith("530 5.7.0"))
        s.sendall(b"MAIL FROM:<a@example.test>\r\n")
        self.assertTrue(recv_reply(s).startswith("530 5.7.0"))
        s.close()

    def test_no_auth_no_relay(self):
        with smtplib.SMTP("127.0.0.1", self.gw.smtp_port, timeout=30) as c:
            c.starttls(context=self.tls_context())
            c.ehlo()
            code, text = c.mail("someone@example.test")
            self.assertEqual(code, 530, text)
            self.assertIn(b"5.7.0", text)

    def test_token_without_submitter_role_refused(self):
        with smtplib.SMTP("127.0.0.1", self.gw.smtp_port, timeout=30) as c:
            c.starttls(context=self.tls_context())
            c.ehlo()
            c.user, c.password = "reader", "reader-secret-value"
            with self.assertRaises(smtplib.SMTPAuthenticationError) as err:
                c.auth("PLAIN", c.auth_plain)
            self.assertEqual(err.exception.smtp_code, 535)
        self.assertNotIn("reader-secret-value", self.gw.log_text())
        self.assertNotIn(TOKEN, self.gw.log_text())

    def test_repeated_wrong_auth_closes(self):
        with smtplib.SMTP("127.0.0.1", self.gw.smtp_port, timeout=30) as c:
            c.starttls(context=self.tls_context())
            c.ehlo()
            codes = []
            for _ in range(2):
                code, _ = c.docmd("AUTH", "PLAIN AGNybQB3cm9uZy1wYXNzd29yZA==")  # crm/wrong-password
                codes.append(code)
            self.assertEqual(codes[0], 535)
            self.assertEqual(codes[1], 421)  # second failure reaches max_auth_failures
        self.assertNotIn("wrong-password", self.gw.log_text())

    def test_oversized_message_552(self):
        with smtplib.SMTP("127.0.0.1", self.gw.smtp_port, timeout=30) as c:
            c.starttls(context=self.tls_context())
            c.login("crm", TOKEN)
            # No SIZE= on MAIL (sendmail() would send one), so the limit hits at end of data.
            self.assertEqual(c.mail("rep1@acme.example")[0], 250)
            self.assertEqual(c.rcpt("a@example.test")[0], 250)
            code, text = c.data(message(300, size=200000))
            self.assertEqual(code, 552, text)
            self.assertIn(b"5.3.4", text)
            # The session is still usable.
            self.assertEqual(c.noop()[0], 250)
        self.assertFalse(self.delivered("<mg-test-300@example.test>", timeout=1))

    def test_declared_size_too_big_refused_at_mail(self):
        with smtplib.SMTP("127.0.0.1", self.gw.smtp_port, timeout=30) as c:
            c.starttls(context=self.tls_context())
            c.login("crm", TOKEN)
            code, text = c.mail("rep1@acme.example", ["SIZE=999999999"])
            self.assertEqual(code, 552, text)

    def test_too_many_recipients(self):
        with smtplib.SMTP("127.0.0.1", self.gw.smtp_port, timeout=30) as c:
            c.starttls(context=self.tls_context())
            c.login("crm", TOKEN)
            c.mail("rep1@acme.example")
            codes = [c.rcpt(f"r{i}@example.test")[0] for i in range(7)]
            self.assertEqual(codes[:5], [250] * 5)
            self.assertEqual(codes[5], 452)

    def auth_tls_socket(self):
        raw = self.connect()
        raw.sendall(b"EHLO client.test\r\n")
        recv_reply(raw)
        raw.sendall(b"STARTTLS\r\n")
        self.assertTrue(recv_reply(raw).startswith("220"))
        s = self.tls_context().wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"EHLO client.test\r\n")
        recv_reply(s)
        import base64
        s.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0crm\0" + TOKEN.encode()) + b"\r\n")
        self.assertTrue(recv_reply(s).startswith("235"))
        return s

    def test_nul_in_data_refused_nothing_queued(self):
        s = self.auth_tls_socket()
        s.sendall(b"MAIL FROM:<rep1@acme.example>\r\nRCPT TO:<a@example.test>\r\nDATA\r\n")
        r = recv_reply(s)
        while "354" not in r:
            r += recv_reply(s)
        s.sendall(b"Message-ID: <mg-test-nul@example.test>\r\n\r\nbad \x00 byte\r\n.\r\n")
        reply = recv_reply(s)
        self.assertTrue(reply.startswith("554 5.6.0"), reply)
        s.close()
        self.assertFalse(self.delivered("<mg-test-nul@example.test>", timeout=1))

    def test_bare_lf_end_of_data_not_accepted(self):
        # SMTP smuggling: "\n.\n" must not end the message.
        s = self.auth_tls_socket()
        s.sendall(b"MAIL FROM:<rep1@acme.example>\r\nRCPT TO:<a@example.test>\r\nDATA\r\n")
        r = recv_reply(s)
        while "354" not in r:
            r += recv_reply(s)
        s.sendall(b"Message-ID: <mg-test-lf@example.test>\r\n\r\nfirst\n.\nMAIL FROM:<x@evil.test>\n"
                  b"\r\n.\r\n")
        reply = recv_reply(s)
        self.assertTrue(reply.startswith("250 "), reply)  # one message, not two
        s.close()
        self.assertTrue(self.delivered("<mg-test-lf@example.test>"))
        dump = [p.read_bytes() for p in self.sink.files() if b"mg-test-lf@" in p.read_bytes()][0]
        self.assertIn(b"MAIL FROM:<x@evil.test>", dump)  # stayed inside the body

    def test_pipelined_garbage_gets_errors_then_421(self):
        s = self.connect()
        s.sendall(b"".join(b"GARBAGE %d\r\n" % i for i in range(50)))
        data = b""
        s.settimeout(10)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        text = data.decode()
        self.assertIn("500 5.5.1", text)
        self.assertIn("421 ", text)  # too many errors: the server hangs up

    def test_huge_line_bounded_memory_and_others_served(self):
        before = rss_kib(self.gw.proc.pid)
        s = self.connect()
        chunk = b"A" * 65536
        sent = 0
        try:
            while sent < 10 * 1024 * 1024:
                s.sendall(chunk)
                sent += len(chunk)
            s.sendall(b"\r\n")
        except OSError:
            pass  # the server may hang up on us: also a clear answer
        # Another client is served meanwhile.
        with smtplib.SMTP("127.0.0.1", self.gw.smtp_port, timeout=30) as c:
            self.assertEqual(c.noop()[0], 250)
        try:
            reply = recv_reply(s)
            self.assertRegex(reply, r"^500 5\.5\.[26]|^421 ")
        except OSError:
            pass
        s.close()
        grown = rss_kib(self.gw.proc.pid) - before
        self.assertLess(grown, 8 * 1024, f"RSS grew by {grown} KiB for a 10 MiB line")

    def test_slow_client_times_out_and_others_served(self):
        s = self.connect()
        start = time.monotonic()
        s.settimeout(1.5)
        reply = b""
        for byte in b"NOOP NOOP NOOP NOOP NOOP NOOP":
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            try:
                got = s.recv(4096)
                if got:
                    reply += got
                    break
            except socket.timeout:
                pass
            # meanwhile another client is served
            if byte == ord("P"):
                with smtplib.SMTP("127.0.0.1", self.gw.smtp_port, timeout=30) as c:
                    self.assertEqual(c.noop()[0], 250)
        self.assertTrue(reply.startswith(b"421 4.4.2"), reply)
        self.assertLess(time.monotonic() - start, 60)
        s.close()


class ConnectionLimitTest(unittest.TestCase):
    def test_cap_and_sigterm_exit_zero(self):
        with Workdir() as tmp:
            sink = SmtpSink(tmp)
            yaml = gateway_yaml(sink.port, require_tls=False,
                                extra_smtp="    max_connections: 2\n")
            gw = Mailgated(tmp, yaml, env={"MAILGATE_TEST_TOKEN": TOKEN}).start()
            try:
                def open_session():
                    # The readiness probe's connection may not be reaped yet: retry briefly.
                    for _ in range(50):
                        s = socket.create_connection(("127.0.0.1", gw.smtp_port))
                        if recv_reply(s).startswith("220"):
                            return s
                        s.close()
                        time.sleep(0.1)
                    self.fail("no session slot became free")

                a = open_session()
                b = open_session()
                c = socket.create_connection(("127.0.0.1", gw.smtp_port))
                self.assertTrue(recv_reply(c).startswith("421 4.7.0"))
                c.close()
                # An idle session gets 421 on SIGTERM, and the daemon exits 0.
                gw.proc.send_signal(15)
                self.assertTrue(recv_reply(a).startswith("421 4.3.2"))
                self.assertEqual(gw.proc.wait(30), 0)
                a.close()
                b.close()
            finally:
                gw.stop()
                sink.stop()


if __name__ == "__main__":
    unittest.main()
