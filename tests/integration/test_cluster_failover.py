"""A node that dies holding an order (issue 12): its lease in Redis runs out
and another node finishes the work, within the lease time plus the check
interval."""
import time

import pytest

from clusterctl import (ADDRESS_BASES, add_a, paused, running_cluster, seed_account,
                        start_holding)
from util import wait_until

NAME = "fo.failover.cluster.test"
LEASE_S = 60            # ATLS_REDIS_LEASE_MS (common/atls_redis.h)
# a node that found the lease busy looks again after SCHED_BUSY_RETRY_S
# (10 s, common/sched_internal.h), more than the nodes' 1 s check interval
BUSY_RETRY_S = 10
SLACK_S = 10            # a loaded 2-core machine: the pass, Redis round trips


@pytest.fixture
def cluster(pebble_factory, test_root):
    with running_cluster(pebble_factory, test_root, [NAME], ADDRESS_BASES["failover"],
                         n_nginx=2, n_apache=1) as cl:
        yield cl


def test_kill9_of_the_ordering_node_another_one_finishes(cluster):
    """Pebble is paused while the nodes start: the node that wins the lease
    logs "ordering certificate", holds the lease and waits for Pebble.  It
    is then killed with SIGKILL (its whole process group: no release of the
    lease, no leave from the member registry) before Pebble hears of the
    order, and Pebble is resumed.  Another node must start the order once
    the lease ran out (60 s) plus the time a node waits before it looks
    again at a busy certificate (10 s: longer than the nodes' 1 s check
    interval, so that is the bound here), and every node left
    must serve the certificate; the name points at a surviving node that is
    not the one taking over, when there is one."""
    cl, pebble = cluster, cluster.pebble
    seed_account(cl)
    base = pebble.orders()

    with paused(pebble):
        holder = start_holding(cl)[NAME]
        survivors = [n for n in cl.nodes if n is not holder]
        holder.kill9()
        killed_at = time.monotonic()
    # the validation reaches a survivor; which one takes over is not known yet
    add_a(pebble, NAME, survivors[-1].addr)

    def taken_over():
        return [n for n in survivors if NAME in n.ordered()]
    try:
        new_holders = wait_until(taken_over, timeout=LEASE_S + BUSY_RETRY_S + SLACK_S,
                                 interval=0.5, what="another node ordering the certificate")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{cl.logs()}") from None
    took = time.monotonic() - killed_at
    print(f"taken over by {new_holders} {took:.1f} s after the kill")
    assert len(new_holders) == 1, new_holders

    serial = cl.wait_served([NAME], nodes=survivors, timeout=90)[NAME]
    assert serial
    # the dead node's order never reached Pebble: one order in all
    assert pebble.orders() - base == 1, cl.logs()
