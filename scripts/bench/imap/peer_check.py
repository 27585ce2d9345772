#!/usr/bin/python3
"""How many IMAP sessions a test peer holds, and at what memory: real Dovecot or the stand-in.

    scripts/bench/imap/peer_check.py --peer dovecot --sessions 2000
    scripts/bench/imap/peer_check.py --peer standin --sessions 10000 [--cleartext]

Starts the peer on loopback (tests/integration/dovecot.py or tests/fakes/imap_standin.py), opens
the sessions from one asyncio client (TLS handshake, greeting, LOGIN, SELECT INBOX, IDLE), at most
--parallel of them being set up at a time, and holds them all while it measures the peer's memory:
RSS summed over the peer's processes, and PSS (shared pages divided among the processes that share
them, the fairer figure for Dovecot's one-process-per-session imap). Prints one line per figure.
These are measurements, not assertions: compare them in the same run, on the same machine.
"""
import argparse
import asyncio
import asyncio.sslproto
import pathlib
import resource
import ssl
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "tests" / "fakes"))
import mgtest  # noqa: E402
from dovecot import Dovecot  # noqa: E402
from imap_standin import ImapStandin  # noqa: E402

# The client's own TLS sessions would take 256 KiB each for asyncio's read buffer (see the
# stand-in); 16 KiB holds any TLS record.
asyncio.sslproto.SSLProtocol.max_size = 16 * 1024

USERS = 100  # sessions are spread over this many logins (Microsoft caps sessions per mailbox)


def memory_kib(pids):
    """(RSS, PSS) in KiB summed over pids (smaps_rollup; processes gone meanwhile count 0)."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


async def session(port, tls, user, password, opened, hold):
    """One client session; sets opened when it idles, stays until hold is set."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                                  server_hostname=None if tls is None else "")
    try:
        async def command(tag, text, until=None):
            writer.write(f"{tag} {text}\r\n".encode())
            while True:
                line = await reader.readline()
                if not line:
                    raise ConnectionError(f"closed during {text.split()[0]}")
                if line.startswith(until or f"{tag} ".encode()):
                    if not until and not line.startswith(f"{tag} OK".encode()):
                        raise ConnectionError(line.decode(errors="replace").strip())
                    return

        if not (await reader.readline()).startswith(b"* OK"):
            raise ConnectionError("no greeting")
        await command("a", f"LOGIN {user} {password}")
        await command("b", "SELECT INBOX")
        await command("c", "IDLE", until=b"+")
        opened.release()
        await hold.wait()
        writer.write(b"DONE\r\nd LOGOUT\r\n")
        await writer.drain()
    finally:
        writer.close()


async def run(args, port, tls, peer_pids, password):
    hold = asyncio.Event()
    gate = asyncio.Semaphore(args.parallel)  # sessions being set up at once
    opened = asyncio.Semaphore(0)
    failures = []

    async def one(i):
        await gate.acquire()
        released = asyncio.Event()

        class Opened:  # frees the setup slot once the session idles
            @staticmethod
            def release():
                opened.release()
                gate.release()
                released.set()

        try:
            await session(port, tls, f"user{i % USERS}@bench.example", password, Opened, hold)
        except (OSError, ConnectionError, ssl.SSLError) as e:
            failures.append(repr(e))
        finally:
            if not released.is_set():
                gate.release()

    started = time.monotonic()
    tasks = [asyncio.create_task(one(i)) for i in range(args.sessions)]
    count = 0
    while count < args.sessions:
        try:
            await asyncio.wait_for(opened.acquire(), 60)
        except asyncio.TimeoutError:
            break
        count += 1
        if len(failures) + count >= args.sessions:
            break
    elapsed = time.monotonic() - started
    await asyncio.sleep(1)  # let the peer settle before measuring
    rss, pss = memory_kib(peer_pids())
    print(f"sessions_open {count} of {args.sessions} in {elapsed:.1f} s "
          f"({count / elapsed:.0f}/s), failures {len(failures)}")
    if failures:
        print(f"first_failure {failures[0]}")
    print(f"peer_processes {len(peer_pids())}")
    print(f"peer_rss_mib {rss / 1024:.0f}  per_session_kib {rss / max(count, 1):.0f}")
    print(f"peer_pss_mib {pss / 1024:.0f}  per_session_kib {pss / max(count, 1):.0f}")
    if args.hold:
        await asyncio.sleep(args.hold)
    hold.set()
    started = time.monotonic()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"logout_all_s {time.monotonic() - started:.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", choices=("dovecot", "standin"), required=True)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--parallel", type=int, default=100,
                        help="sessions in setup at once (TLS handshake to IDLE)")
    parser.add_argument("--cleartext", action="store_true", help="no TLS (imap instead of imaps)")
    parser.add_argument("--hold", type=float, default=0, help="seconds to hold the sessions open")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tls = None
    if not args.cleartext:
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    with mgtest.Workdir() as work:
        password = "bench-password"
        if args.peer == "dovecot":
            users = {f"user{i}@bench.example": password for i in range(USERS)}
            peer = Dovecot(work, users, capabilities="m365", client_limit=args.sessions + 100,
                           process_limit=args.sessions + 100)
            peer.start()
            print(f"dovecot_start_s {peer.start_seconds:.3f}")
            port = peer.imap_port if args.cleartext else peer.imaps_port

            peer_pids = peer.pids
        else:
            peer = ImapStandin(work, tls=not args.cleartext).start()
            port = peer.port

            def peer_pids():
                return [peer.proc.pid]
        idle_rss, idle_pss = memory_kib(peer_pids())
        print(f"peer_idle_rss_mib {idle_rss / 1024:.0f}  pss_mib {idle_pss / 1024:.0f}")
        try:
            asyncio.run(run(args, port, tls, peer_pids, password))
        finally:
            started = time.monotonic()
            peer.stop()
            print(f"peer_stop_s {time.monotonic() - started:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
