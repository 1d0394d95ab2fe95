"""Issue 8: nginx, Apache and the CLI take the same decision on the same
stored state, because one scheduler (atls_job_plan) takes it for all three.

Each row is a state the store was left in for one certificate, and what
any host must do about it: order now (which key types get a new
certificate) or leave it alone.  The state is built the same way for every
host: the CLI issues the certificate into the store, then the test rewrites
fields of its meta.json (and files a `renew --request`).  Then the host
runs: nginx and Apache with a check every second, the CLI as
`autotls renew --all` (its configuration is what meta.json records, so the
row's names and key types are written there).  The servers also manage a
control certificate that is always due: once it is issued, their first
pass over every certificate is over, and "nothing ordered" is watched for
three more passes."""
import os
from dataclasses import dataclass

import pytest

from apache_helpers import apache_factory  # noqa: F401
from clihelp import cert_file, edit_meta, issue, rfc3339, stored_chain, stored_meta, stored_serials
from nginxctl import Nginx, issuer_block, server_block
from util import cert_info, run_cli, stays, wait_until

NAME = "plan.sched.test"
CONTROL = "control.sched.test"
ORDER_TIMEOUT = 60      # a new certificate, from a host that orders at its first check
QUIET = 3               # seconds (three checks) in which nothing may be ordered


def renew_due(meta):
    meta["renew_at"] = rfc3339(-3600)


def backoff(meta):
    """Three failed attempts, the last two minutes ago, the next in an hour;
    renewal is otherwise due: only the backoff holds it."""
    meta.update(state="failed", failures=3, last_attempt=rfc3339(-120),
                next_attempt=rfc3339(3600), renew_at=rfc3339(-3600))


@dataclass
class Row:
    id: str
    expect: dict                        # key type -> "new" | "same"
    names: tuple = (NAME,)              # what the host is configured with
    keys: tuple = ("ec256",)
    edit: object = None                 # meta.json rewrite after the issue
    request: bool = False               # `renew --request` after the rewrite

    @property
    def orders(self):
        return [kt for kt, e in self.expect.items() if e == "new"]


ROWS = [
    Row("valid_not_due", {"ec256": "same"}),
    Row("renew_at_passed", {"ec256": "new"}, edit=renew_due),
    Row("one_of_two_key_types_stored", {"ec256": "same", "rsa2048": "new"},
        keys=("ec256", "rsa2048")),
    Row("in_backoff", {"ec256": "same"}, edit=backoff),
    Row("in_backoff_but_requested", {"ec256": "new"}, edit=backoff, request=True),
    Row("names_changed", {"ec256": "new"}, names=(NAME, f"www.{NAME}")),
]


def prepare_store(pebble, store, row):
    """The row's stored state; returns the serials before the host runs."""
    issue(pebble, store, NAME)
    if row.edit:
        edit_meta(store, NAME, row.edit)
    if row.request:
        run_cli("renew", "--store", store, "--request", NAME)
    return stored_serials(store, NAME)


def observe(store, before, row, first_pass_over, quiet):
    """Orders rows: every expected key type gets a new certificate, the
    others keep theirs.  Other rows: nothing changes once the host's first
    pass is over.  Either way nothing more happens for `quiet` seconds."""
    generation = stored_meta(store, NAME)["generation"]

    def expected_now():
        now = stored_serials(store, NAME)
        for kt, e in row.expect.items():
            if e == "same" and now.get(kt) != before.get(kt):
                raise AssertionError(f"{kt} was renewed: {before} -> {now}")
            if e == "new" and now.get(kt) in (None, before.get(kt)):
                return None
        return now

    if row.orders:
        after = wait_until(expected_now, timeout=ORDER_TIMEOUT,
                           what=f"new {'+'.join(row.orders)} certificate(s) ({row.id})")
    else:
        wait_until(first_pass_over, timeout=ORDER_TIMEOUT, what="the host's first pass")
        after = expected_now()
        assert stored_meta(store, NAME)["generation"] == generation
    stays(lambda: stored_serials(store, NAME) == after, quiet,
          what=f"the store as {after} ({row.id})")
    if len(row.names) > 1:
        issued = cert_info(stored_chain(store, NAME, row.orders[0])[0])
        assert sorted(issued["names"]) == sorted(row.names)


def control_issued(store):
    return lambda: os.path.exists(cert_file(store, CONTROL))


def run_nginx(pebble, root, store, row, before, _apache_factory):
    body = issuer_block(pebble, root, extra=f"key {' '.join(row.keys)};")
    body += f"    autotls_store {store};\n    autotls_check_interval 1s;\n"
    body += server_block(row.names, pebble.http_port, pebble.tls_port)
    body += server_block([CONTROL], pebble.http_port, pebble.tls_port)
    ngx = Nginx(root, body)
    with ngx.start():
        try:
            observe(store, before, row, control_issued(store), QUIET)
        except AssertionError as e:
            raise AssertionError(f"{e}\nerror.log tail:\n{ngx.log()[-3000:]}")


def run_apache(pebble, root, store, row, before, apache_factory):  # noqa: F811
    apache = apache_factory(pebble, [list(row.names), [CONTROL]], keys=" ".join(row.keys))
    assert apache.store == store
    apache.start()
    try:
        observe(store, before, row, control_issued(store), QUIET)
    except AssertionError as e:
        raise AssertionError(f"{e}\nerror.log tail:\n{apache.log_text()[-3000:]}")


def run_cli_all(pebble, root, store, row, before, _apache_factory):
    def configure(meta):
        meta["names"] = list(row.names)
        meta["issuer"]["key_types"] = list(row.keys)
    edit_meta(store, NAME, configure)
    proc = run_cli("renew", "--store", store, "--all", "--listen-address", "127.0.0.1",
                   check=False)
    assert proc.returncode == 0, f"renew --all: {proc.stdout}\n{proc.stderr}"
    try:
        # synchronous: its one pass is over when it returns
        observe(store, before, row, lambda: True, 0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}\nrenew --all said: {proc.stdout}\n{proc.stderr}")


HOSTS = {"nginx": run_nginx, "apache": run_apache, "cli": run_cli_all}


@pytest.mark.parametrize("host", list(HOSTS))
@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_same_decision_everywhere(pebble, test_root, apache_factory, host, row):  # noqa: F811
    store = os.path.join(test_root, "store")
    before = prepare_store(pebble, store, row)
    assert list(before) == ["ec256"]
    HOSTS[host](pebble, test_root, store, row, before, apache_factory)
