"""kill -9 of mailgated under load, then restart: every message that got 250 reaches the sink.

Duplicates are allowed (at-least-once: a message whose delivery was in flight at the kill goes
out again) and reported; losses are not.
"""
import collections
import smtplib
import threading
import time
import unittest

from mgtest import TOKEN, Mailgated, SmtpSink, Workdir, gateway_yaml, message, wait_for

TOTAL = 5000
CLIENTS = 10


class CrashTest(unittest.TestCase):
    def test_kill9_under_load_loses_nothing(self):
        with Workdir() as tmp:
            sink = SmtpSink(tmp)
            gw = Mailgated(tmp, gateway_yaml(sink.port, require_tls=False),
                           env={"MAILGATE_TEST_TOKEN": TOKEN}).start()
            acked = set()
            lock = threading.Lock()
            stop = threading.Event()

            def client(k):
                i = k
                while i < TOTAL and not stop.is_set():
                    try:
                        with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=30) as c:
                            c.login("crm", TOKEN)
                            while i < TOTAL and not stop.is_set():
                                c.sendmail("rep1@acme.example", ["p@example.test"], message(i))
                                with lock:
                                    acked.add(i)  # the 250 arrived
                                i += CLIENTS
                    except (OSError, smtplib.SMTPException):
                        return  # the gateway died under us: unacknowledged mail is the client's

            threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
            for t in threads:
                t.start()
            # Kill once a good part of the load was acknowledged, while it is still flowing.
            wait_for(lambda: len(acked) >= TOTAL // 3, timeout=120, interval=0.01)
            gw.kill9()
            stop.set()
            for t in threads:
                t.join(60)
            killed_at = len(acked)
            self.assertGreater(killed_at, 0)

            gw.start()  # same data_dir, same ports
            want = {f"<mg-test-{i}@example.test>" for i in acked}
            ok = wait_for(lambda: want <= set(sink.message_ids()), timeout=180, interval=0.5)
            ids = sink.message_ids()
            missing = want - set(ids)
            counts = collections.Counter(ids)
            duplicates = sum(n - 1 for n in counts.values() if n > 1)
            print(f"\ncrash test: {killed_at} acknowledged before kill -9, "
                  f"{len(set(ids) & want)} of them delivered, {len(missing)} missing, "
                  f"{duplicates} duplicate deliveries", flush=True)
            gw.stop()
            sink.stop()
            self.assertTrue(ok, f"{len(missing)} acknowledged messages never arrived")
            self.assertEqual(missing, set())


if __name__ == "__main__":
    unittest.main()
