"""Test-side handle on the Microsoft 365 SMTP stand-in (m365_smtp.py beside this file).

    fake = M365Fake(workdir, {"rep1@acme.example": {"password": "pw", "recipients_per_window": 50}})
    fake.start()
    ... point the gateway at 127.0.0.1:fake.port (STARTTLS, self-signed fake.cert) ...
    fake.set_mailbox("rep1@acme.example", quota_exceeded=True)  # in force from the next command
    mgtest.wait_for(lambda: len(fake.accepted("rep1@acme.example")) == 50)
    fake.stop()

The process is started with /usr/bin/python3 (Debian's aiosmtpd lives there) on a free port, and is
registered with mgtest so that it is killed when the test run exits even if stop() never ran.
"""
import copy
import json
import os
import pathlib
import signal
import smtplib
import ssl
import subprocess
import sys

_HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent / "integration"))
import mgtest  # noqa: E402  (found through the path set just above)

FAKE_PYTHON = "/usr/bin/python3"
FAKE_SCRIPT = _HERE / "m365_smtp.py"


def client_tls():
    """A client TLS context that accepts the stand-in's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class M365Fake:
    """One stand-in process, its config file and its records, in a folder of workdir.

    mailboxes: {address: settings} as in README.md (settings not given take Microsoft's
    defaults); advertise_auth: False hides AUTH after STARTTLS for every mailbox.
    """

    _instances = 0

    def __init__(self, workdir, mailboxes=None, advertise_auth=True, name="m365"):
        M365Fake._instances += 1
        self.dir = pathlib.Path(workdir) / f"{name}-{M365Fake._instances}"
        self.dir.mkdir(parents=True)
        self.cert, self.key = mgtest.make_cert(self.dir)
        self.config_path = self.dir / "config.json"
        self.state_dir = self.dir / "state"
        self.log_path = self.dir / "m365_smtp.log"
        self.config = {"advertise_auth": advertise_auth,
                       "mailboxes": copy.deepcopy(mailboxes or {})}
        self.write_config()
        self.host = "127.0.0.1"
        self.port = None
        self.proc = None
        self._stdout_path = self.dir / "stdout"

    # ---- process ------------------------------------------------------------------------

    def start(self, port=None, timeout=20):
        """Starts the stand-in (again, after stop(): same port and state unless port is given)
        and returns self once it listens; raises RuntimeError with its log if it does not."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the stand-in is already running")
        self.port = port or self.port or mgtest.free_port()
        with open(self._stdout_path, "wb") as out, open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(
                [FAKE_PYTHON, str(FAKE_SCRIPT), "--host", self.host, "--port", str(self.port),
                 "--cert", str(self.cert), "--key", str(self.key),
                 "--config", str(self.config_path), "--state-dir", str(self.state_dir)],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        mgtest._started.append(self.proc)
        ready = f"ready {self.port}"
        if not mgtest.wait_for(lambda: self.proc.poll() is not None
                               or ready in self._stdout_path.read_text(), timeout):
            self.stop()
            raise RuntimeError(f"m365_smtp not ready after {timeout}s:\n{self.log_text()[-3000:]}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"m365_smtp exited with {self.proc.returncode}:\n"
                               f"{self.log_text()[-3000:]}")
        return self

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL after timeout seconds; returns the exit status (0 = clean)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        """The stand-in's stderr so far (one line per connection, AUTH, message, refusal)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- config (the stand-in re-reads it before its next command) ------------------------

    def write_config(self):
        """Writes self.config atomically: a new file, so the stand-in sees the change at once."""
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.config, indent=1))
        os.replace(tmp, self.config_path)

    def set_advertise_auth(self, flag):
        self.config["advertise_auth"] = bool(flag)
        self.write_config()

    def set_mailbox(self, address, **settings):
        """Adds the mailbox or updates the given settings of it."""
        self.config["mailboxes"].setdefault(address, {}).update(settings)
        self.write_config()

    def remove_mailbox(self, address):
        self.config["mailboxes"].pop(address, None)
        self.write_config()

    # ---- records --------------------------------------------------------------------------

    def _lines(self, name):
        path = self.state_dir / name
        if not path.exists():
            return []
        # Every record ends with a newline; text after the last one is a record being written.
        complete = path.read_text().split("\n")[:-1]
        return [json.loads(line) for line in complete if line]

    def accepted(self, mailbox=None):
        """Accepted messages, oldest first: dicts with mailbox, mail_from, rcpt_to, message_id,
        from, size, time."""
        return [r for r in self._lines("accepted.jsonl")
                if mailbox is None or r["mailbox"] == mailbox.lower()]

    def refused(self, mailbox=None, stage=None):
        """Refusals, oldest first: dicts with mailbox, stage (AUTH, MAIL, DATA), reply, time and,
        where known, mail_from, rcpt_to, message_id, mechanism."""
        return [r for r in self._lines("refused.jsonl")
                if (mailbox is None or r["mailbox"] == mailbox.lower())
                and (stage is None or r["stage"] == stage)]

    def stats(self):
        """stats.json: connections, current_connections, internal_errors, config_error and
        mailboxes {address: {current, max_concurrent, connections, accepted, refused,
        concurrency_refusals, auth_failures}}."""
        path = self.state_dir / "stats.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def mailbox_stats(self, address):
        return self.stats().get("mailboxes", {}).get(address.lower(), {})

    def wait_accepted(self, count, mailbox=None, timeout=30):
        """Polls until at least count messages were accepted; returns them (fewer on timeout)."""
        mgtest.wait_for(lambda: len(self.accepted(mailbox)) >= count, timeout)
        return self.accepted(mailbox)

    # ---- a client, for tests of the stand-in itself ---------------------------------------

    def smtp(self, login=None, password=None, starttls=True, timeout=10):
        """smtplib.SMTP connected to the stand-in, after EHLO, STARTTLS and login if asked."""
        client = smtplib.SMTP(self.host, self.port, timeout=timeout)
        client.ehlo("client.example")
        if starttls:
            client.starttls(context=client_tls())
            client.ehlo("client.example")
        if login is not None:
            client.login(login, password)
        return client
