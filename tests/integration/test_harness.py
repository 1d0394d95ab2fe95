"""The harness itself: Pebble answers, resolves names for its VA, and
every process the tests start is gone at teardown."""
import json
import urllib.request

from util import verify_chain, split_pem_chain


def test_pebble_directory_and_roots(pebble):
    directory = json.loads(pebble._get(pebble.directory))
    for field in ("newNonce", "newAccount", "newOrder", "revokeCert"):
        assert field in directory, field
    roots = split_pem_chain(pebble.roots_pem())
    assert len(roots) >= 1
    # a root verifies itself; garbage does not
    assert verify_chain([roots[0]], roots[0])
    assert not verify_chain([roots[0]], pebble.intermediate_pem())


def test_pebble_stop_start(pebble_factory):
    p = pebble_factory()
    root_before = p.root_pem()
    p.stop()
    assert not p.running
    try:
        urllib.request.urlopen(p.directory, context=p._ssl_context(), timeout=2)
        raise AssertionError("Pebble still answers after stop()")
    except OSError:
        pass
    p.start()
    assert p.running
    assert p.root_pem() != root_before     # a fresh CA at every start
