"""Issue 8: a slow dns-01 hook keeps only its own order waiting.

One server manages two certificates over dns-01.  The hook holds the setup
for SLOW until the test creates a release file; the setup for FAST first
waits until SLOW's hook has started (so FAST can only be issued while SLOW's
hook runs, whichever order the host picked).  FAST must be issued and served
while SLOW's hook is still blocked; after the release SLOW is issued too."""
import os

from apache_helpers import apache_factory, served, wait_issued  # noqa: F401
from clihelp import write_gated_dns_hook
from nginxctl import Nginx, issuer_block, server_block, until_issued
from util import cert_info, free_port, served_chain, wait_until

SLOW = "slow.sched.test"
FAST = "fast.sched.test"


class Gate:
    """The gated hook, its log and its release file for one test."""

    def __init__(self, pebble, root):
        self.log = os.path.join(root, "hook.log")
        self.release_path = os.path.join(root, "release-slow")
        self.hook = write_gated_dns_hook(root, pebble, self.log, hold=SLOW,
                                         release_path=self.release_path, wait_for=FAST,
                                         limit=60)

    def lines(self):
        with open(self.log) as f:
            return [l.split() for l in f if l.strip()]

    def has(self, what, name):
        return [what, f"_acme-challenge.{name}"] in self.lines()

    def wait_started(self, server_log):
        try:
            wait_until(lambda: self.has("started", SLOW), timeout=30,
                       what="the slow hook to start")
        except AssertionError as e:
            raise AssertionError(f"{e}\nhook log: {self.lines()}\n"
                                 f"server log tail:\n{server_log()[-3000:]}")

    def release(self):
        open(self.release_path, "w").close()

    def assert_held(self):
        """SLOW's hook started and is still blocked; FAST's setup came after."""
        lines = self.lines()
        started = lines.index(["started", f"_acme-challenge.{SLOW}"])
        fast = lines.index(["done", f"_acme-challenge.{FAST}"])
        assert started < fast, lines
        assert not self.has("done", SLOW), lines
        assert not self.has("gave-up", SLOW) and not self.has("gave-up", FAST), lines


def test_nginx_slow_hook_does_not_delay_another_certificate(pebble, test_root):
    gate = Gate(pebble, test_root)
    http_port, tls_port = free_port(), free_port()
    body = issuer_block(pebble, test_root, challenge="dns-01", extra=f"dns_hook {gate.hook};")
    body += f"    autotls_store {os.path.join(test_root, 'store')};\n"
    body += "    autotls_check_interval 1s;\n"
    body += server_block([SLOW], http_port, tls_port)
    body += server_block([FAST], http_port, tls_port)
    ngx = Nginx(test_root, body)
    try:
        with ngx.start():
            gate.wait_started(ngx.log)
            until_issued(ngx, pebble, tls_port, FAST, timeout=60)
            gate.assert_held()
            assert cert_info(served_chain(tls_port, SLOW)[0])["self_signed"]

            gate.release()
            until_issued(ngx, pebble, tls_port, SLOW, timeout=60)
            assert gate.has("done", SLOW)
    finally:
        gate.release()      # never leave the hook blocked behind the test


def test_apache_slow_hook_does_not_delay_another_certificate(pebble, apache_factory,  # noqa: F811
                                                             test_root):
    gate = Gate(pebble, test_root)
    apache = apache_factory(pebble, [[SLOW], [FAST]], challenge="dns-01",
                            global_extra=f'AutoTLSDnsHook "{gate.hook}"',
                            http_port=free_port(), tls_port=free_port())
    try:
        apache.start()
        gate.wait_started(apache.log_text)
        wait_issued(apache, pebble, FAST, timeout=60)
        gate.assert_held()
        assert served(apache, SLOW)[1]["self_signed"]

        gate.release()
        wait_issued(apache, pebble, SLOW, timeout=60)
        assert gate.has("done", SLOW)
    finally:
        gate.release()
