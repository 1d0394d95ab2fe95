"""On-demand issuance on a cluster sharing one Redis store (issues 11 and
12): one nginx node and one Apache node, each with an on-demand home of the
same name and the same allow list.  A new allowed name asked for on either
node gets its Pebble certificate in that first handshake, is registered in
Redis, ordered once cluster-wide and then served by the other node with the
same serial; a name the policy does not allow causes no order on either
node."""
import os

import pytest

from clusterctl import ADDRESS_BASES, _ClusterApache, add_a, running_cluster, served
from nginxctl import issuer_block
from util import stays, wait_until

BASE = ADDRESS_BASES["ondemand"]        # 127.0.0.86-87
# nginx names a home by its issuer block, Apache by the host's ServerName:
# the same name on both, so that either node's admissions are the other's
HOME = "home.ondemand.cluster.test"
ALLOW = "*.ok.ondemand.cluster.test"
NGX_FIRST = "a.ok.ondemand.cluster.test"
APACHE_FIRST = "b.ok.ondemand.cluster.test"
DENIED = "x.no.ondemand.cluster.test"


def nginx_on_demand(node):
    cl = node.cluster
    return issuer_block(cl.pebble, node.root, name=HOME) + f"""
    autotls_on_demand_allow {ALLOW};
    autotls_on_demand_wait 60s;

    server {{
        listen {node.addr}:{cl.http_port};
        listen {node.addr}:{cl.tls_port} ssl default_server;
        server_name _;
        autotls {HOME} on_demand;
        location / {{ return 200 "{node.node_id} on demand $host\\n"; }}
    }}
"""


def apache_on_demand(node):
    """The only TLS host, AutoTLS OnDemand: it gets every name no
    ServerName matches."""
    extra = ("    AutoTLS OnDemand\n"
             f"    AutoTLSOnDemandAllow {ALLOW}\n"
             "    AutoTLSOnDemandWait 60s\n")
    return _ClusterApache(node.root, node.cluster.pebble, [[HOME]], node.addr,
                          f"AutoTLSStore {node.store_words()}",
                          global_extra=node.global_extra, host_extra={HOME: extra})


@pytest.fixture
def cluster(pebble_factory, test_root):
    with running_cluster(pebble_factory, test_root, [], BASE, n_nginx=1,
                         n_apache=1) as cl:
        ngx, apache = cl.nodes
        ngx.extra = nginx_on_demand(ngx)
        ngx.rewrite()
        apache.apache = apache_on_demand(apache)
        yield cl


def first_handshake(node, name):
    """(serial, issued by Pebble) of the first handshake for name on node,
    which waits while the certificate is obtained."""
    return served(node.addr, node.cluster.tls_port, name, timeout=120)


def orders_of(cl, name):
    return [n.node_id for n in cl.nodes for i in n.ordered() if i == name]


def _mirrored(node, name):
    return os.path.exists(os.path.join(node.mirror, "names", f"{name}.json"))


def test_on_demand_names_admitted_by_one_node_served_by_all(cluster):
    cl, pebble = cluster, cluster.pebble
    ngx, apache = cl.nodes
    # validations go to the node that did not see the first handshake: any
    # node answers any challenge
    add_a(pebble, NGX_FIRST, apache.addr)
    add_a(pebble, APACHE_FIRST, ngx.addr)
    add_a(pebble, HOME, apache.addr)

    cl.start()
    want = sorted(n.node_id for n in cl.nodes)
    wait_until(lambda: cl.members() == want, timeout=60,
               what="both nodes in the member registry")
    # the Apache home's own name: from then on every order is on demand
    home_serial = cl.wait_served([HOME], nodes=[apache], timeout=120)[HOME]
    base = pebble.orders()

    # first asked on nginx: the Pebble certificate in that handshake
    serial, issued = first_handshake(ngx, NGX_FIRST)
    assert issued, f"{NGX_FIRST}: the first handshake got the fallback\n{cl.logs()}"
    assert cl.wait_served([NGX_FIRST], timeout=60) == {NGX_FIRST: serial}

    # first asked on Apache: likewise, and nginx serves it too
    serial2, issued = first_handshake(apache, APACHE_FIRST)
    assert issued, f"{APACHE_FIRST}: the first handshake got the fallback\n{cl.logs()}"
    assert cl.wait_served([APACHE_FIRST], timeout=60) == {APACHE_FIRST: serial2}

    # a name the policy does not allow: what the home serves without it
    # (nginx: its self-signed fallback; Apache: the home's own certificate),
    # no order anywhere
    for node in cl.nodes:
        got, issued = first_handshake(node, DENIED)
        assert not issued or got == home_serial, \
            f"{node.node_id} served a certificate of its own for {DENIED}"

    # one order per admitted name, cluster-wide
    assert pebble.orders() - base == 2, cl.logs(20000)
    stays(lambda: pebble.orders() - base == 2, 3, what="no order beyond one per name")
    assert len(orders_of(cl, NGX_FIRST)) == 1, orders_of(cl, NGX_FIRST)
    assert len(orders_of(cl, APACHE_FIRST)) == 1, orders_of(cl, APACHE_FIRST)
    assert orders_of(cl, DENIED) == []

    # registered in Redis, for the whole cluster: each node's mirror has both
    for node in cl.nodes:
        for name in (NGX_FIRST, APACHE_FIRST):
            wait_until(lambda: _mirrored(node, name), timeout=30,
                       what=f"{name} in {node.node_id}'s copy of the registry")
        assert not _mirrored(node, DENIED)
