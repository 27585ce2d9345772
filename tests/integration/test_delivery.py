"""Delivery upstream: counts at smtp-sink, through a real Postfix, upstream 4xx and outages."""
import collections
import os
import pathlib
import smtplib
import subprocess
import unittest

from mgtest import (ROOT, TOKEN, Mailgated, SmtpSink, Workdir, free_port, gateway_yaml, message,
                    wait_for)

POSTFIX_INSTANCE = ROOT / "scripts" / "peers" / "postfix-instance"


def submit(gw, ids, rcpts=("prospect@example.test",)):
    with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=60) as c:
        c.login("crm", TOKEN)
        for i in ids:
            c.sendmail("rep1@acme.example", list(rcpts), message(i))


class DeliveryTest(unittest.TestCase):
    def gateway(self, tmp, sink_port, **kw):
        yaml = gateway_yaml(sink_port, require_tls=False, **kw)
        return Mailgated(tmp, yaml, env={"MAILGATE_TEST_TOKEN": TOKEN})

    def test_counts_match_at_sink(self):
        with Workdir() as tmp:
            sink = SmtpSink(tmp)
            gw = self.gateway(tmp, sink.port).start()
            try:
                submit(gw, range(300))
                want = {f"<mg-test-{i}@example.test>" for i in range(300)}
                got = wait_for(lambda: want <= set(sink.message_ids()), timeout=60)
                self.assertTrue(got, f"missing {len(want - set(sink.message_ids()))}")
                counts = collections.Counter(sink.message_ids())
                self.assertEqual(len(counts), 300)
                self.assertEqual(max(counts.values()), 1)  # no duplicate in a healthy run
                self.assertEqual(gw.terminate(), 0)
            finally:
                gw.stop()
                sink.stop()

    def test_upstream_4xx_then_accepts(self):
        with Workdir() as tmp:
            port = free_port()
            # First the upstream answers every end of data with 451 ...
            sink = SmtpSink(tmp, extra_args=["-r", "."], port=port)
            gw = self.gateway(tmp, port).start()
            try:
                submit(gw, [1, 2])
                self.assertTrue(wait_for(lambda: "deferred" in gw.log_text(), timeout=30),
                                gw.log_text()[-2000:])
                sink.stop()
                # ... then it accepts: the same messages go out later, once each.
                sink = SmtpSink(tmp, port=port)
                want = {"<mg-test-1@example.test>", "<mg-test-2@example.test>"}
                self.assertTrue(wait_for(lambda: want <= set(sink.message_ids()), timeout=60))
                self.assertEqual(len(sink.message_ids()), 2)
            finally:
                gw.stop()
                sink.stop()

    def test_upstream_down_then_up(self):
        with Workdir() as tmp:
            port = free_port()  # nothing listens there yet
            gw = self.gateway(tmp, port).start()
            sink = None
            try:
                submit(gw, [10, 11, 12])
                self.assertTrue(wait_for(lambda: "connect" in gw.log_text().lower(), timeout=30))
                sink = SmtpSink(tmp, port=port)
                want = {f"<mg-test-{i}@example.test>" for i in (10, 11, 12)}
                self.assertTrue(wait_for(lambda: want <= set(sink.message_ids()), timeout=90),
                                gw.log_text()[-3000:])
            finally:
                gw.stop()
                if sink:
                    sink.stop()


@unittest.skipUnless(os.getuid() == 0, "a Postfix instance needs root")
class ThroughPostfixTest(unittest.TestCase):
    def test_relay_through_real_postfix(self):
        with Workdir() as tmp:
            sink = SmtpSink(tmp)
            pf_dir = pathlib.Path(tmp) / "postfix"
            pf_port = free_port()
            subprocess.run([str(POSTFIX_INSTANCE), "start", str(pf_dir), str(pf_port),
                            f"127.0.0.1:{sink.port}"], check=True, timeout=120)
            gw = Mailgated(tmp, gateway_yaml(pf_port, require_tls=False),
                           env={"MAILGATE_TEST_TOKEN": TOKEN}).start()
            try:
                submit(gw, range(500, 550))
                want = {f"<mg-test-{i}@example.test>" for i in range(500, 550)}
                self.assertTrue(wait_for(lambda: want <= set(sink.message_ids()), timeout=120))
            finally:
                gw.stop()
                subprocess.run([str(POSTFIX_INSTANCE), "stop", str(pf_dir)], timeout=120)
                sink.stop()


if __name__ == "__main__":
    unittest.main()
