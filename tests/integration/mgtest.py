"""Helpers for mailgate's integration tests: real peers on loopback, started and stopped by PID.

Every server binds 127.0.0.1 on a free port and lives in a temporary directory removed at the end.
Binaries are found through the environment variables ctest sets (MAILGATED), falling back to the
Release build.
"""
import atexit
import contextlib
import email
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAILGATED = os.environ.get("MAILGATED", str(ROOT / "build" / "mailgated"))


_started = []  # every server process a test started, so none outlives the test run


def _reap_all():
    for proc in _started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


atexit.register(_reap_all)


def free_port(host="127.0.0.1"):
    """A port nobody listens on right now (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host, port, timeout=20.0, proc=None):
    """Waits until host:port accepts a TCP connection; fails early when proc died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError):
            with socket.create_connection((host, port), timeout=0.5):
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def wait_for(predicate, timeout=30.0, interval=0.05):
    """Polls predicate() until it is truthy; returns its last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def make_cert(directory, cn="localhost"):
    """A self-signed certificate and key for 127.0.0.1/localhost, made now, never committed."""
    directory = pathlib.Path(directory)
    cert, key = directory / "server.pem", directory / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={cn}", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


class SmtpSink:
    """Postfix's smtp-sink: accepts everything; with dump=True every message lands in a file."""

    _instances = 0

    def __init__(self, workdir, extra_args=(), dump=True, port=None):
        self.port = port or free_port()
        SmtpSink._instances += 1
        # A fresh folder per instance, so a restarted sink on the same port starts counting at 0.
        self.dir = pathlib.Path(workdir) / f"sink-{self.port}-{SmtpSink._instances}"
        self.dir.mkdir(parents=True)
        os.chmod(self.dir, 0o777)  # smtp-sink drops to `nobody` when started as root
        args = ["/usr/sbin/smtp-sink"]
        if os.getuid() == 0:
            args += ["-u", "nobody"]
        if dump:
            args += ["-d", str(self.dir) + "/%H%M%S."]
        args += list(extra_args) + [f"127.0.0.1:{self.port}", "1000"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _started.append(self.proc)
        wait_port("127.0.0.1", self.port, proc=self.proc)

    def files(self):
        return sorted(p for p in self.dir.iterdir() if p.is_file())

    def message_ids(self):
        """Message-ID header of every complete dumped message (one entry per delivery)."""
        ids = []
        for p in self.files():
            raw = p.read_bytes()
            # The dump holds smtp-sink's own X- headers, then the message as received.
            msg = email.message_from_bytes(raw)
            ids.append(msg.get("Message-ID"))
        return ids

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Mailgated:
    """mailgated started from a YAML text; {data_dir}, {smtp_port}, {api_port} are filled in."""

    def __init__(self, workdir, config_text, env=None, name="gw"):
        self.workdir = pathlib.Path(workdir)
        self.smtp_port = free_port()
        self.api_port = free_port()
        self.data_dir = self.workdir / f"{name}-data"
        self.config_path = self.workdir / f"{name}.yaml"
        self.log_path = self.workdir / f"{name}.log"
        self.config_path.write_text(config_text.format(
            data_dir=self.data_dir, smtp_port=self.smtp_port, api_port=self.api_port,
            workdir=self.workdir))
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([MAILGATED, "--config", str(self.config_path)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        _started.append(self.proc)
        try:
            wait_port("127.0.0.1", self.smtp_port, proc=self.proc)
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"{e}; mailgated said:\n{self.log_text()[-3000:]}") from None
        return self

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout=30):
        """SIGTERM and wait: returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout)
        return self.proc.returncode if self.proc else None

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.terminate(10)
            except subprocess.TimeoutExpired:
                self.kill9()
        if getattr(self, "log", None):
            self.log.close()


class Workdir:
    """A temporary directory readable by the `nobody` user, removed at the end."""

    def __enter__(self):
        self.path = pathlib.Path(tempfile.mkdtemp(prefix="mailgate-it-"))
        os.chmod(self.path, 0o755)
        return self.path

    def __exit__(self, *exc):
        if os.environ.get("MAILGATE_KEEP_TMP") != "1":
            shutil.rmtree(self.path, ignore_errors=True)


def gateway_yaml(sink_port, tls=None, extra_smtp="", extra_queue="", relay_extra="",
                 token_roles="[submitter]", require_tls=None):
    """A mailgated configuration for tests: SQLite in the work dir, relay `default` → sink_port.

    The result still holds {data_dir}, {smtp_port}, {api_port} for Mailgated to fill in.
    tls: (cert, key) paths to offer STARTTLS.
    """
    tls_lines = ""
    if tls:
        tls_lines = "    tls: {{cert: %s, key: %s}}\n" % (tls[0], tls[1])
    if require_tls is not None:
        tls_lines += f"    require_tls: {'true' if require_tls else 'false'}\n"
    return (
        "node: {{id: mailgate.test, data_dir: {data_dir}}}\n"
        "log: {{level: debug, format: text}}\n"
        "listeners:\n"
        "  smtp:\n"
        "    address: 127.0.0.1:{smtp_port}\n"
        + tls_lines + extra_smtp +
        "  api:\n"
        "    address: 127.0.0.1:{api_port}\n"
        "    tokens:\n"
        "      - name: crm\n"
        "        secret: \"${{MAILGATE_TEST_TOKEN}}\"\n"
        f"        roles: {token_roles}\n"
        "      - name: reader\n"
        "        secret: reader-secret-value\n"
        "        roles: [reader]\n"
        "storage: {{backend: sqlite}}\n"
        "relays:\n"
        "  default:\n"
        "    host: 127.0.0.1\n"
        f"    port: {sink_port}\n"
        "    tls: none\n"
        + relay_extra +
        "queue:\n"
        "  retry_initial: 1s\n"
        "  retry_max: 2s\n"
        + extra_queue)


TOKEN = "test-token-9f8e7d6c5b4a"  # a throwaway credential for the tests' own gateway


def message(i, sender="rep1@acme.example", rcpt="prospect@example.test", size=0):
    """An RFC 5322 message with a unique Message-ID <mg-test-i@example.test>."""
    body = ("x" * 76 + "\r\n") * max(0, size // 78)
    return (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: test {i}\r\n"
            f"Message-ID: <mg-test-{i}@example.test>\r\n\r\nhello {i}\r\n{body}")
