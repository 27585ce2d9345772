#!/usr/bin/python3
"""A stand-in for Microsoft 365's SMTP submission endpoint (smtp.office365.com:587), for tests.

One listening port plays the endpoint for every mailbox of a JSON config: STARTTLS, AUTH only
after STARTTLS, the per-mailbox limits (rolling recipient window, messages per minute, concurrent
sessions) and the reply texts of /work/shared/MICROSOFT365.md. It is built on aiosmtpd (Debian's
python3-aiosmtpd, so run it with /usr/bin/python3) and shares no code with mailgate on purpose.

    m365_smtp.py --port P --cert C --key K --config CONFIG.json --state-dir DIR

prints "ready <port>" on stdout once it listens (port 0 picks a free one), logs to stderr, re-reads
CONFIG.json whenever the file changes, records every accepted and refused message under DIR (see
README.md beside this file) and exits with status 0 on SIGTERM or SIGINT.
"""
import argparse
import asyncio
import base64
import binascii
import collections
import email.parser
import email.policy
import email.utils
import itertools
import json
import logging
import os
import pathlib
import signal
import ssl
import sys
import time

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, TLSSetupException

log = logging.getLogger("m365fake")

MAX_MESSAGE_SIZE = 157286400  # what Microsoft 365 advertises in EHLO

# Replies. The texts are those of MICROSOFT365.md, which the gateway classifies by substring.
R_NOT_AUTHENTICATED = "530 5.7.57 Client not authenticated to send mail"
R_AUTH_NOT_OFFERED = "504 5.7.4 Unrecognized authentication type"
R_AUTH_OK = "235 2.7.0 Authentication successful"
R_AUTH_FAILED = "535 5.7.3 Authentication unsuccessful"
R_SMTP_AUTH_OFF = ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
                   "for the {scope}. Visit https://aka.ms/smtp_auth_disabled for more information.")
R_BASIC_AUTH_OFF = "535 5.7.139 Authentication unsuccessful, basic authentication is disabled."
R_BASIC_AUTH_RETIRED = "550 5.7.30 Basic authentication is not supported for Client Submission."
R_BLOCKED = "550 5.1.8 Access denied, bad outbound sender"
R_SENDER_THROTTLED = "550 5.2.252 Sender throttled due to continuous invalid recipients errors"
R_CONCURRENCY = "432 4.3.2 Concurrent connections limit exceeded."
R_SEND_AS = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
R_QUOTA = ("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
           "process message due to a permanent exception with message [BeginDiagnosticData]Cannot "
           "submit message. 0.35250:0A00E5C1, 1.36674:0A000000, "
           "1.61250:00000000[EndDiagnosticData]")
R_SPAM = ("554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; WASCL UserAction verdict "
          "is not None. Actual verdict is RefuseQuota, ShowTierUpgrade. OutboundSpamException: "
          "WASCL UserAction verdict is not None. Actual verdict is RefuseQuota, ShowTierUpgrade.")
R_RATE = "450 4.7.0 Message submission rate for this client has exceeded the configured limit"
R_INTERNAL = "451 4.3.0 Internal error in the test stand-in (see its stderr)"

AUTH_MODES = ("ok", "bad_password", "smtp_auth_disabled_tenant", "smtp_auth_disabled_mailbox",
              "basic_auth_disabled", "basic_auth_retired", "blocked", "sender_throttled", "spam")

# Microsoft's own figures: a mailbox that does not set a field gets these.
MAILBOX_DEFAULTS = {
    "password": None,
    "token": None,
    "aliases": [],
    "recipients_per_window": 10000,
    "window_seconds": 86400,
    "messages_per_minute": 30,
    "max_connections": 3,
    "auth": "ok",
    "quota_exceeded": False,
    # The first N messages accepted for this mailbox are recorded as accepted, then the
    # connection is cut before the 250 goes out: the client cannot know the outcome.
    "drop_after_data": 0,
}


class ConfigError(Exception):
    pass


def _check_mailbox(address, raw):
    """The mailbox entry with defaults filled in; raises ConfigError naming the bad field."""
    where = f"mailboxes.{address}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be an object")
    unknown = sorted(set(raw) - set(MAILBOX_DEFAULTS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    box = dict(MAILBOX_DEFAULTS)
    box.update(raw)
    for key in ("password", "token"):
        if box[key] is not None and not isinstance(box[key], str):
            raise ConfigError(f"{where}.{key}: must be a string")
    aliases = box["aliases"]
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ConfigError(f"{where}.aliases: must be a list of strings")
    box["aliases"] = [a.lower() for a in aliases]
    for key in ("recipients_per_window", "messages_per_minute", "max_connections",
                "drop_after_data"):
        value = box[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}.{key}: must be an integer >= 0")
    window = box["window_seconds"]
    if isinstance(window, bool) or not isinstance(window, (int, float)) or window <= 0:
        raise ConfigError(f"{where}.window_seconds: must be a number > 0")
    if box["auth"] not in AUTH_MODES:
        raise ConfigError(f"{where}.auth: {box['auth']!r} is not one of {', '.join(AUTH_MODES)}")
    if not isinstance(box["quota_exceeded"], bool):
        raise ConfigError(f"{where}.quota_exceeded: must be true or false")
    return box


def parse_config(text):
    """{"advertise_auth": bool, "mailboxes": {lowercased address: mailbox}}; raises ConfigError."""
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"not JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError("top level must be an object")
    unknown = sorted(set(raw) - {"advertise_auth", "mailboxes"})
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(unknown)}")
    advertise = raw.get("advertise_auth", True)
    if not isinstance(advertise, bool):
        raise ConfigError("advertise_auth: must be true or false")
    mailboxes = raw.get("mailboxes", {})
    if not isinstance(mailboxes, dict):
        raise ConfigError("mailboxes: must be an object keyed by address")
    checked = {}
    for address, entry in mailboxes.items():
        if address.lower() in checked:
            raise ConfigError(f"mailboxes.{address}: listed twice (addresses are case-insensitive)")
        checked[address.lower()] = _check_mailbox(address, entry)
    return {"advertise_auth": advertise, "mailboxes": checked}


class ConfigFile:
    """The config, re-read when the file's identity (inode, mtime, size) changes.

    A file that does not parse leaves the previous config in force; the error is logged and kept
    in `error` (and so in stats.json) until a good version arrives.
    """

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.stamp = None
        self.error = None
        self.on_change = None  # called after every reload attempt that changed `error`
        self.config = self._load()  # raises ConfigError at start-up: a bad first config is fatal

    def _identity(self):
        st = self.path.stat()
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self):
        stamp = self._identity()
        config = parse_config(self.path.read_text(encoding="utf-8"))
        self.stamp = stamp
        return config

    def current(self):
        try:
            if self._identity() == self.stamp:
                return self.config
            self.config = self._load()
            log.info("config reloaded: %d mailbox(es), advertise_auth=%s",
                     len(self.config["mailboxes"]), self.config["advertise_auth"])
            error = None
        except (OSError, UnicodeDecodeError, ConfigError) as e:
            error = f"{self.path}: {e}"
            if error != self.error:
                log.error("config not reloaded, keeping the previous one: %s", error)
        if error != self.error:
            self.error = error
            if self.on_change:
                self.on_change()
        return self.config

    def mailbox(self, address):
        """The mailbox's current settings; defaults for a mailbox removed since it logged in."""
        return self.current()["mailboxes"].get(address) or dict(MAILBOX_DEFAULTS)


class MailboxRuntime:
    """What the stand-in tracks for one mailbox while it runs."""

    def __init__(self):
        self.sessions = 0  # authenticated sessions open now
        self.slots = 0  # of those, sessions admitted under max_connections
        self.max_concurrent = 0
        self.connections = 0  # authenticated sessions ever
        self.accepted = 0
        self.refused = 0
        self.concurrency_refusals = 0
        self.auth_failures = 0
        self.dropped = 0  # connections cut after the data (drop_after_data)
        self.sent = collections.deque()  # (time, recipients) of accepted messages, oldest first
        self.minute = collections.deque()  # times of accepted messages in the last 60 s

    def recipients_in_window(self, now, window):
        while self.sent and self.sent[0][0] <= now - window:
            self.sent.popleft()
        return sum(n for _, n in self.sent)

    def messages_last_minute(self, now):
        while self.minute and self.minute[0] <= now - 60:
            self.minute.popleft()
        return len(self.minute)

    def stats(self):
        return {"current": self.sessions, "max_concurrent": self.max_concurrent,
                "connections": self.connections, "accepted": self.accepted,
                "refused": self.refused, "concurrency_refusals": self.concurrency_refusals,
                "auth_failures": self.auth_failures}


class Recorder:
    """accepted.jsonl and refused.jsonl (one JSON object a line, flushed per line) and stats.json
    (replaced atomically on every change) in the state directory."""

    def __init__(self, state_dir):
        self.dir = pathlib.Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.accepted_file = open(self.dir / "accepted.jsonl", "a", encoding="utf-8")
        self.refused_file = open(self.dir / "refused.jsonl", "a", encoding="utf-8")

    def previous_accepted(self):
        """Records of an earlier run with the same state directory (to refill the windows)."""
        records = []
        with open(self.dir / "accepted.jsonl", encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                    records.append((str(record["mailbox"]), float(record["time"]),
                                    len(record["rcpt_to"])))
                except (ValueError, KeyError, TypeError):
                    continue
        return records

    @staticmethod
    def _append(f, record):
        f.write(json.dumps(record, ensure_ascii=True) + "\n")
        f.flush()

    def accepted(self, record):
        self._append(self.accepted_file, record)

    def refused(self, record):
        self._append(self.refused_file, record)

    def stats(self, stats):
        tmp = self.dir / "stats.json.tmp"
        tmp.write_text(json.dumps(stats, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.dir / "stats.json")

    def close(self):
        self.accepted_file.close()
        self.refused_file.close()


def header_addresses(content):
    """(From addresses, Message-ID) of a message; From is None when a From header is unreadable."""
    try:
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            content, headersonly=True)
        message_id = msg.get("Message-ID")
        message_id = str(message_id).strip() if message_id is not None else None
        values = [str(v) for v in msg.get_all("From") or []]
        pairs = email.utils.getaddresses(values)
        froms = [addr for _, addr in pairs]
        if values and (not froms or any("@" not in a for a in froms)):
            return None, message_id
        return froms, message_id
    except Exception:  # a header the parser chokes on: treat it as an unreadable From
        log.exception("cannot parse the message header")
        return None, None


def _printable(text, limit=300):
    """A header value made safe for a log or JSON field: no control characters, bounded length."""
    if text is None:
        return None
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


class Connection:
    """Per-connection state, kept on the protocol object (it survives STARTTLS; the aiosmtpd
    Session does not)."""

    ids = itertools.count(1)

    def __init__(self):
        self.id = next(Connection.ids)
        self.mailbox = None  # lowercased primary address once authenticated
        self.has_slot = False
        self.closed = False


class Submission(SMTP):
    """aiosmtpd's SMTP with Microsoft's AUTH LOGIN prompts and a hook when the connection ends."""

    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, handler, **kwargs):
        super().__init__(handler, **kwargs)
        self.m365 = Connection()

    def connection_made(self, transport):
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.event_handler.connection_opened(self)

    def connection_lost(self, error):
        try:
            super().connection_lost(error)
        finally:
            self.event_handler.connection_closed(self)


class Microsoft365:
    """The aiosmtpd handler: Microsoft 365's policy, on top of the protocol aiosmtpd speaks.

    Runs on the event loop thread only; every hook is called by aiosmtpd for one connection.
    """

    def __init__(self, config, recorder, hostname):
        self.config = config
        self.recorder = recorder
        self.hostname = hostname
        self.boxes = collections.defaultdict(MailboxRuntime)
        self.live = set()  # protocols with an open connection, closed at shutdown
        self.connections = 0
        self.internal_errors = 0
        self.message_ids = itertools.count(1)
        config.on_change = self.write_stats
        for mailbox, at, recipients in recorder.previous_accepted():
            box = self.boxes[mailbox]
            box.sent.append((at, recipients))
            box.minute.append(at)
        for box in self.boxes.values():
            # Sorting keeps the deques oldest-first even if earlier runs interleaved.
            box.sent = collections.deque(sorted(box.sent))
            box.minute = collections.deque(sorted(box.minute))

    # ---- bookkeeping ----------------------------------------------------------------------

    def write_stats(self):
        try:
            self.recorder.stats({
                "connections": self.connections,
                "current_connections": len(self.live),
                "internal_errors": self.internal_errors,
                "config_error": self.config.error,
                "mailboxes": {addr: box.stats() for addr, box in sorted(self.boxes.items())},
            })
        except OSError as e:
            log.error("cannot write stats.json: %s", e)

    def refuse(self, server, stage, reply, mailbox=None, envelope=None, message_id=None,
               **extra):
        """Records a refusal and returns the reply to send."""
        conn = server.m365
        mailbox = mailbox or conn.mailbox
        record = {"mailbox": mailbox, "stage": stage, "reply": reply, "time": time.time()}
        if envelope is not None:
            record["mail_from"] = envelope.mail_from
            record["rcpt_to"] = list(envelope.rcpt_tos)
        if message_id is not None:
            record["message_id"] = message_id
        record.update(extra)
        self.recorder.refused(record)
        if mailbox is not None and (mailbox in self.config.current()["mailboxes"]
                                    or mailbox in self.boxes):
            box = self.boxes[mailbox]
            box.refused += 1
            if stage == "AUTH":
                box.auth_failures += 1
            if reply == R_CONCURRENCY:
                box.concurrency_refusals += 1
        log.info("conn %d %s refused for %s: %s", conn.id, stage, mailbox, reply)
        self.write_stats()
        return reply

    def connection_opened(self, server):
        self.live.add(server)
        self.connections += 1
        log.info("conn %d from %s", server.m365.id, server.session.peer)
        self.write_stats()

    def connection_closed(self, server):
        conn = server.m365
        if conn.closed:  # aiosmtpd may report a failed TLS handshake twice
            return
        conn.closed = True
        self.live.discard(server)
        if conn.mailbox is not None:
            box = self.boxes[conn.mailbox]
            box.sessions -= 1
            if conn.has_slot:
                box.slots -= 1
        log.info("conn %d closed", conn.id)
        self.write_stats()

    def _take_slot(self, conn):
        """Admits the session under max_connections if a slot is free; True if it holds one."""
        if conn.has_slot:
            return True
        box = self.boxes[conn.mailbox]
        if box.slots < self.config.mailbox(conn.mailbox)["max_connections"]:
            box.slots += 1
            conn.has_slot = True
        return conn.has_slot

    # ---- authentication ---------------------------------------------------------------------

    def _login(self, server, mechanism, login, secret):
        """Decides an AUTH attempt; returns the AuthResult aiosmtpd expects."""
        address = login.strip().lower()
        box = self.config.current()["mailboxes"].get(address)
        reply = None
        if box is None:
            reply = R_AUTH_FAILED
        elif box["auth"] == "smtp_auth_disabled_tenant":
            reply = R_SMTP_AUTH_OFF.format(scope="Tenant")
        elif box["auth"] == "smtp_auth_disabled_mailbox":
            reply = R_SMTP_AUTH_OFF.format(scope="Mailbox")
        elif mechanism == "XOAUTH2":
            # OAuth2 is not basic authentication: the basic-auth modes do not apply to it.
            if box["token"] is None or secret != box["token"]:
                reply = R_AUTH_FAILED
        elif box["auth"] == "basic_auth_disabled":
            reply = R_BASIC_AUTH_OFF
        elif box["auth"] == "basic_auth_retired":
            reply = R_BASIC_AUTH_RETIRED
        elif box["auth"] == "bad_password" or box["password"] is None \
                or secret != box["password"]:
            reply = R_AUTH_FAILED
        if reply is not None:
            self.refuse(server, "AUTH", reply, mailbox=_printable(address, 200),
                        mechanism=mechanism)
            return AuthResult(success=False, handled=False, message=reply)
        conn = server.m365
        conn.mailbox = address
        runtime = self.boxes[address]
        runtime.sessions += 1
        runtime.connections += 1
        runtime.max_concurrent = max(runtime.max_concurrent, runtime.sessions)
        self._take_slot(conn)
        log.info("conn %d authenticated as %s with %s (%d session(s) open)", conn.id, address,
                 mechanism, runtime.sessions)
        self.write_stats()
        return AuthResult(success=True, auth_data=address)

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        """aiosmtpd's authenticator for the built-in LOGIN and PLAIN mechanisms."""
        login = auth_data.login.decode("utf-8", errors="replace")
        password = auth_data.password.decode("utf-8", errors="replace")
        return self._login(server, mechanism, login, password)

    async def auth_XOAUTH2(self, server, args):
        """SASL XOAUTH2: base64("user=" addr ^A "auth=Bearer " token ^A ^A), inline or after 334."""
        if len(args) > 1:
            blob = args[1].encode("ascii", errors="replace")
            try:
                decoded = base64.b64decode(blob, validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        else:
            decoded = await server.challenge_auth(b"", encode_to_b64=False)
            if decoded is MISSING:  # aiosmtpd has already answered
                return AuthResult(success=False, handled=True)
        fields = {}
        for part in decoded.decode("utf-8", errors="replace").split("\x01"):
            key, _, value = part.partition("=")
            fields[key] = value
        bearer = fields.get("auth", "")
        if "user" not in fields or not bearer.startswith("Bearer "):
            reply = "501 5.5.2 Malformed XOAUTH2 initial response"
            self.refuse(server, "AUTH", reply, mechanism="XOAUTH2")
            return AuthResult(success=False, handled=False, message=reply)
        return self._login(server, "XOAUTH2", fields["user"], bearer[len("Bearer "):])

    # ---- SMTP hooks -----------------------------------------------------------------------

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        lines = [f"{self.hostname} Hello [{session.peer[0] if session.peer else 'unknown'}]",
                 f"SIZE {MAX_MESSAGE_SIZE}", "PIPELINING", "ENHANCEDSTATUSCODES"]
        if session.ssl is None:
            lines.append("STARTTLS")
        elif self.config.current()["advertise_auth"]:
            lines.append("AUTH LOGIN PLAIN XOAUTH2")
        lines.append("8BITMIME")
        return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]

    async def handle_AUTH(self, server, session, envelope, args):
        if session.ssl is None:
            return self.refuse(server, "AUTH", R_NOT_AUTHENTICATED, mechanism=args[0])
        if not self.config.current()["advertise_auth"]:
            return self.refuse(server, "AUTH", R_AUTH_NOT_OFFERED, mechanism=args[0])
        return MISSING  # on to the mechanism, then authenticate() or auth_XOAUTH2()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        conn = server.m365
        if not session.authenticated or conn.mailbox is None:
            return self.refuse(server, "MAIL", R_NOT_AUTHENTICATED, mail_from=address)
        mode = self.config.mailbox(conn.mailbox)["auth"]
        if mode == "blocked":
            return self.refuse(server, "MAIL", R_BLOCKED, mail_from=address)
        if mode == "sender_throttled":
            return self.refuse(server, "MAIL", R_SENDER_THROTTLED, mail_from=address)
        if not self._take_slot(conn):
            return self.refuse(server, "MAIL", R_CONCURRENCY, mail_from=address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server, session, envelope):
        conn = server.m365
        address = conn.mailbox
        box = self.config.mailbox(address)
        runtime = self.boxes[address]
        content = envelope.original_content or b""
        froms, message_id = header_addresses(content)
        message_id = _printable(message_id)
        allowed = {address, *box["aliases"]}
        senders = [envelope.mail_from] + (froms or [])
        if froms is None or any(s.lower() not in allowed for s in senders):
            return self.refuse(server, "DATA", R_SEND_AS, envelope=envelope,
                               message_id=message_id,
                               **{"from": [_printable(a) for a in froms or []]})
        if box["auth"] == "spam":
            return self.refuse(server, "DATA", R_SPAM, envelope=envelope, message_id=message_id)
        now = time.time()
        recipients = len(envelope.rcpt_tos)
        used = runtime.recipients_in_window(now, box["window_seconds"])
        if box["quota_exceeded"] or used + recipients > box["recipients_per_window"]:
            return self.refuse(server, "DATA", R_QUOTA, envelope=envelope,
                               message_id=message_id, window_used=used)
        if runtime.messages_last_minute(now) >= box["messages_per_minute"]:
            return self.refuse(server, "DATA", R_RATE, envelope=envelope, message_id=message_id)
        runtime.sent.append((now, recipients))
        runtime.minute.append(now)
        runtime.accepted += 1
        self.recorder.accepted({
            "mailbox": address, "mail_from": envelope.mail_from,
            "rcpt_to": list(envelope.rcpt_tos), "message_id": message_id,
            "from": [_printable(a) for a in froms],
            "size": len(content), "time": now})
        self.write_stats()
        internal_id = next(self.message_ids)
        log.info("conn %d accepted message %d for %s: %d recipient(s), %d in window",
                 conn.id, internal_id, address, recipients, used + recipients)
        if runtime.dropped < box["drop_after_data"]:
            runtime.dropped += 1
            log.info("conn %d cut after the data of message %d (drop_after_data)", conn.id,
                     internal_id)
            server.transport.abort()
            return "250 2.0.0 OK (never sent: the connection was cut)"
        return f"250 2.0.0 OK <m365fake-{internal_id}@{self.hostname}> Queued mail for delivery"

    async def handle_exception(self, error):
        if isinstance(error, TLSSetupException):
            log.info("TLS handshake failed: %r", error.__cause__)
            return "454 4.7.0 TLS negotiation failed"
        self.internal_errors += 1
        log.error("internal error", exc_info=error)
        self.write_stats()
        return R_INTERNAL


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--hostname", default="fake.outlook.office365.example")
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds a client may stay silent before it is disconnected")
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s m365_smtp %(levelname)s %(message)s")
    # aiosmtpd's own log says every line of every session and warns about its deprecated
    # login_data on each AUTH; its errors are still worth seeing.
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    try:
        config = ConfigFile(args.config)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(args.cert, args.key)
        recorder = Recorder(args.state_dir)
    except (OSError, ssl.SSLError, ConfigError, UnicodeDecodeError) as e:
        print(f"m365_smtp: cannot start: {e}", file=sys.stderr)
        return 2
    handler = Microsoft365(config, recorder, args.hostname)

    async def serve():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def factory():
            return Submission(handler, hostname=args.hostname,
                              ident="Microsoft ESMTP MAIL Service ready (test stand-in)",
                              tls_context=tls, data_size_limit=MAX_MESSAGE_SIZE,
                              auth_require_tls=False,  # handle_AUTH refuses before TLS itself
                              authenticator=handler.authenticate, timeout=args.timeout,
                              loop=loop)

        try:
            server = await loop.create_server(factory, host=args.host, port=args.port)
        except OSError as e:
            print(f"m365_smtp: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
            return 2
        port = server.sockets[0].getsockname()[1]
        handler.write_stats()
        log.info("listening on %s:%d, config %s, state %s", args.host, port, args.config,
                 args.state_dir)
        print(f"ready {port}", flush=True)
        await stop.wait()
        log.info("stopping")
        server.close()
        for protocol in list(handler.live):
            if protocol.transport is not None:
                protocol.transport.abort()  # no TLS close_notify dance with a stopping server
        await server.wait_closed()
        await asyncio.sleep(0.05)  # lets the closed connections report connection_lost
        handler.write_stats()
        return 0

    try:
        return asyncio.run(serve())
    finally:
        recorder.close()


if __name__ == "__main__":
    sys.exit(main())
