"""The Microsoft 365 SMTP stand-in (tests/fakes/m365_smtp.py) against Python's smtplib.

The stand-in is what later tests trust to behave like smtp.office365.com:587, so each behaviour it
claims is proven here: STARTTLS before AUTH, the AUTH outcomes, the per-mailbox limits, SendAs, the
records it keeps, and that hostile input does not take it down. mailgated is not involved.
"""
import base64
import pathlib
import smtplib
import socket
import sys
import unittest

_HERE = pathlib.Path(__file__).resolve().parent
for _path in (_HERE, _HERE.parent / "fakes"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from m365fake import M365Fake, client_tls  # noqa: E402
from mgtest import Workdir, wait_for  # noqa: E402

# The reply texts of MICROSOFT365.md, written out here on purpose: the test states the contract.
NOT_AUTHENTICATED = "530 5.7.57 Client not authenticated to send mail"
AUTH_FAILED = "535 5.7.3 Authentication unsuccessful"
SMTP_AUTH_OFF_TENANT = ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
                        "disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more "
                        "information.")
SMTP_AUTH_OFF_MAILBOX = SMTP_AUTH_OFF_TENANT.replace("the Tenant", "the Mailbox")
BASIC_AUTH_OFF = "535 5.7.139 Authentication unsuccessful, basic authentication is disabled."
BASIC_AUTH_RETIRED = "550 5.7.30 Basic authentication is not supported for Client Submission."
BLOCKED = "550 5.1.8 Access denied, bad outbound sender"
THROTTLED = "550 5.2.252 Sender throttled due to continuous invalid recipients errors"
CONCURRENCY = "432 4.3.2 Concurrent connections limit exceeded."
SEND_AS = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
QUOTA_PREFIX = "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException;"
RATE = "450 4.7.0 Message submission rate for this client has exceeded the configured limit"

PASSWORD = "app-password-for-tests"
TOKEN = "oauth-token-for-tests"


def box(**settings):
    """A mailbox entry with the test password and limits high enough not to interfere."""
    entry = {"password": PASSWORD, "messages_per_minute": 1000}
    entry.update(settings)
    return entry


MAILBOXES = {
    "rep1@acme.example": box(aliases=["sales@acme.example"], token=TOKEN),
    "badpw@acme.example": box(auth="bad_password"),
    "tenantoff@acme.example": box(auth="smtp_auth_disabled_tenant", token=TOKEN),
    "mailboxoff@acme.example": box(auth="smtp_auth_disabled_mailbox"),
    "basicoff@acme.example": box(auth="basic_auth_disabled", token=TOKEN),
    "retired@acme.example": box(auth="basic_auth_retired", token=TOKEN),
    "blocked@acme.example": box(auth="blocked"),
    "throttled@acme.example": box(auth="sender_throttled"),
    "spam@acme.example": box(auth="spam"),
    "conc@acme.example": box(max_connections=3),
    "sendas@acme.example": box(aliases=["Sales.Team@ACME.example", "info@acme.example"]),
    "quota@acme.example": box(recipients_per_window=5),
    "qflag@acme.example": box(),
    "window@acme.example": box(recipients_per_window=2, window_seconds=1),
    "rate@acme.example": box(messages_per_minute=3),
    "records@acme.example": box(),
    "pipe@acme.example": box(),
}


def message(sender, rcpts=("to@example.test",), msgid="<m@example.test>", extra=""):
    return (f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: test\r\n"
            f"Message-ID: {msgid}\r\n{extra}\r\nhello\r\n")


def reply(code, text):
    return f"{code} {text.decode() if isinstance(text, bytes) else text}"


def send(client, mail_from, rcpts, body):
    """One transaction; returns the reply that ended it (MAIL's, RCPT's or the end of DATA's)."""
    code, text = client.mail(mail_from)
    if code != 250:
        client.rset()
        return reply(code, text)
    for rcpt in rcpts:
        code, text = client.rcpt(rcpt)
        if code != 250:
            client.rset()
            return reply(code, text)
    try:
        code, text = client.data(body)
    except smtplib.SMTPDataError as e:
        code, text = e.smtp_code, e.smtp_error
    return reply(code, text)


def xoauth2(user, token):
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


class Wire:
    """A raw client for what smtplib will not send: pipelined commands and hostile bytes."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        """One complete reply (all its lines); '' when the server closed the connection."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return "\n".join(lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode(errors="replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def command(self, data):
        self.send(data + "\r\n" if isinstance(data, str) else data + b"\r\n")
        return self.reply()

    def starttls(self):
        assert self.command("STARTTLS").startswith("220")
        self.sock = client_tls().wrap_socket(self.sock)
        self.buf = b""

    def login(self, user):
        plain = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        return self.command(f"AUTH PLAIN {plain}")

    def close(self):
        self.sock.close()


class M365FakeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp_ctx = Workdir()
        cls.tmp = cls.tmp_ctx.__enter__()
        cls.addClassCleanup(cls.tmp_ctx.__exit__, None, None, None)
        cls.fake = M365Fake(cls.tmp, MAILBOXES)
        cls.addClassCleanup(cls.fake.stop)
        cls.fake.start()

    def tearDown(self):
        self.assertTrue(self.fake.running(), self.fake.log_text()[-3000:])

    def client(self, login=None, password=PASSWORD, starttls=True):
        client = self.fake.smtp(login, password if login else None, starttls)
        self.addCleanup(client.close)
        return client

    def refusals(self, mailbox, stage=None):
        return [r["reply"] for r in self.fake.refused(mailbox, stage)]

    # ---- EHLO, STARTTLS, AUTH ---------------------------------------------------------------

    def test_greeting_and_ehlo_before_starttls(self):
        client = smtplib.SMTP(timeout=10)
        self.addCleanup(client.close)
        code, banner = client.connect(self.fake.host, self.fake.port)
        self.assertEqual(code, 220)
        client.ehlo("client.example")
        self.assertEqual(client.esmtp_features["size"], "157286400")
        for feature in ("pipelining", "8bitmime", "enhancedstatuscodes", "starttls"):
            self.assertIn(feature, client.esmtp_features)
        self.assertNotIn("auth", client.esmtp_features)

    def test_auth_and_mail_refused_before_starttls(self):
        client = self.client(starttls=False)
        plain = base64.b64encode(f"\0rep1@acme.example\0{PASSWORD}".encode()).decode()
        self.assertEqual(reply(*client.docmd("AUTH", f"PLAIN {plain}")), NOT_AUTHENTICATED)
        self.assertEqual(reply(*client.mail("rep1@acme.example")), NOT_AUTHENTICATED)
        self.assertIn("MAIL", [r["stage"] for r in self.fake.refused(None)
                               if r["reply"] == NOT_AUTHENTICATED])

    def test_auth_offered_after_starttls_and_required_for_mail(self):
        client = self.client()
        self.assertEqual(client.esmtp_features["auth"].split(), ["LOGIN", "PLAIN", "XOAUTH2"])
        self.assertNotIn("starttls", client.esmtp_features)
        self.assertEqual(reply(*client.mail("rep1@acme.example")), NOT_AUTHENTICATED)
        client.login("rep1@acme.example", PASSWORD)
        self.assertEqual(send(client, "rep1@acme.example", ["a@example.test"],
                              message("rep1@acme.example"))[:3], "250")

    def test_advertise_auth_false_hides_auth_after_starttls(self):
        self.fake.set_advertise_auth(False)
        try:
            client = self.client()
            self.assertNotIn("auth", client.esmtp_features)
            with self.assertRaises(smtplib.SMTPNotSupportedError):
                client.login("rep1@acme.example", PASSWORD)
            plain = base64.b64encode(f"\0rep1@acme.example\0{PASSWORD}".encode()).decode()
            code, text = client.docmd("AUTH", f"PLAIN {plain}")
            self.assertEqual(code, 504, text)
            self.assertEqual(reply(*client.mail("rep1@acme.example")), NOT_AUTHENTICATED)
        finally:
            self.fake.set_advertise_auth(True)
        # The switch is read live: the next session sees AUTH again.
        self.assertIn("auth", self.client().esmtp_features)

    def test_auth_outcomes_by_mode(self):
        cases = [
            ("badpw@acme.example", AUTH_FAILED),
            ("tenantoff@acme.example", SMTP_AUTH_OFF_TENANT),
            ("mailboxoff@acme.example", SMTP_AUTH_OFF_MAILBOX),
            ("basicoff@acme.example", BASIC_AUTH_OFF),
            ("retired@acme.example", BASIC_AUTH_RETIRED),
        ]
        for address, expected in cases:
            for mechanism, initial in (("PLAIN", True), ("LOGIN", True), ("LOGIN", False)):
                with self.subTest(address=address, mechanism=mechanism, initial=initial):
                    client = self.client()
                    client.user, client.password = address, PASSWORD
                    method = client.auth_plain if mechanism == "PLAIN" else client.auth_login
                    with self.assertRaises(smtplib.SMTPAuthenticationError) as caught:
                        client.auth(mechanism, method, initial_response_ok=initial)
                    self.assertEqual(reply(caught.exception.smtp_code,
                                           caught.exception.smtp_error), expected)
            self.assertEqual(self.refusals(address, "AUTH"), [expected] * 3)
            self.assertEqual(self.fake.mailbox_stats(address)["auth_failures"], 3)

    def test_wrong_password_and_unknown_user(self):
        for user, password in (("rep1@acme.example", "wrong"), ("nobody@acme.example", PASSWORD),
                               ("sales@acme.example", PASSWORD)):  # an alias is no login
            with self.subTest(user=user):
                client = self.client()
                client.user, client.password = user, password
                with self.assertRaises(smtplib.SMTPAuthenticationError) as caught:
                    client.auth("PLAIN", client.auth_plain)
                self.assertEqual(reply(caught.exception.smtp_code, caught.exception.smtp_error),
                                 AUTH_FAILED)
        # The login name is case-insensitive, like Microsoft's.
        self.client("REP1@Acme.Example")

    def test_xoauth2(self):
        def auth(user, token, initial=True):
            client = self.client()
            try:
                code, text = client.auth("XOAUTH2", lambda challenge=None: xoauth2(user, token),
                                         initial_response_ok=initial)
            except smtplib.SMTPAuthenticationError as e:
                code, text = e.smtp_code, e.smtp_error
            return reply(code, text)

        self.assertEqual(auth("rep1@acme.example", TOKEN)[:3], "235")
        self.assertEqual(auth("rep1@acme.example", TOKEN, initial=False)[:3], "235")
        self.assertEqual(auth("rep1@acme.example", "stale-token"), AUTH_FAILED)
        self.assertEqual(auth("badpw@acme.example", TOKEN), AUTH_FAILED)  # has no token
        # Basic authentication being off or retired does not touch OAuth2; SMTP AUTH off does.
        self.assertEqual(auth("basicoff@acme.example", TOKEN)[:3], "235")
        self.assertEqual(auth("retired@acme.example", TOKEN)[:3], "235")
        self.assertEqual(auth("tenantoff@acme.example", TOKEN), SMTP_AUTH_OFF_TENANT)

    # ---- MAIL and end-of-DATA policy --------------------------------------------------------

    def test_blocked_and_throttled_senders_refused_at_mail(self):
        for address, expected in (("blocked@acme.example", BLOCKED),
                                  ("throttled@acme.example", THROTTLED)):
            with self.subTest(address=address):
                client = self.client(address)
                self.assertEqual(reply(*client.mail(address)), expected)
                self.assertEqual(self.refusals(address, "MAIL"), [expected])

    def test_spam_verdict_at_end_of_data(self):
        client = self.client("spam@acme.example")
        result = send(client, "spam@acme.example", ["a@example.test"],
                      message("spam@acme.example"))
        self.assertTrue(result.startswith(
            "554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException"), result)
        self.assertIn("RefuseQuota", result)
        self.assertEqual(self.fake.accepted("spam@acme.example"), [])
        self.assertEqual(self.refusals("spam@acme.example", "DATA"), [result])

    def test_fourth_concurrent_session_gets_432(self):
        address = "conc@acme.example"
        clients = [self.client(address) for _ in range(4)]
        stats = wait_for(lambda: self.fake.mailbox_stats(address).get("current") == 4 and
                         self.fake.mailbox_stats(address))
        self.assertTrue(stats, self.fake.stats())
        self.assertEqual(stats["max_concurrent"], 4)
        for client in clients[:3]:
            self.assertEqual(client.mail(address)[0], 250)
        self.assertEqual(reply(*clients[3].mail(address)), CONCURRENCY)
        self.assertEqual(self.refusals(address, "MAIL"), [CONCURRENCY])
        self.assertEqual(self.fake.mailbox_stats(address)["concurrency_refusals"], 1)
        # A session that ends frees its place for the one that was refused.
        clients[0].quit()
        self.assertTrue(wait_for(lambda: self.fake.mailbox_stats(address)["current"] == 3))
        self.assertEqual(send(clients[3], address, ["a@example.test"], message(address))[:3],
                         "250")
        for client in clients[1:3]:
            client.rset()
        stats = self.fake.mailbox_stats(address)
        self.assertEqual((stats["connections"], stats["max_concurrent"]), (4, 4))

    def test_send_as_mailbox_or_alias_only(self):
        address = "sendas@acme.example"
        client = self.client(address)
        accepted = [
            ("sales.team@acme.example", message("Sales <SALES.TEAM@acme.example>")),
            (address, message(f"Rep <{address}>")),
            ("INFO@acme.example", message("info@acme.example, sendas@acme.example")),
            (address, "Subject: no From header at all\r\n\r\nbody\r\n"),
        ]
        refused = [
            ("other@acme.example", message(address)),  # foreign envelope, own From
            (address, message("boss@acme.example")),  # own envelope, foreign From
            (address, message("sendas@acme.example, boss@acme.example")),
            (address, message("not an address")),
            (address, message(address, extra="From: intruder@example.test\r\n")),
        ]
        for mail_from, body in accepted:
            with self.subTest(mail_from=mail_from, body=body[:40]):
                self.assertEqual(send(client, mail_from, ["a@example.test"], body)[:3], "250")
        for mail_from, body in refused:
            with self.subTest(mail_from=mail_from, body=body[:40]):
                self.assertEqual(send(client, mail_from, ["a@example.test"], body), SEND_AS)
        self.assertEqual(len(self.fake.accepted(address)), len(accepted))
        self.assertEqual(self.refusals(address, "DATA"), [SEND_AS] * len(refused))

    def test_recipient_quota_on_a_rolling_window(self):
        address = "quota@acme.example"
        client = self.client(address)
        results = [send(client, address, [f"r{i}-{n}@example.test" for n in range(count)],
                        message(address, msgid=f"<q{i}@example.test>"))
                   for i, count in enumerate((2, 2, 2, 1, 1))]
        self.assertEqual([r[:3] for r in results], ["250", "250", "554", "250", "554"])
        for refused in (results[2], results[4]):
            self.assertTrue(refused.startswith(QUOTA_PREFIX), refused)
            self.assertIn("[BeginDiagnosticData]Cannot submit message.", refused)
        kept = self.fake.accepted(address)
        self.assertEqual(sum(len(r["rcpt_to"]) for r in kept), 5)
        self.assertEqual([r["message_id"] for r in kept],
                         ["<q0@example.test>", "<q1@example.test>", "<q3@example.test>"])

    def test_quota_exceeded_switch(self):
        address = "qflag@acme.example"
        client = self.client(address)
        self.assertEqual(send(client, address, ["a@example.test"], message(address))[:3], "250")
        self.fake.set_mailbox(address, quota_exceeded=True)
        try:
            # The switch takes effect inside a session that is already open.
            self.assertTrue(send(client, address, ["a@example.test"],
                                 message(address)).startswith(QUOTA_PREFIX))
        finally:
            self.fake.set_mailbox(address, quota_exceeded=False)
        self.assertEqual(send(client, address, ["a@example.test"], message(address))[:3], "250")

    def test_drop_after_data_records_the_message_and_cuts_the_connection(self):
        address = "drop@acme.example"
        self.fake.set_mailbox(address, password=PASSWORD, drop_after_data=1)
        client = self.client(address)
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            client.sendmail(address, ["a@example.test"], message(address))
        self.assertEqual(len(self.fake.accepted(address)), 1)  # it has the message all the same
        again = self.client(address)  # only the first message is cut
        self.assertEqual(send(again, address, ["a@example.test"], message(address))[:3], "250")
        self.assertEqual(len(self.fake.accepted(address)), 2)

    def test_window_frees_oldest_sends(self):
        address = "window@acme.example"
        client = self.client(address)
        self.assertEqual(send(client, address, ["a@example.test", "b@example.test"],
                              message(address))[:3], "250")
        self.assertTrue(send(client, address, ["c@example.test"],
                             message(address)).startswith(QUOTA_PREFIX))
        # window_seconds is 1: the recipients of the first message leave the window.
        self.assertTrue(wait_for(
            lambda: send(client, address, ["c@example.test"], message(address))[:3] == "250",
            timeout=10, interval=0.2))

    def test_messages_per_minute(self):
        address = "rate@acme.example"
        client = self.client(address)
        results = [send(client, address, ["a@example.test"], message(address)) for _ in range(4)]
        self.assertEqual([r[:3] for r in results[:3]], ["250"] * 3)
        self.assertEqual(results[3], RATE)
        self.assertEqual(len(self.fake.accepted(address)), 3)

    # ---- records ----------------------------------------------------------------------------

    def test_accepted_record_and_stats(self):
        address = "records@acme.example"
        client = self.client(address)
        body = message(f"Rep <{address}>", rcpts=("x@example.test", "y@example.test"),
                       msgid="<record-1@example.test>")
        self.assertEqual(send(client, address, ["x@example.test", "y@example.test"], body)[:3],
                         "250")
        [record] = self.fake.accepted(address)
        self.assertEqual(record["mailbox"], address)
        self.assertEqual(record["mail_from"], address)
        self.assertEqual(record["rcpt_to"], ["x@example.test", "y@example.test"])
        self.assertEqual(record["message_id"], "<record-1@example.test>")
        self.assertEqual(record["from"], [address])
        self.assertEqual(record["size"], len(body.encode()))
        self.assertIsInstance(record["time"], float)
        client.quit()
        stats = wait_for(lambda: self.fake.mailbox_stats(address).get("current") == 0 and
                         self.fake.mailbox_stats(address))
        self.assertTrue(stats)
        self.assertEqual((stats["connections"], stats["max_concurrent"], stats["accepted"]),
                         (1, 1, 1))
        self.assertGreater(self.fake.stats()["connections"], 0)

    def test_pipelined_transaction(self):
        wire = Wire(self.fake.port)
        self.addCleanup(wire.close)
        self.assertTrue(wire.reply().startswith("220"))
        self.assertIn("PIPELINING", wire.command("EHLO client.example"))
        wire.starttls()
        wire.command("EHLO client.example")
        self.assertTrue(wire.login("pipe@acme.example").startswith("235"))
        wire.send("MAIL FROM:<pipe@acme.example>\r\nRCPT TO:<a@example.test>\r\n"
                  "RCPT TO:<b@example.test>\r\nDATA\r\n")
        self.assertEqual([wire.reply()[:3] for _ in range(4)], ["250", "250", "250", "354"])
        wire.send(message("pipe@acme.example") + ".\r\nQUIT\r\n")
        self.assertEqual([wire.reply()[:3] for _ in range(2)], ["250", "221"])
        self.assertEqual(len(self.fake.accepted("pipe@acme.example")), 1)

    def test_unreadable_config_keeps_the_previous_one(self):
        self.fake.config_path.write_text('{"mailboxes": {"rep1@acme.example": ')
        try:
            self.assertTrue(wait_for(lambda: self.client() and self.fake.stats()["config_error"]))
            self.client("rep1@acme.example")  # still the previous config
        finally:
            self.fake.write_config()
        self.client("rep1@acme.example")
        self.assertIsNone(self.fake.stats()["config_error"])

    # ---- hostile input ----------------------------------------------------------------------

    def wire(self, tls=False, login=None):
        wire = Wire(self.fake.port)
        self.addCleanup(wire.close)
        self.assertTrue(wire.reply().startswith("220"))
        wire.command("EHLO client.example")
        if tls:
            wire.starttls()
            wire.command("EHLO client.example")
        if login:
            self.assertTrue(wire.login(login).startswith("235"))
        return wire

    def test_hostile_input(self):
        wire = self.wire()
        self.assertEqual(wire.command("NOOP " + "x" * 20000)[:3], "500")  # overlong line
        self.assertEqual(wire.command(b"NO\x00OP")[:3], "500")  # NUL byte
        self.assertEqual(wire.command(b"MAIL FROM:<\xc3\xa9@example.test>")[:3], "500")
        wire.send("NOOP\n")  # bare LF
        self.assertEqual(wire.reply()[:3], "250")
        wire.send("".join(f"BOGUS{i}\r\n" for i in range(10)))  # pipelined garbage
        replies = [wire.reply() for _ in range(6)]
        self.assertTrue(replies[-1] == "" or replies[-1].startswith("502"), replies)

        # TLS handshakes that stop half-way or are not TLS at all.
        for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"EHLO plain text\r\n"):
            wire = self.wire()
            self.assertTrue(wire.command("STARTTLS").startswith("220"))
            wire.send(junk)
            wire.sock.shutdown(socket.SHUT_WR)
            wire.reply()  # whatever comes back, until the server closes
            wire.close()

        wire = self.wire(tls=True)
        self.assertEqual(wire.command("AUTH PLAIN !!!notbase64")[:3], "501")
        self.assertEqual(wire.command("AUTH XOAUTH2 !!!")[:3], "501")
        garbage = base64.b64encode(b"\x01\x01\xff\xfe").decode()
        self.assertEqual(wire.command(f"AUTH XOAUTH2 {garbage}")[:3], "501")
        self.assertEqual(wire.command("AUTH LOGIN")[:3], "334")
        self.assertEqual(wire.command("*")[:3], "501")  # client aborts the exchange
        self.assertTrue(wire.login("rep1@acme.example").startswith("235"))
        self.assertEqual(wire.command("MAIL FROM:<rep1@acme.example>")[:3], "250")
        self.assertEqual(wire.command("RCPT TO:<a@example.test>")[:3], "250")
        self.assertEqual(wire.command("DATA")[:3], "354")
        wire.send(b"From: rep1@acme.example\r\n\r\n" + b"y" * 5000 + b"\r\n.\r\n")
        self.assertEqual(wire.reply()[:3], "500")  # line too long, message dropped
        self.assertEqual(wire.command("MAIL FROM:<rep1@acme.example>")[:3], "250")
        self.assertEqual(wire.command("RCPT TO:<a@example.test>")[:3], "250")
        self.assertEqual(wire.command("DATA")[:3], "354")
        wire.send(b"From: <<<@@@>>> \xff\xfe\x00\r\nMessage-ID: \x01\x02\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(wire.reply(), SEND_AS)
        self.assertEqual(wire.command("MAIL FROM:<rep1@acme.example>")[:3], "250")
        self.assertEqual(wire.command("RCPT TO:<a@example.test>")[:3], "250")
        self.assertEqual(wire.command("DATA")[:3], "354")
        wire.send(b"From: rep1@acme.example\r\nSubject: never finished\r\n\r\npart")
        wire.close()  # the connection ends in the middle of DATA

        accepted_before = len(self.fake.accepted("rep1@acme.example"))
        client = self.client("rep1@acme.example")
        self.assertEqual(send(client, "rep1@acme.example", ["a@example.test"],
                              message("rep1@acme.example"))[:3], "250")
        self.assertEqual(len(self.fake.accepted("rep1@acme.example")), accepted_before + 1)
        self.assertEqual(self.fake.stats()["internal_errors"], 0, self.fake.log_text()[-3000:])


class M365FakeProcessTest(unittest.TestCase):
    def setUp(self):
        self.tmp_ctx = Workdir()
        self.tmp = self.tmp_ctx.__enter__()
        self.addCleanup(self.tmp_ctx.__exit__, None, None, None)

    def test_sigterm_then_restart_keeps_the_window(self):
        address = "rep1@acme.example"
        fake = M365Fake(self.tmp, {address: box(recipients_per_window=3)})
        self.addCleanup(fake.stop)
        fake.start()
        client = fake.smtp(address, PASSWORD)
        self.assertEqual(send(client, address, ["a@example.test", "b@example.test"],
                              message(address))[:3], "250")
        # SIGTERM with a session still open: a clean exit all the same.
        self.assertEqual(fake.stop(), 0)
        client.close()
        fake.start()
        client = fake.smtp(address, PASSWORD)
        self.addCleanup(client.close)
        self.assertTrue(send(client, address, ["c@example.test", "d@example.test"],
                             message(address)).startswith(QUOTA_PREFIX))
        self.assertEqual(send(client, address, ["c@example.test"], message(address))[:3], "250")

    def test_invalid_config_at_start_is_an_error(self):
        fake = M365Fake(self.tmp, {"rep1@acme.example": {"auth": "maybe"}})
        self.addCleanup(fake.stop)
        with self.assertRaises(RuntimeError) as caught:
            fake.start()
        self.assertIn("mailboxes.rep1@acme.example.auth", str(caught.exception))
        self.assertEqual(fake.proc.returncode, 2)


if __name__ == "__main__":
    unittest.main()
