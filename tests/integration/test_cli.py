"""mailgated's command line: --help, --version, --check-config (exit codes and FILE:LINE:COL)."""
import os
import pathlib
import re
import subprocess
import unittest

from mgtest import MAILGATED, ROOT, Workdir


def run(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([MAILGATED, *args], capture_output=True, text=True, timeout=30, env=e)


class CliTest(unittest.TestCase):
    def test_help_and_version(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--check-config", r.stdout)
        r = run("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^mailgated \d+\.\d+\.\d+")
        r = run("--bogus")
        self.assertEqual(r.returncode, 2)
        self.assertIn("Usage", r.stderr)

    def test_check_config_examples_ok(self):
        env = {"MAILGATE_CRM_TOKEN": "x" * 20}
        r = run("--check-config", str(ROOT / "config/examples/local.yaml"), env=env)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_check_config_reports_every_error_with_position(self):
        with Workdir() as tmp:
            path = pathlib.Path(tmp) / "bad.yaml"
            path.write_text(
                "node:\n"
                "  id: gw-1\n"
                "  colour: blue\n"              # unknown key
                "listeners:\n"
                "  smtp:\n"
                "    address: 127.0.0.1:99999\n"  # bad port
                "relays:\n"
                "  default:\n"
                "    host: 127.0.0.1\n"
                "    port: 25\n"
                "    tls: sometimes\n")          # bad enum
            r = run("--check-config", str(path))
            self.assertEqual(r.returncode, 2)
            lines = [l for l in r.stderr.splitlines() if l.strip()]
            self.assertGreaterEqual(len(lines), 3, r.stderr)
            for line in lines:
                self.assertRegex(line, re.escape(str(path)) + r":\d+:\d+: ")
            self.assertTrue(any(f"{path}:3:3:" in l and "colour" in l for l in lines), r.stderr)
            self.assertTrue(any(f"{path}:6:" in l for l in lines), r.stderr)
            self.assertTrue(any(f"{path}:11:" in l for l in lines), r.stderr)

    def test_missing_secret_is_an_error_without_the_value(self):
        with Workdir() as tmp:
            path = pathlib.Path(tmp) / "s.yaml"
            path.write_text("listeners:\n  api:\n    tokens:\n      - name: crm\n"
                            "        secret: \"${MAILGATE_DEFINITELY_UNSET_VAR}\"\n"
                            "        roles: [submitter]\n")
            r = run("--check-config", str(path))
            self.assertEqual(r.returncode, 2)
            self.assertIn(f"{path}:5:", r.stderr)
            self.assertIn("MAILGATE_DEFINITELY_UNSET_VAR", r.stderr)


if __name__ == "__main__":
    unittest.main()
