"""Three nginx nodes and one Apache node sharing one Redis store (issue 12):
one order per certificate cluster-wide, every validation answered by a node
that did not order, every node serving every certificate, a forced renewal
on every node within a second of its deploy without a reload, and no
private key in clear in Redis."""
import time

import pytest

from clusterctl import (ADDRESS_BASES, Announcements, first_seen, paused, running_cluster,
                        seed_account, start_holding)
from util import stays

NAMES = [f"n{i}.issue.cluster.test" for i in range(10)]


@pytest.fixture
def cluster(pebble_factory, test_root):
    with running_cluster(pebble_factory, test_root, NAMES, ADDRESS_BASES["issue"]) as cl:
        yield cl


def test_ten_names_one_order_each_answered_elsewhere_and_rotated_everywhere(cluster):
    """Who orders a name is decided by the leases at run time, so the test
    learns it before Pebble can validate anything: Pebble is paused
    (SIGSTOP) while the four nodes start, every order started takes its
    lease and logs "ordering certificate" on its node, then waits for
    Pebble.  challtestsrv then points each name at the next node after the
    one that ordered it, and Pebble is resumed: every validation reaches a
    node that did not order (checked in the nodes' access logs), which can
    answer only through the challenge the ordering node shared."""
    cl, pebble, redis = cluster, cluster.pebble, cluster.redis
    seed_account(cl)
    base = pebble.orders()

    with paused(pebble):
        holders = start_holding(cl)
        answering = cl.map_away_from(holders)

    serials = cl.wait_served(NAMES, timeout=120)
    # one order per name, and none after
    assert pebble.orders() - base == len(NAMES), cl.logs()
    assert len(set(serials.values())) == len(NAMES)
    stays(lambda: pebble.orders() - base == len(NAMES), 3, what="no order beyond the ten")

    # every validation went to a node that did not order, and was answered there
    for name in NAMES:
        assert answering[name] is not holders[name]
        assert answering[name].challenge_answers(name) >= 1, \
            f"{name}: ordered by {holders[name]}, validation not answered by {answering[name]}"
        assert holders[name].challenge_answers(name) == 0, \
            f"{name}: the ordering node {holders[name]} was asked, not another one"
    print("ordered by, answered by:", {n: (holders[n].node_id, answering[n].node_id) for n in NAMES})

    # no private key in clear anywhere in Redis
    values = redis.values()
    assert any(k.startswith(b"atls:") for k in values)
    secrets = [s for name in NAMES for s in cl.nodes[0].secrets(name)]
    for k, v in values.items():
        assert b"PRIVATE KEY" not in v, k
        for line in secrets:
            assert line not in v, k

    # forced renewal of one name: every node serves the new one within a
    # second of the deploy's announcement, without a reload
    name = NAMES[3]
    pids = {n.node_id: n.pids() for n in cl.nodes}
    ann = Announcements(redis)
    try:
        before = {n.node_id: n.ordered().count(name) for n in cl.nodes}
        requested = time.monotonic()
        cl.request_renewal(name)
        seen, errors = first_seen(cl.nodes, name, serials[name], timeout=90)
        assert sorted(seen) == sorted(n.node_id for n in cl.nodes), f"{seen}\n{cl.logs()}"
        assert not errors, f"handshakes failed during the rotation: {errors[:5]}"
        new = {serial for _, serial in seen.values()}
        assert len(new) == 1, seen
        # a node that did not order serves the new certificate once an
        # announcement made it pull it: the deploy is the last announcement
        # before the first of them served it (the ordering node may serve
        # it a moment before it announces)
        renewer = [n.node_id for n in cl.nodes if n.ordered().count(name) > before[n.node_id]]
        assert len(renewer) == 1, renewer
        first_pull = min(t for node, (t, _) in seen.items() if node != renewer[0])
        deploys = [t for t, _ in ann.announced(name) if requested <= t <= first_pull]
        assert deploys, ann.got()
        lag = {node: t - deploys[-1] for node, (t, _) in seen.items()}
        print("seconds from the deploy's announcement to serving it:", lag)
        assert max(lag.values()) <= 1.0, lag
    finally:
        ann.close()
    assert {n.node_id: n.pids() for n in cl.nodes} == pids, "a node reloaded or restarted"
    assert pebble.orders() - base == len(NAMES) + 1
    assert cl.wait_served([name], not_serials={name: serials[name]})[name] in new
