"""Names registered at runtime on a running Apache (AutoTLS Dynamic): the
admin API (SetHandler autotls-api) and the CLI (autotls add/remove) add
names that are issued by Pebble and served with no restart; a removed
name is no longer served; the API's token; AutoTLSCacheSize; directive
errors."""
import http.client
import json
import os
import re
import shutil

import pytest

from apache_helpers import apache_factory, assert_no_restart, served, wait_issued  # noqa: F401
from util import run_cli, served_chain, verify_chain, wait_until

HOME = "dyn.apache.test"
API_NAMES = ["api1.dyn.test", "api2.dyn.test", "api3.dyn.test"]
CLI_NAMES = ["cli1.dyn.test", "cli2.dyn.test", "cli3.dyn.test"]


def api_location(token_file=None):
    return ('    <Location "/autotls">\n'
            "        SetHandler autotls-api\n"
            "        Require ip 127.0.0.1\n"
            + (f'        AutoTLSApiToken "{token_file}"\n' if token_file else "")
            + "    </Location>\n")


def dynamic_apache(apache_factory, pebble, unknown=None, token_file=None,  # noqa: F811
                   global_extra="", loglevel="info", mpm="event"):
    """The dynamic home is the first TLS host: mod_ssl's SNI selection gives
    it every name no ServerName/ServerAlias matches."""
    home_conf = "    AutoTLS Dynamic\n"
    if unknown:
        home_conf += f"    AutoTLSDynamicUnknown {unknown}\n"
    return apache_factory(pebble, [[HOME]], host_extra={HOME: home_conf},
                          http_extra=api_location(token_file), global_extra=global_extra,
                          loglevel=loglevel, mpm=mpm)


def api(apache, method, path, body=None, token=None):
    conn = http.client.HTTPConnection("127.0.0.1", apache.http_port, timeout=10)
    headers = {"Host": "plain.test"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, "/autotls" + path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    finally:
        conn.close()


def wait_own(apache, pebble, name, timeout=120):
    """Until name is served its own Pebble certificate (while it has none,
    its dynamic home's is served)."""
    def own():
        try:
            chain, info = served(apache, name)
        except AssertionError:      # refused until the child sees the name
            return None
        return (chain, info) if name in info["names"] and not info["self_signed"] else None
    chain, info = wait_until(own, timeout=timeout, what=f"a CA certificate for {name}")
    assert verify_chain(chain, pebble.roots_pem()), f"chain for {name} does not verify"
    assert info["names"] == [name], "one certificate per registered name"
    return chain, info


def handshake_refused(apache, name):
    try:
        served_chain(apache.tls_port, name)
    except AssertionError:
        return True
    return False


def test_api_and_cli_names_served_without_restart(pebble, apache_factory):  # noqa: F811
    apache = dynamic_apache(apache_factory, pebble, loglevel="info autotls:debug").start()
    parent = apache.pid
    _, home = wait_issued(apache, pebble, HOME, timeout=120)
    children = set(apache.children())

    # before registration an unknown name gets the home's certificate
    _, info = served(apache, API_NAMES[0])
    assert info["serial"] == home["serial"]

    for name in API_NAMES:
        status, _ = api(apache, "PUT", f"/names/{name}")
        assert status in (200, 201), (name, status)
    run_cli("add", "--store", apache.store, *CLI_NAMES)

    serials = {}
    for name in API_NAMES + CLI_NAMES:
        _, info = wait_own(apache, pebble, name)
        serials[name] = info["serial"]
    assert len(set(serials.values())) == 6
    assert_no_restart(apache, parent)
    # a graceful restart would have replaced every child
    assert children <= set(apache.children()), "the same children serve the new names"

    status, listing = api(apache, "GET", "/names")
    assert status == 200
    listed = {e["name"]: e for e in listing}
    for name in API_NAMES:
        assert listed[name]["source"] == "api"
    for name in CLI_NAMES:
        assert listed[name]["source"] == "cli"

    # removed through the API: served the home's certificate again
    log_at_removal = len(apache.log_text())
    status, _ = api(apache, "DELETE", f"/names/{API_NAMES[1]}")
    assert status in (200, 204)

    def not_served():
        _, info = served(apache, API_NAMES[1])
        return info["serial"] == home["serial"]
    wait_until(not_served, timeout=60, what=f"{API_NAMES[1]} no longer served")
    # removed through the CLI
    run_cli("remove", "--store", apache.store, CLI_NAMES[2])

    def cli_removed():
        _, info = served(apache, CLI_NAMES[2])
        return info["serial"] == home["serial"]
    wait_until(cli_removed, timeout=60, what=f"{CLI_NAMES[2]} no longer served")
    # the children read only the entries the registry's journal says changed
    # since they last looked, not the 6 names again.  How many depends on
    # which child served the probes above (1 for a child that saw every
    # change, more for one whose last handshake was earlier, all for a child
    # that had none yet); after two removals some child was current for one.
    read = [int(n) for n in re.findall(r"knows 6 dynamic name\(s\) at registry generation "
                                       r"\d+ \((\d+) entries read\)",
                                       apache.log_text()[log_at_removal:])]
    assert read and min(read) < 6, read
    # the others keep theirs
    for name in (API_NAMES[0], API_NAMES[2], CLI_NAMES[0], CLI_NAMES[1]):
        _, info = served(apache, name)
        assert info["serial"] == serials[name], name
    assert_no_restart(apache, parent)


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_unknown_reject(pebble, apache_factory, mpm):  # noqa: F811
    apache = dynamic_apache(apache_factory, pebble, unknown="reject", mpm=mpm).start()
    _, home = wait_issued(apache, pebble, HOME, timeout=120)
    assert handshake_refused(apache, "never.dyn.test")
    status, _ = api(apache, "PUT", "/names/known.dyn.test")
    assert status in (200, 201)
    wait_own(apache, pebble, "known.dyn.test")
    status, _ = api(apache, "DELETE", "/names/known.dyn.test")
    assert status in (200, 204)
    wait_until(lambda: handshake_refused(apache, "known.dyn.test"), timeout=60,
               what="the removed name refused")
    # the home's own name is served all along
    _, info = served(apache, HOME)
    assert info["serial"] == home["serial"]


def test_api_token(pebble, apache_factory, test_root):  # noqa: F811
    token_file = os.path.join(test_root, "api.token")
    with open(token_file, "w") as f:
        f.write("s3cret-token-value\n")
    # not readable by others (refused then): the children's group may read it
    if os.geteuid() == 0:
        shutil.chown(token_file, "root", "www-data")
    os.chmod(token_file, 0o640)
    apache = dynamic_apache(apache_factory, pebble, token_file=token_file).start()
    status, _ = api(apache, "PUT", "/names/tok.dyn.test")
    assert status == 401
    status, _ = api(apache, "PUT", "/names/tok.dyn.test", token="wrong")
    assert status == 401
    status, _ = api(apache, "GET", "/names", token="wrong")
    assert status == 401
    status, _ = api(apache, "PUT", "/names/tok.dyn.test", token="s3cret-token-value")
    assert status in (200, 201)
    status, listing = api(apache, "GET", "/names", token="s3cret-token-value")
    assert status == 200 and [e["name"] for e in listing] == ["tok.dyn.test"]
    wait_own(apache, pebble, "tok.dyn.test")


def test_cache_size_bounds_parsed_certificates(pebble, apache_factory):  # noqa: F811
    apache = dynamic_apache(apache_factory, pebble, global_extra="AutoTLSCacheSize 2",
                            loglevel="info autotls:debug").start()
    names = [f"c{i}.dyn.test" for i in range(6)]
    run_cli("add", "--store", apache.store, *names)
    serials = {}
    for name in names:
        _, info = wait_own(apache, pebble, name)
        serials[name] = info["serial"]
    assert len(set(serials.values())) == 6
    loaded = r"autotls: ([a-z0-9.]+): child \d+ loaded [1-9]"
    before = len(re.findall(loaded, apache.log_text()))
    # round robin over more names than the cache holds: each gets its own,
    # parsed again after eviction (without a bound, each of the two children
    # would parse a name at most once more: 12 at most)
    for _ in range(3):
        for name in names:
            _, info = served(apache, name)
            assert info["serial"] == serials[name], name
            assert info["names"] == [name]
    after = len(re.findall(loaded, apache.log_text()))
    assert after - before > 2 * len(names), "evicted certificates were parsed again"


@pytest.mark.parametrize("where,line,directive", [
    ("host", "AutoTLSDynamicUnknown maybe", "AutoTLSDynamicUnknown"),
    ("global", "AutoTLSCacheSize 0", "AutoTLSCacheSize"),
    ("global", "AutoTLSCacheSize lots", "AutoTLSCacheSize"),
    ("host", "AutoTLSCacheSize 10", "AutoTLSCacheSize"),
    ("host", "AutoTLS Sometimes", "AutoTLS"),
])
def test_directive_errors(pebble, apache_factory, where, line, directive):  # noqa: F811
    kw = {"global_extra": line} if where == "global" else {}
    apache = apache_factory(pebble, [[HOME]],
                            host_extra={HOME: "    AutoTLS Dynamic\n"
                                        + (f"    {line}\n" if where == "host" else "")},
                            **kw)
    proc = apache.configtest()
    assert proc.returncode != 0
    assert directive in proc.stderr, proc.stderr


def test_dynamic_home_checked_like_on(pebble, apache_factory):  # noqa: F811
    # the same requirements as AutoTLS On, said with the mode written
    apache = apache_factory(pebble, [[HOME]], host_extra={HOME: "    AutoTLS Dynamic\n"},
                            accept_terms=False)
    proc = apache.configtest()
    assert proc.returncode != 0
    assert "AutoTLS Dynamic for dyn.apache.test" in proc.stderr + apache.log_text()
    assert "AutoTLSAcceptTerms" in proc.stderr + apache.log_text()


def test_home_not_first_on_its_address_is_warned(pebble, apache_factory):  # noqa: F811
    # mod_ssl hands names no host lists to the address's first virtual host
    apache = apache_factory(pebble, [["first.apache.test"], [HOME]],
                            host_extra={HOME: "    AutoTLS Dynamic\n"}).start()
    apache.wait_log(r"the dynamic home dyn\.apache\.test \(.*\) is not the first virtual "
                    r"host of its address: first\.apache\.test")


def test_home_first_is_not_warned(pebble, apache_factory):  # noqa: F811
    apache = apache_factory(pebble, [[HOME], ["second.apache.test"]],
                            host_extra={HOME: "    AutoTLS Dynamic\n"}).start()
    apache.wait_log(r"resuming normal operations")
    assert "is not the first virtual host" not in apache.log_text()
