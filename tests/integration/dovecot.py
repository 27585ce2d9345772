"""Real Dovecot (Debian's dovecot-imapd 2.3) as the IMAP server in tests and benchmarks.

    dc = Dovecot(workdir, users={"rep1@acme.example": "pw"}, capabilities="m365")
    dc.start()
    ... imaplib.IMAP4_SSL("127.0.0.1", dc.imaps_port) ... (self-signed dc.cert) ...
    dc.deliver("rep1@acme.example", raw_bytes, folder="Sent Items")
    dc.count("rep1@acme.example", "Sent Items")
    dc.stop()

Each instance generates its own dovecot.conf in a folder of the work dir (no !include, nothing of
/etc/dovecot is read): own base_dir and state_dir, a log file, passwd-file users with {PLAIN}
passwords, maildir homes, and two listeners on 127.0.0.1 free ports: implicit TLS (imaps_port) and
cleartext with STARTTLS (imap_port). Several instances run side by side without sharing anything.

Dovecot started as root drops to its `dovecot` user for the mail processes, so the folder must be
reachable by that user (mgtest.Workdir is 0755) and the homes belong to it. Started as another
user, everything runs as that user.
"""
import atexit
import os
import pathlib
import pwd
import shlex
import signal
import subprocess
import sys
import time

_HERE = pathlib.Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))
import mgtest  # noqa: E402

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"

# Microsoft 365's capabilities (MICROSOFT365.md), after login. Before login it announces the same
# list; Dovecot's login process adds AUTH=... from auth_mechanisms itself (and STARTTLS on the
# cleartext port), so the login list is given without them.
M365_CAPABILITY = ("IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT "
                   "CHILDREN IDLE NAMESPACE LITERAL+")
M365_LOGIN_CAPABILITY = ("IMAP4 IMAP4rev1 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE "
                         "LITERAL+")

# The folders of a new Microsoft 365 mailbox that a client looks for, with their special-use flag.
FOLDERS = (("Sent Items", r"\Sent"), ("Drafts", r"\Drafts"), ("Deleted Items", r"\Trash"))

_running = []  # every started instance, so that none outlives the test run


def _kill_all():
    for dc in _running:
        dc.kill9()


atexit.register(_kill_all)


def _descendants(pid):
    """PIDs of every process below pid, from one scan of /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (2nd field) may hold spaces or parentheses: fields follow the last ')'.
        fields = stat[stat.rindex(b")") + 2:].split()
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


class Dovecot:
    """One Dovecot instance with its config, users, mail and log under workdir/NAME-N.

    users: {login: password} (logins are full addresses; passwords stored as {PLAIN}).
    capabilities: "full" (Dovecot's own list) or "m365" (Microsoft 365's, before and after login;
        AUTH=PLAIN AUTH=XOAUTH2 only).
    special_use: False drops every special-use flag, so "Sent Items" is found only by its name.
    oauth2_introspection_url: when set, an oauth2 passdb checks XOAUTH2/OAUTHBEARER tokens with
        that URL (POST token=..., JSON {"active": true, "username": login}); PLAIN and LOGIN stay
        with the passwd-file. When None, an XOAUTH2 token is checked like a password.
    client_limit: connections one imap-login process serves (and the sessions the instance is
        sized for); process_limit: imap (mail) processes, one per logged-in session.
    idle_notify_interval: seconds between Dovecot's "* OK Still here" during IDLE.
    """

    _instances = 0

    def __init__(self, workdir, users=None, capabilities="full", special_use=True,
                 oauth2_introspection_url=None, client_limit=1000, process_limit=1000,
                 idle_notify_interval=120, name="dovecot"):
        if capabilities not in ("full", "m365"):
            raise ValueError(f"capabilities must be 'full' or 'm365', not {capabilities!r}")
        Dovecot._instances += 1
        self.dir = pathlib.Path(workdir) / f"{name}-{Dovecot._instances}"
        self.dir.mkdir(parents=True)
        os.chmod(self.dir, 0o755)
        self.users = dict(users or {"user@example.test": "password"})
        self.capabilities = capabilities
        self.special_use = special_use
        self.oauth2_introspection_url = oauth2_introspection_url
        self.client_limit = client_limit
        self.process_limit = process_limit
        self.idle_notify_interval = idle_notify_interval
        self.host = "127.0.0.1"
        self.imaps_port = mgtest.free_port()
        self.imap_port = mgtest.free_port()
        self.base_dir = self.dir / "run"
        self.state_dir = self.dir / "state"
        self.home_root = self.dir / "home"
        self.config_path = self.dir / "dovecot.conf"
        self.passwd_path = self.dir / "passwd"
        self.log_path = self.dir / "dovecot.log"
        self.cert, self.key = mgtest.make_cert(self.dir)
        os.chmod(self.key, 0o644)  # read by the config process; the folder is a test's own
        for d in (self.base_dir, self.state_dir, self.home_root):
            d.mkdir(mode=0o755)
        self._choose_identity()
        self._write_passwd()
        self._write_config()
        self.proc = None

    # ---- configuration ----------------------------------------------------------------------

    def _choose_identity(self):
        """The unprivileged accounts Dovecot uses: its own when root, otherwise ours."""
        if os.getuid() == 0:
            self.internal_user, self.login_user = "dovecot", "dovenull"
            mail = pwd.getpwnam("dovecot")
        else:
            mail = pwd.getpwuid(os.getuid())
            self.internal_user = self.login_user = mail.pw_name
        self.mail_uid, self.mail_gid = mail.pw_uid, mail.pw_gid

    def home(self, user):
        return self.home_root / user

    def _write_passwd(self):
        lines = []
        for user, password in self.users.items():
            if any(c in user + password for c in ":\n"):
                raise ValueError(f"passwd-file cannot hold {user!r}")
            home = self.home(user)
            home.mkdir(exist_ok=True)
            os.chown(home, self.mail_uid, self.mail_gid)
            # user:password:uid:gid:(gecos):home:(shell):extra fields
            extra = ""
            if self.capabilities == "m365":
                # The mail process takes its capability list from the user's userdb fields. A
                # passwd-file field cannot hold spaces, so the value comes from the environment
                # Dovecot was started with (see _capability_lines and start()).
                extra = "userdb_imap_capability=%{env:MAILGATE_IMAP_CAPABILITY}"
            lines.append(f"{user}:{{PLAIN}}{password}:{self.mail_uid}:{self.mail_gid}::{home}::"
                         f"{extra}")
        self.passwd_path.write_text("\n".join(lines) + "\n")
        os.chmod(self.passwd_path, 0o644)

    def _folder_blocks(self):
        blocks = []
        for folder, flag in FOLDERS:
            special = f"    special_use = {flag}\n" if self.special_use else ""
            blocks.append(f'  mailbox "{folder}" {{\n    auto = subscribe\n{special}  }}\n')
        return "".join(blocks)

    def _capability_lines(self):
        """(imap_capability lines, auth_mechanisms) for the configured capability profile.

        imap-login and imap read the same imap_capability, but imap-login appends AUTH=... from
        auth_mechanisms itself: the setting holds the list without AUTH= for the login process,
        and the full list reaches the mail process through a userdb field (_write_passwd).
        """
        if self.capabilities == "full":
            return "", "plain login xoauth2 oauthbearer"
        return (f"imap_capability = {M365_LOGIN_CAPABILITY}\n"
                "import_environment = $import_environment MAILGATE_IMAP_CAPABILITY\n",
                "plain xoauth2")

    def _write_config(self):
        limit = max(self.client_limit, self.process_limit)
        if self.oauth2_introspection_url:
            oauth_conf = self.dir / "oauth2.conf"
            oauth_conf.write_text(
                f"introspection_url = {self.oauth2_introspection_url}\n"
                "introspection_mode = post\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
                "timeout_msecs = 5000\n")
            os.chmod(oauth_conf, 0o644)
            passdbs = (f"passdb {{\n  driver = passwd-file\n  mechanisms = plain login\n"
                       f"  args = scheme=PLAIN {self.passwd_path}\n}}\n"
                       f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                       f"  args = {oauth_conf}\n}}\n")
        else:
            passdbs = (f"passdb {{\n  driver = passwd-file\n"
                       f"  args = scheme=PLAIN {self.passwd_path}\n}}\n")
        capability, mechanisms = self._capability_lines()
        text = f"""# Generated by tests/integration/dovecot.py for one test; nothing else is read.
base_dir = {self.base_dir}
state_dir = {self.state_dir}
instance_name = mailgate-test-{self.imaps_port}
log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
protocols = imap
listen = {self.host}
default_internal_user = {self.internal_user}
default_login_user = {self.login_user}
first_valid_uid = {self.mail_uid}
last_valid_uid = {self.mail_uid}
first_valid_gid = {self.mail_gid}

# No process reports to the stats service (nothing here reads its figures); a login process that
# started while Dovecot stopped was seen waiting 5 s for the stats handshake.
stats_writer_socket_path =
# A refused login answers at once (the default waits 2 s): tests of bad tokens stay fast.
auth_failure_delay = 0
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
ssl_min_protocol = TLSv1.2
# Cleartext logins are allowed on the STARTTLS port too: tests of `tls: none` need them.
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
{passdbs}userdb {{
  driver = passwd-file
  args = {self.passwd_path}
}}

mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  prefix =
  separator = /
{self._folder_blocks()}}}

imap_idle_notify_interval = {self.idle_notify_interval} secs
mail_max_userip_connections = {limit}
default_client_limit = {limit + 100}
default_vsz_limit = 1G

service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.imaps_port}
    ssl = yes
  }}
  # High-performance mode: a few long-lived login processes, each with many clients.
  service_count = 0
  process_min_avail = 1
  client_limit = {self.client_limit}
  process_limit = {max(2, limit // self.client_limit + 1)}
  vsz_limit = 1G
}}
service imap {{
  process_limit = {self.process_limit}
  client_limit = 1
}}
service auth {{
  client_limit = {limit * 2 + 100}
}}
service anvil {{
  client_limit = {limit * 2 + 100}
  # auth asks anvil here how long to delay a client IP after failed logins (2 s, then up to 15 s
  # more per failure): all tests share 127.0.0.1, so the socket is made unusable for auth, which
  # then runs without penalties.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{capability}"""
        self.config_path.write_text(text)
        os.chmod(self.config_path, 0o644)


    # ---- process ----------------------------------------------------------------------------

    def _env(self):
        env = dict(os.environ)
        env["MAILGATE_IMAP_CAPABILITY"] = M365_CAPABILITY
        return env

    def start(self, timeout=20.0):
        """Starts `dovecot -F` and returns once both ports accept; raises with the log if not."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("Dovecot is already running")
        self._stderr = open(self.dir / "dovecot.stderr", "ab")
        started = time.monotonic()
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=self._stderr,
                                     stderr=subprocess.STDOUT, env=self._env())
        if self not in _running:
            _running.append(self)
        try:
            for port in (self.imaps_port, self.imap_port):
                mgtest.wait_port(self.host, port, timeout=timeout, proc=self.proc)
        except (RuntimeError, TimeoutError) as e:
            self.kill9()
            raise RuntimeError(f"Dovecot did not start: {e}\n{self.log_text()[-4000:]}") from None
        self.start_seconds = time.monotonic() - started
        return self

    def pids(self):
        """The master and every process below it (login, imap, auth, ... processes)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid] + _descendants(self.proc.pid)

    def stop(self, timeout=10.0):
        """SIGTERM to the master (it stops its children), then waits; SIGKILL if it hangs.

        Dovecot takes about 1 s to stop here, now and then 6 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._close_stderr()

    def kill9(self):
        """SIGKILL to the master and every child at once: a crash, with nothing cleaned up."""
        if self.proc is None:
            return
        pids = self.pids()
        for pid in pids:  # the master first, so that it respawns nothing
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        # The children were not ours to wait for; they are gone once /proc forgets them.
        mgtest.wait_for(lambda: not any(os.path.exists(f"/proc/{p}") and _is_alive(p)
                                        for p in pids[1:]), timeout=10)
        self._close_stderr()

    def restart(self):
        """stop() (if still running) and start() again on the same ports, with the same mail."""
        self.stop()
        return self.start()

    def _close_stderr(self):
        if getattr(self, "_stderr", None):
            self._stderr.close()
            self._stderr = None

    def log_text(self):
        """Dovecot's log file, then what it wrote to stdout/stderr (config errors go there)."""
        text = ""
        for path in (self.log_path, self.dir / "dovecot.stderr"):
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    # ---- mail -------------------------------------------------------------------------------

    def doveadm(self, *args, input=None, check=True):
        """Runs `doveadm -c CONF ARGS...` against this instance; returns its stdout (text)."""
        result = subprocess.run([DOVEADM, "-c", str(self.config_path), *args], input=input,
                                capture_output=True, env=self._env(), timeout=30)
        if check and result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} exited with {result.returncode}: "
                               f"{result.stderr.decode(errors='replace')}")
        return result.stdout.decode(errors="replace")

    def deliver(self, user, raw, folder="INBOX"):
        """Stores one message (bytes, or str encoded as UTF-8) in folder, as an MDA would."""
        if isinstance(raw, str):
            raw = raw.encode()
        self.doveadm("save", "-u", user, "-m", folder, input=raw)

    def deliver_command(self, user, folder="INBOX"):
        """deliver() as one shell command that reads the message on stdin, for a program that
        delivers by itself (tests/imap/live runs it with popen)."""
        extra = {k: v for k, v in self._env().items() if os.environ.get(k) != v}
        words = ["env"] + [f"{k}={v}" for k, v in extra.items()]
        words += [DOVEADM, "-c", str(self.config_path), "save", "-u", user, "-m", folder]
        return " ".join(shlex.quote(w) for w in words)

    def count(self, user, folder="INBOX"):
        """Messages in folder right now."""
        out = self.doveadm("-f", "flow", "mailbox", "status", "-u", user, "messages", folder)
        return int(out.strip().split("=", 1)[1])

    def maildir(self, user, folder="INBOX"):
        """The Maildir++ folder of `folder` (INBOX is the Maildir itself; "a/b" is ".a.b")."""
        root = self.home(user) / "Maildir"
        if folder.upper() == "INBOX":
            return root
        return root / ("." + folder.replace("/", "."))

    def fill(self, user, folder, count, size=2048, seed=0, start=0):
        """Writes `count` messages straight into the folder's maildir, much faster than deliver()
        (no process per message): for mailboxes of thousands of messages. Message i (start ..
        start+count-1) has Message-ID <fill-SEED-i@fill.test>, subject "fill SEED i", a Date one
        second after message i-1 and a body of about `size` bytes; fill_message() gives its exact
        bytes. Dovecot gives them UIDs in i order when the folder is next opened. Returns the
        Message-IDs in order."""
        folder_dir = self.maildir(user, folder)
        created = []
        for d in (folder_dir, folder_dir / "cur", folder_dir / "new", folder_dir / "tmp"):
            if not d.exists():
                d.mkdir(parents=True)
                created.append(d)
        if folder.upper() != "INBOX" and not (folder_dir / "maildirfolder").exists():
            (folder_dir / "maildirfolder").touch()
            created.append(folder_dir / "maildirfolder")
        ids = []
        cur = folder_dir / "cur"
        for i in range(start, start + count):
            raw = fill_message(user, seed, i, size)
            # Names sort in i order; S= and W= spare Dovecot a stat and a read for the sizes.
            name = f"{1700000000 + i:012d}.M{i}P{seed}.fill,S={len(raw)},W={len(raw)}:2,"
            path = cur / name
            path.write_bytes(raw)
            created.append(path)
            ids.append(f"<fill-{seed}-{i}@fill.test>")
        if os.getuid() == 0:
            root = self.home(user) / "Maildir"
            for d in [root, *root.iterdir()]:
                if d.is_dir():
                    os.chown(d, self.mail_uid, self.mail_gid)
            for path in created:
                os.chown(path, self.mail_uid, self.mail_gid)
        return ids

    def uidvalidity(self, user, folder="INBOX"):
        """The folder's UIDVALIDITY right now."""
        out = self.doveadm("-f", "flow", "mailbox", "status", "-u", user, "uidvalidity", folder)
        return int(out.strip().split("=", 1)[1])

    def reset_uidvalidity(self, user, folder="INBOX"):
        """Gives the folder a new UIDVALIDITY (as a server does when it rebuilds a folder): every
        client's UIDs of it are void. Returns (old, new)."""
        old = self.uidvalidity(user, folder)
        new = old + 1000
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new), folder)
        return old, self.uidvalidity(user, folder)

    def connections(self):
        """Established TCP connections to either listening port (logged in or not)."""
        ports = {self.imaps_port, self.imap_port}
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    next(f)  # header
                    for line in f:
                        fields = line.split()
                        local_port = int(fields[1].rsplit(":", 1)[1], 16)
                        if fields[3] == "01" and local_port in ports:  # 01: ESTABLISHED
                            count += 1
            except FileNotFoundError:
                continue
        return count


def fill_message(user, seed, i, size=2048):
    """Message i of Dovecot.fill(..., seed=seed): deterministic bytes, CRLF line ends."""
    head = (f"From: Prospect {i} <prospect{i}@fill.test>\r\n"
            f"To: {user}\r\n"
            f"Subject: fill {seed} {i}\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(1700000000 + i))}"
            "\r\n"
            f"Message-ID: <fill-{seed}-{i}@fill.test>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n").encode()
    line = f"Line of message {i} of fill {seed}, padded to a realistic length.".encode()
    body = bytearray()
    n = 0
    while len(head) + len(body) < size:
        body += line + f" {n}\r\n".encode()
        n += 1
    if not body:
        body = bytearray(line + b"\r\n")
    return head + bytes(body)


def _is_alive(pid):
    """False for a zombie or a vanished process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"Z"
