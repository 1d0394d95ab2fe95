"""Redis going away under a cluster (issue 12): stopped for 30 s in the
middle of an order, the nodes keep serving and the order completes once it
is back; restarted empty (no persistence), the nodes rebuild it from their
mirrors (docs/store.md, "Repopulation") without ordering again."""
import filecmp
import json
import os

import pytest

from clusterctl import (ADDRESS_BASES, DurableRedis, paused, running_cluster,
                        seed_account, start_holding)
from util import run_cli, stays, wait_until

NAMES = [f"r{i}.down.cluster.test" for i in range(3)]
OUTAGE_S = 30


@pytest.fixture
def cluster(pebble_factory, test_root):
    with running_cluster(pebble_factory, test_root, NAMES, ADDRESS_BASES["redis_down"],
                         redis_class=DurableRedis, n_nginx=2, n_apache=1) as cl:
        yield cl


def serving(cl, serials, renewing=None, new=None):
    """Every live node serves every name with its certificate (for renewing:
    the old one or any new one)."""
    for name in NAMES:
        for node_id, (serial, issued) in cl.serials(name).items():
            if not issued:
                return False
            if serial != serials[name] and name != renewing:
                return False
    return True


def listed(cl):
    """{certificate id: [serials]} that `autotls list` reads from Redis."""
    doc = json.loads(run_cli("list", "--store", cl.spec, "--json").stdout)
    return {c["id"]: sorted(k["serial"] for k in c["keys"]) for c in doc["certificates"]}


def test_redis_outage_mid_order_then_restart_empty(cluster):
    cl, pebble, redis = cluster, cluster.pebble, cluster.redis
    seed_account(cl)
    with paused(cl.pebble):
        cl.map_away_from(start_holding(cl))
    serials = cl.wait_served(NAMES, timeout=120)
    issued = pebble.orders()

    # an order in flight (Pebble paused: it holds its lease and waits), then
    # Redis stops (SIGTERM: it writes its snapshot and comes back with it)
    name = NAMES[0]
    before = {n.node_id: n.ordered().count(name) for n in cl.nodes}
    with paused(pebble):
        cl.request_renewal(name)
        wait_until(lambda: any(n.ordered().count(name) > before[n.node_id] for n in cl.nodes),
                   timeout=60, what=f"a node ordering {name} again")
        redis.stop()
    # thirty seconds without Redis: every node keeps serving every name
    stays(lambda: serving(cl, serials, renewing=name), OUTAGE_S, interval=1,
          what="every node serving while Redis is down")
    redis.start()
    try:
        renewed = cl.wait_served([name], timeout=150, not_serials=serials)[name]
    except AssertionError as e:
        raise AssertionError(f"{e}\n{redis.log()[-2000:]}") from None
    serials[name] = renewed
    # the interrupted order, and at most its retry (docs/store.md: an order
    # in progress when Redis went away is retried by the scheduler)
    outage_orders = pebble.orders() - issued
    print("orders for the renewal across the outage:", outage_orders)
    assert 1 <= outage_orders <= 2, cl.logs()
    assert listed(cl) == {n: [serials[n]] for n in NAMES}

    # Redis restarted empty: rebuilt from the mirrors, nothing ordered
    orders = pebble.orders()
    redis.stop()
    redis.forget()
    redis.start()

    def rebuilt():
        return (redis.get("atls:{/cluster}:gen") != b""
                and all(cl.redis_gen(n) > 0 for n in NAMES)
                and listed(cl) == {n: [serials[n]] for n in NAMES})
    try:
        wait_until(rebuilt, timeout=90, interval=1, what="Redis rebuilt from the nodes' mirrors")
    except AssertionError as e:
        raise AssertionError(f"{e}: cluster gen {redis.get('atls:{/cluster}:gen')!r}, "
                             f"{ {n: cl.redis_gen(n) for n in NAMES} }, listed {listed(cl)}, "
                             f"serving {serials}\n{cl.logs()}") from None
    stays(lambda: pebble.orders() == orders and serving(cl, serials), 5,
          what="no order and the same certificates after the rebuild")
    # what went back is what the nodes hold, private key included (read
    # through the key file, compared with a node's mirror byte for byte)
    back = os.path.join(cl.root, "back")
    run_cli("migrate", "--from", cl.spec, "--to", back)
    for n in NAMES:
        rel = os.path.join("certs", n, "ec256.pem")
        assert filecmp.cmp(os.path.join(back, rel), os.path.join(cl.nodes[0].mirror, rel),
                           shallow=False), rel
    assert not [k for k, v in redis.values().items() if b"PRIVATE KEY" in v]
