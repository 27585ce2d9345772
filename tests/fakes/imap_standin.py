#!/usr/bin/python3
"""A light, scriptable IMAP4rev1 server that answers like Microsoft 365 (outlook.office365.com:993).

It speaks what an IMAP client of mailgate needs and fails the ways Microsoft fails (the texts of
/work/shared/MICROSOFT365.md), with a per-session footprint small enough for 10,000 sessions in
one process. It shares no code with mailgate on purpose. See README.md beside this file.

    imap_standin.py [--port 0] [--tls --cert C --key K] [--control-port 0] [--mode MODE]
                    [--user USER=SECRET ...] [--greeting-delay S] [--backoff-ms N]

prints "ready <imap port> <control port>" once both listen, and exits 0 on SIGTERM or SIGINT.
The control port answers GET /stats (JSON), POST /mode ({"user": U or null, "mode": M}) and
POST /reset (counters back to zero).
"""
import argparse
import asyncio
import asyncio.sslproto
import base64
import binascii
import json
import os
import pathlib
import signal
import ssl
import subprocess
import sys
import time
import urllib.request

GREETING = b"* OK The Microsoft Exchange IMAP4 service is ready.\r\n"
CAPABILITY = (b"IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN "
              b"IDLE NAMESPACE LITERAL+")
# Microsoft's replies, word for word (the client under test classifies them by substring).
THROTTLED = "NO Request is throttled. Suggested Backoff Time: {ms} milliseconds"
UNAVAILABLE = b"NO Server Unavailable. 15"
BYE_CLOSED = b"* BYE Connection closed. 14\r\n"
NOT_CONNECTED = b"BAD User is authenticated but not connected."
COMMAND_ERROR = b"BAD Command Error. 10"

# Folders of a new Microsoft 365 mailbox: (name as sent in LIST, flags).
FOLDERS = ((b"INBOX", b"\\HasNoChildren"), (b'"Sent Items"', b"\\HasNoChildren \\Sent"),
           (b"Drafts", b"\\HasNoChildren \\Drafts"),
           (b'"Deleted Items"', b"\\HasNoChildren \\Trash"))
FOLDER_NAMES = {b"INBOX", b"SENT ITEMS", b"DRAFTS", b"DELETED ITEMS"}

MODES = ("ok", "throttle", "throttleselect", "unavailable", "bye", "notconnected", "authfail",
         "garbage", "hugeliteral", "silent", "dropidle", "slowgreeting")
# Modes that act before anybody logs in: only the command-line flag (or POST /mode without a
# user) can choose them.
PRELOGIN_MODES = ("silent", "slowgreeting")

# asyncio's TLS transport gives every connection a 256 KiB read buffer (Python 3.11): most of a
# session's memory. One TLS record is at most 16 KiB, so that is all a session needs.
asyncio.sslproto.SSLProtocol.max_size = 16 * 1024

MAX_LINE = 65536        # a longer command line ends the session
MAX_LITERAL = 1 << 20   # a client literal above 1 MiB is refused


class UserStats:
    """Counters of one login name. Slots keep 10,000 users cheap."""
    __slots__ = ("attempts", "logins", "failures", "current", "max_concurrent", "throttled",
                 "backoff_until", "attempts_during_backoff")

    def __init__(self):
        self.attempts = self.logins = self.failures = self.current = self.max_concurrent = 0
        self.throttled = self.attempts_during_backoff = 0
        self.backoff_until = 0.0

    def as_dict(self):
        return {"attempts": self.attempts, "logins": self.logins, "failures": self.failures,
                "current": self.current, "max_concurrent": self.max_concurrent,
                "throttled": self.throttled,
                "attempts_during_backoff": self.attempts_during_backoff}


class Server:
    """What every session shares: configuration, per-user modes and the counters."""

    def __init__(self, args):
        self.mode = args.mode
        self.user_modes = {}
        self.secrets = dict(args.users)  # empty: any login with a non-empty secret is accepted
        self.greeting_delay = args.greeting_delay
        self.backoff_ms = args.backoff_ms
        self.inbox_messages = args.inbox_messages
        self.reset()

    def reset(self):
        self.users = {}
        self.connections = self.current_connections = self.max_connections = 0
        self.sessions = self.max_sessions = 0  # authenticated sessions, all users

    def user(self, name):
        stats = self.users.get(name)
        if stats is None:
            stats = self.users[name] = UserStats()
        return stats

    def mode_for(self, user):
        """The user's own mode: from POST /mode, else a "+mode" tag or a local part that names a
        mode (rep1+throttle@x, throttle@x), else the server's mode."""
        if user in self.user_modes:
            return self.user_modes[user]
        local = user.split("@", 1)[0].lower()
        for candidate in (local.rsplit("+", 1)[-1], local):
            if candidate in MODES:
                return candidate
        return self.mode

    def check_secret(self, user, secret):
        if not self.secrets:
            return bool(secret)
        return self.secrets.get(user) == secret

    def stats(self):
        return {"connections": self.connections, "current_connections": self.current_connections,
                "max_connections": self.max_connections, "sessions": self.sessions,
                "max_sessions": self.max_sessions, "mode": self.mode,
                "user_modes": self.user_modes,
                "users": {name: s.as_dict() for name, s in self.users.items()}}


def parse_args(line):
    """IMAP arguments of a command line (literals already inlined): atoms and quoted strings as
    bytes, parentheses as the tokens b"(" and b")". Good enough for the commands served here."""
    out, i, n = [], 0, len(line)
    while i < n:
        c = line[i:i + 1]
        if c == b" ":
            i += 1
        elif c in (b"(", b")"):
            out.append(c)
            i += 1
        elif c == b'"':
            i += 1
            value = bytearray()
            while i < n and line[i:i + 1] != b'"':
                if line[i:i + 1] == b"\\" and i + 1 < n:
                    i += 1
                value += line[i:i + 1]
                i += 1
            out.append(bytes(value))
            i += 1
        else:
            j = i
            while j < n and line[j:j + 1] not in (b" ", b"(", b")"):
                j += 1
            out.append(line[i:j])
            i = j
    return out


class Session(asyncio.Protocol):
    """One client connection. Only slots: a session costs little beyond its transport."""
    __slots__ = ("server", "transport", "buf", "state", "user", "mode", "pending", "literal",
                 "parts", "task", "closed")

    def __init__(self, server):
        self.server = server
        self.transport = None
        self.buf = bytearray()
        self.state = "greeting"  # greeting, notauth, auth, selected, idle, dead, logout
        self.user = None
        self.mode = server.mode
        # (tag, mechanism) while an AUTHENTICATE waits for its response; (tag, state before)
        # while idling.
        self.pending = None
        self.literal = 0      # bytes of a client literal still to come
        self.parts = None     # the command line being assembled around literals
        self.task = None      # the timer or trickle of a fault mode
        self.closed = False

    # ---- connection -------------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        srv = self.server
        srv.connections += 1
        srv.current_connections += 1
        srv.max_connections = max(srv.max_connections, srv.current_connections)
        if self.mode == "silent":
            self.state = "dead"
        elif self.mode == "slowgreeting":
            self.task = asyncio.get_running_loop().call_later(srv.greeting_delay, self.greet)
        else:
            self.greet()

    def greet(self):
        if self.closed:
            return
        self.state = "notauth"
        self.transport.write(GREETING)
        if self.mode in ("garbage", "hugeliteral") and self.user is None:
            self.start_fault()

    def connection_lost(self, exc):
        self.closed = True
        srv = self.server
        srv.current_connections -= 1
        if self.user is not None and self.state not in ("notauth", "greeting"):
            srv.user(self.user).current -= 1
            srv.sessions -= 1
        if self.task is not None:
            self.task.cancel()

    def close(self):
        if not self.closed:
            self.transport.close()

    def send(self, *lines):
        self.transport.write(b"".join(line + b"\r\n" for line in lines))

    # ---- input ------------------------------------------------------------------------------

    def data_received(self, data):
        if self.state in ("dead", "logout", "greeting"):
            return  # a silent, dropped or not yet greeted session reads and ignores
        self.buf += data
        while self.buf and not self.closed and self.state not in ("dead", "logout"):
            if self.literal:
                if len(self.buf) < self.literal:
                    return
                self.parts.append(bytes(self.buf[:self.literal]))
                del self.buf[:self.literal]
                self.literal = 0
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                if len(self.buf) > MAX_LINE:
                    self.transport.write(b"* BYE Line too long.\r\n")
                    self.close()
                return
            line = bytes(self.buf[:end])
            del self.buf[:end + 2]
            if self.literal_start(line):
                continue
            if self.parts is not None:
                line = self.join_literals(line)
            self.line(line)

    def literal_start(self, line):
        """Handles a line that ends with {N} or {N+}: True when a literal follows."""
        if not line.endswith(b"}") or b"{" not in line:
            return False
        head, _, size = line[:-1].rpartition(b"{")
        nonsync = size.endswith(b"+")
        size = size.rstrip(b"+")
        if not size.isdigit():
            return False
        if int(size) > MAX_LITERAL:
            self.send(b"* BAD Literal too big.")
            self.parts = None
            return True
        if self.parts is None:
            self.parts = []
        self.parts.append(head)
        self.literal = int(size)
        if not nonsync:
            self.send(b"+ Ready for additional command text.")
        return True

    def join_literals(self, tail):
        """The command line with each literal quoted in place (enough for parse_args)."""
        pieces = self.parts
        self.parts = None
        out = bytearray()
        for k, piece in enumerate(pieces):
            if k % 2 == 0:
                out += piece
            else:
                out += b'"' + piece.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        return bytes(out + tail)

    # ---- commands ---------------------------------------------------------------------------

    def line(self, line):
        if self.state == "idle":
            if line.strip().upper() == b"DONE":
                tag, self.state = self.pending
                self.pending = None
                self.send(tag + b" OK IDLE completed.")
            return
        if self.pending is not None:
            return self.authenticate_response(line)
        tag, _, rest = line.partition(b" ")
        command, _, rest = rest.partition(b" ")
        if not tag or not command:
            return self.send(b"* BAD Command Error. 10")
        command = command.upper()
        if command == b"UID":
            sub, _, rest = rest.partition(b" ")
            command = b"UID " + sub.upper()
        if self.user is not None and self.mode == "hugeliteral":
            return self.start_fault()  # the first command after login gets the huge literal
        if self.user is not None and self.mode == "notconnected" and command != b"LOGOUT":
            return self.send(tag + b" " + NOT_CONNECTED)
        handler = COMMANDS.get(command)
        if handler is None or (self.state == "notauth") != (command in PRE_AUTH):
            if command in ANY_STATE:
                handler = COMMANDS[command]
            else:
                return self.send(tag + b" " + COMMAND_ERROR)
        handler(self, tag, rest)

    def cmd_capability(self, tag, rest):
        self.send(b"* CAPABILITY " + CAPABILITY, tag + b" OK CAPABILITY completed.")

    def cmd_noop(self, tag, rest):
        self.send(tag + b" OK NOOP completed.")

    def cmd_id(self, tag, rest):
        self.send(b'* ID ("name" "imap_standin" "vendor" "mailgate tests")',
                  tag + b" OK ID completed.")

    def cmd_logout(self, tag, rest):
        self.send(b"* BYE Microsoft Exchange Server IMAP4 server signing off.",
                  tag + b" OK LOGOUT completed.")
        self.state = "logout"
        self.close()

    def cmd_login(self, tag, rest):
        args = parse_args(rest)
        if len(args) != 2:
            return self.send(tag + b" " + COMMAND_ERROR)
        self.try_login(tag, b"LOGIN", args[0], args[1])

    def cmd_authenticate(self, tag, rest):
        args = parse_args(rest)
        if not args or args[0].upper() not in (b"PLAIN", b"XOAUTH2"):
            return self.send(tag + b" NO Unsupported authentication mechanism.")
        mechanism = args[0].upper()
        if len(args) > 1:  # SASL-IR
            return self.sasl(tag, mechanism, args[1])
        self.pending = (tag, mechanism)
        self.send(b"+ ")

    def authenticate_response(self, line):
        tag, mechanism = self.pending
        self.pending = None
        if line.strip() == b"*":
            return self.send(tag + b" BAD AUTHENTICATE cancelled.")
        self.sasl(tag, mechanism, line.strip())

    def sasl(self, tag, mechanism, blob):
        try:
            decoded = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            return self.send(tag + b" NO AUTHENTICATE failed.")
        if mechanism == b"PLAIN":
            fields = decoded.split(b"\0")
            if len(fields) != 3:
                return self.send(tag + b" NO AUTHENTICATE failed.")
            return self.try_login(tag, b"AUTHENTICATE", fields[1], fields[2])
        fields = dict(f.partition(b"=")[::2] for f in decoded.split(b"\x01") if f)
        bearer = fields.get(b"auth", b"")
        if not fields.get(b"user") or not bearer.startswith(b"Bearer "):
            return self.send(tag + b" NO AUTHENTICATE failed.")
        self.try_login(tag, b"AUTHENTICATE", fields[b"user"], bearer[7:])

    def try_login(self, tag, command, user_bytes, secret_bytes):
        srv = self.server
        user = user_bytes.decode("utf-8", errors="replace").lower()
        stats = srv.user(user)
        stats.attempts += 1
        now = time.monotonic()
        if now < stats.backoff_until:
            stats.attempts_during_backoff += 1
        mode = srv.mode_for(user)
        failed = tag + b" NO " + command + b" failed."
        if mode == "throttle":
            stats.throttled += 1
            stats.backoff_until = now + srv.backoff_ms / 1000
            return self.send(tag + b" " + THROTTLED.format(ms=srv.backoff_ms).encode())
        if mode == "unavailable":
            return self.send(tag + b" " + UNAVAILABLE)
        if mode == "authfail" or not srv.check_secret(user, secret_bytes.decode(
                "utf-8", errors="replace")):
            stats.failures += 1
            return self.send(failed)
        self.user, self.mode, self.state = user, mode, "auth"
        stats.logins += 1
        stats.current += 1
        stats.max_concurrent = max(stats.max_concurrent, stats.current)
        srv.sessions += 1
        srv.max_sessions = max(srv.max_sessions, srv.sessions)
        self.send(tag + b" OK " + command + b" completed.")
        if mode == "bye":
            self.transport.write(BYE_CLOSED)
            self.state = "logout"
            self.close()
        elif mode == "garbage":
            self.start_fault()

    def cmd_enable(self, tag, rest):
        self.send(tag + b" " + COMMAND_ERROR)  # Microsoft 365 usually has no ENABLE

    def cmd_list(self, tag, rest):
        args = parse_args(rest)
        if len(args) != 2:
            return self.send(tag + b" " + COMMAND_ERROR)
        lines = [b"* LIST (" + flags + b') "/" ' + name for name, flags in FOLDERS]
        if args[1] not in (b"*", b"%"):
            wanted = args[1].upper()
            lines = [line for line, (name, _) in zip(lines, FOLDERS)
                     if name.strip(b'"').upper() == wanted]
        self.send(*lines, tag + b" OK LIST completed.")

    def cmd_select(self, tag, rest, command=b"SELECT"):
        args = parse_args(rest)
        if len(args) != 1 or args[0].upper() not in FOLDER_NAMES:
            return self.send(tag + b" NO Folder not found.")  # wording not verified
        if self.mode == "throttleselect":
            stats = self.server.user(self.user)
            stats.throttled += 1
            stats.backoff_until = time.monotonic() + self.server.backoff_ms / 1000
            return self.send(tag + b" " + THROTTLED.format(ms=self.server.backoff_ms).encode())
        exists = self.server.inbox_messages if args[0].upper() == b"INBOX" else 0
        access = b"READ-WRITE" if command == b"SELECT" else b"READ-ONLY"
        self.state = "selected"
        self.send(b"* %d EXISTS" % exists, b"* 0 RECENT",
                  b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $MDNSent)",
                  b"* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $MDNSent)]"
                  b" Permanent flags",
                  b"* OK [UIDVALIDITY 14] UIDVALIDITY value",
                  b"* OK [UIDNEXT %d] The next unique identifier value" % (exists + 1),
                  tag + b" OK [" + access + b"] " + command + b" completed.")

    def cmd_examine(self, tag, rest):
        self.cmd_select(tag, rest, b"EXAMINE")

    def cmd_uid_search(self, tag, rest):
        if self.state != "selected":
            return self.send(tag + b" " + COMMAND_ERROR)
        uids = b" ".join(b"%d" % uid for uid in range(1, self.server.inbox_messages + 1))
        self.send(b"* SEARCH" + (b" " + uids if uids else b""), tag + b" OK SEARCH completed.")

    def cmd_idle(self, tag, rest):
        if self.mode == "dropidle":
            self.send(b"+ idling")
            self.state = "dead"  # Microsoft drops idle sessions without a word
            return
        self.pending, self.state = (tag, self.state), "idle"
        self.send(b"+ idling")

    # ---- faults that write by themselves ------------------------------------------------------

    def start_fault(self):
        loop = asyncio.get_running_loop()
        if self.mode == "garbage":
            self.transport.write(os.urandom(65536))
            self.state = "dead"
            self.task = loop.call_later(0.5, self.close)
        else:  # hugeliteral: 2 GiB announced, then a trickle that never ends
            self.transport.write(b"* 1 FETCH (BODY[] {2147483648}\r\n")
            self.state = "dead"
            self.task = loop.call_later(0.1, self.trickle)

    def trickle(self):
        if self.closed:
            return
        self.transport.write(b"x" * 1024)
        self.task = asyncio.get_running_loop().call_later(0.1, self.trickle)


COMMANDS = {
    b"CAPABILITY": Session.cmd_capability, b"NOOP": Session.cmd_noop, b"ID": Session.cmd_id,
    b"LOGOUT": Session.cmd_logout, b"LOGIN": Session.cmd_login,
    b"AUTHENTICATE": Session.cmd_authenticate, b"ENABLE": Session.cmd_enable,
    b"LIST": Session.cmd_list, b"SELECT": Session.cmd_select, b"EXAMINE": Session.cmd_examine,
    b"UID SEARCH": Session.cmd_uid_search, b"IDLE": Session.cmd_idle,
}
PRE_AUTH = {b"LOGIN", b"AUTHENTICATE"}
ANY_STATE = {b"CAPABILITY", b"NOOP", b"ID", b"LOGOUT"}


# ---- control port ---------------------------------------------------------------------------

async def control(server, reader, writer):
    """One HTTP/1.0-style exchange (GET /stats, POST /mode, POST /reset), then the end."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = (request_line.split(" ") + ["", ""])[:3]
        length = 0
        for header in header_lines:
            name, _, value = header.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await reader.readexactly(length) if length else b""
        status, answer = 200, None
        if method == "GET" and path == "/stats":
            answer = server.stats()
        elif method == "POST" and path == "/reset":
            server.reset()
            answer = {"ok": True}
        elif method == "POST" and path == "/mode":
            request = json.loads(body or b"{}")
            mode, user = request.get("mode"), request.get("user")
            if mode not in MODES or (user is not None and mode in PRELOGIN_MODES):
                status, answer = 400, {"error": f"unknown or pre-login mode {mode!r}"}
            elif user is None:
                server.mode = mode
                answer = {"ok": True}
            else:
                server.user_modes[user.lower()] = mode
                answer = {"ok": True}
        else:
            status, answer = 404, {"error": "GET /stats, POST /mode or POST /reset"}
        data = json.dumps(answer).encode()
        writer.write(b"HTTP/1.0 %d %s\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                     % (status, b"OK" if status == 200 else b"Error", len(data)) + data)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
            ConnectionError, ValueError):
        pass
    finally:
        writer.close()


def parse_user(item):
    user, sep, secret = item.partition("=")
    if not sep or not user or not secret:
        raise argparse.ArgumentTypeError(f"--user wants USER=SECRET, not {item!r}")
    return user.lower(), secret


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="IMAP port; 0 picks a free one")
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--tls", action="store_true", help="implicit TLS (like port 993)")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--mode", choices=MODES, default="ok",
                        help="behaviour of sessions whose login names no mode of its own")
    parser.add_argument("--user", dest="users", type=parse_user, action="append", default=[],
                        metavar="USER=SECRET",
                        help="accepted login (password or bearer token); none: any login with a "
                             "non-empty secret")
    parser.add_argument("--greeting-delay", type=float, default=5.0,
                        help="seconds before the greeting in mode slowgreeting")
    parser.add_argument("--backoff-ms", type=int, default=2000,
                        help="the Suggested Backoff Time of the throttle modes")
    parser.add_argument("--inbox-messages", type=int, default=3,
                        help="messages INBOX claims to hold (EXISTS, UID SEARCH ALL)")
    args = parser.parse_args(argv)
    tls = None
    if args.tls:
        if not (args.cert and args.key):
            parser.error("--tls needs --cert and --key")
        try:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(args.cert, args.key)
        except (OSError, ssl.SSLError) as e:
            print(f"imap_standin: cannot load the certificate: {e}", file=sys.stderr)
            return 2
    server = Server(args)

    async def serve():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            imap = await loop.create_server(lambda: Session(server), args.host, args.port,
                                            ssl=tls, backlog=4096)
            ctl = await asyncio.start_server(lambda r, w: control(server, r, w), args.host,
                                             args.control_port)
        except OSError as e:
            print(f"imap_standin: cannot listen: {e}", file=sys.stderr)
            return 2
        print(f"ready {imap.sockets[0].getsockname()[1]} {ctl.sockets[0].getsockname()[1]}",
              flush=True)
        await stop.wait()
        imap.close()
        ctl.close()
        return 0

    return asyncio.run(serve())


# ---- test-side handle -----------------------------------------------------------------------

class ImapStandin:
    """Starts this file as a process (Debian's /usr/bin/python3) for a test, on free ports.

        standin = ImapStandin(workdir, tls=True, users={"rep1@acme.example": "pw"}).start()
        ... 127.0.0.1:standin.port, self-signed standin.cert ...
        standin.stats()["users"]["rep1@acme.example"]["max_concurrent"]
        standin.set_mode("throttle", user="rep1@acme.example")
        standin.stop()

    extra_args: more command-line options (e.g. ["--mode", "silent"]). The process is registered
    with mgtest so that it is killed when the test run ends even if stop() never ran.
    """

    def __init__(self, workdir, tls=True, users=None, mode="ok", extra_args=()):
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "integration"))
        import mgtest  # the tests' harness; only the handle needs it
        self._mgtest = mgtest
        self.dir = pathlib.Path(workdir)
        self.host = "127.0.0.1"
        self.args = ["/usr/bin/python3", str(pathlib.Path(__file__).resolve()), "--mode", mode]
        if tls:
            self.cert, self.key = mgtest.make_cert(self.dir)
            self.args += ["--tls", "--cert", str(self.cert), "--key", str(self.key)]
        for user, secret in (users or {}).items():
            self.args += ["--user", f"{user}={secret}"]
        self.args += list(extra_args)
        self.proc = self.port = self.control_port = None

    def start(self, timeout=10.0):
        self.log = open(self.dir / f"imap_standin-{os.getpid()}-{id(self)}.log", "ab")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.log)
        self._mgtest._started.append(self.proc)
        line = self.proc.stdout.readline().decode()  # "ready <port> <control port>"
        if not line.startswith("ready "):
            self.proc.wait(timeout)
            raise RuntimeError(f"imap_standin did not start (exit {self.proc.returncode})")
        self.port, self.control_port = (int(x) for x in line.split()[1:3])
        return self

    def _request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://{self.host}:{self.control_port}{path}",
                                         data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def stats(self):
        return self._request("GET", "/stats")

    def set_mode(self, mode, user=None):
        """The mode of new sessions (user=None) or of one login, from its next login on."""
        self._request("POST", "/mode", {"mode": mode, "user": user})

    def reset(self):
        self._request("POST", "/reset", {})

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.proc.stdout.close()
            self.log.close()


if __name__ == "__main__":
    sys.exit(main())
