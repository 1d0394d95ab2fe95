"""Names registered at runtime on a cluster sharing one Redis store (issues
11 and 12): two nginx nodes and one Apache node, each with a dynamic home.
Names registered through the CLI on Redis, through the admin API of one
nginx node and through Apache's admin API are each ordered once
cluster-wide and served with the same Pebble certificate by every node,
with no reload; a removed name stops being served on every node, and on a
node that was down when it was removed once that node starts again."""
import http.client
import json

import pytest

from clusterctl import ADDRESS_BASES, _ClusterApache, add_a, running_cluster
from util import free_port, run_cli, stays, wait_until

BASE = ADDRESS_BASES["names"]          # 127.0.0.81-83
HOME = "home.names.cluster.test"        # the Apache node's dynamic home
CLI_NAMES = ["cli1.names.cluster.test", "cli2.names.cluster.test"]
NGX_NAME = "ngx.names.cluster.test"
APACHE_NAME = "apache.names.cluster.test"
NAMES = CLI_NAMES + [NGX_NAME, APACHE_NAME]


def nginx_dynamic(node, api_port):
    """The nginx node's dynamic home and its admin API (extra http text)."""
    cl = node.cluster
    return f"""
    server {{
        listen {node.addr}:{cl.http_port};
        listen {node.addr}:{cl.tls_port} ssl default_server;
        server_name _;
        autotls pebble dynamic;
        location / {{ return 200 "{node.node_id} dynamic $host\\n"; }}
    }}
    server {{
        listen {node.addr}:{api_port};
        location /autotls/ {{
            allow 127.0.0.0/8;
            deny all;
            autotls_api;
        }}
    }}
"""


def apache_dynamic(node):
    """The Apache node with one TLS host, AutoTLS Dynamic (the first TLS
    host: it gets every name no ServerName matches), and the admin API in
    its port-80 host."""
    api = ('    <Location "/autotls">\n'
           "        SetHandler autotls-api\n"
           "        Require ip 127.0.0.0/8\n"
           "    </Location>\n")
    return _ClusterApache(node.root, node.cluster.pebble, [[HOME]], node.addr,
                          f"AutoTLSStore {node.store_words()}",
                          global_extra=node.global_extra,
                          host_extra={HOME: "    AutoTLS Dynamic\n"}, http_extra=api)


def api(addr, port, method, path, host=None):
    conn = http.client.HTTPConnection(addr, port, timeout=30)
    try:
        conn.request(method, path, headers={"Host": host} if host else {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data.decode(errors="replace")
    finally:
        conn.close()


@pytest.fixture
def cluster(pebble_factory, test_root):
    with running_cluster(pebble_factory, test_root, [], BASE, n_nginx=2,
                         n_apache=1) as cl:
        cl.api_port = free_port()
        for node in cl.nodes:
            if node.kind == "nginx":
                node.extra = nginx_dynamic(node, cl.api_port)
                node.rewrite()
            else:
                node.apache = apache_dynamic(node)
        yield cl


def not_served_anywhere(cl, name, serial, nodes=None):
    """No (given) node serves name's certificate any more (a handshake
    refused counts as not served)."""
    for node in nodes or cl.nodes:
        try:
            got, _ = node.serve(name)
        except (OSError, ValueError):
            continue
        if got == serial:
            return False
    return True


def test_names_registered_anywhere_served_everywhere_one_order_each(cluster):
    cl, pebble = cluster, cluster.pebble
    ngx1, ngx2, apache = cl.nodes
    # every validation goes to a node (any node answers any challenge); the
    # Apache home's own name to the Apache node, which orders it at start
    cl.map_round_robin(NAMES)
    add_a(pebble, HOME, apache.addr)
    base = pebble.orders()

    cl.start()
    want = sorted(n.node_id for n in cl.nodes)
    wait_until(lambda: cl.members() == want, timeout=60,
               what="every node in the member registry")
    pids = {n.node_id: n.pids() for n in cl.nodes}

    # two names through the CLI on Redis, one through each API
    run_cli("add", "--store", cl.spec, *CLI_NAMES)
    status, text = api(ngx1.addr, cl.api_port, "PUT", f"/autotls/names/{NGX_NAME}")
    assert status in (200, 201), (status, text)
    status, text = api(apache.addr, cl.http_port, "PUT", f"/autotls/names/{APACHE_NAME}",
                       host="plain.test")
    assert status in (200, 201), (status, text)

    serials = cl.wait_served(NAMES, timeout=180)
    assert len(set(serials.values())) == len(NAMES)
    # one order per name cluster-wide, and the Apache home's own
    orders = len(NAMES) + 1
    assert pebble.orders() - base == orders, cl.logs(20000)
    stays(lambda: pebble.orders() - base == orders, 3, what="no order beyond one per name")

    # the other nginx node's API reads the cluster's registry (Redis)
    status, text = api(ngx2.addr, cl.api_port, "GET", "/autotls/names")
    assert status == 200, (status, text)
    listed = {e["name"]: e for e in json.loads(text)}
    assert sorted(listed) == sorted(NAMES), listed
    assert {listed[n]["source"] for n in (NGX_NAME, APACHE_NAME)} == {"api"}

    # removed through the other nginx node's API: no node serves it any more
    gone = CLI_NAMES[1]
    status, text = api(ngx2.addr, cl.api_port, "DELETE", f"/autotls/names/{gone}")
    assert status in (200, 204), (status, text)
    wait_until(lambda: not_served_anywhere(cl, gone, serials[gone]), timeout=30,
               what=f"{gone} no longer served on any node")
    kept = [n for n in NAMES if n != gone]
    assert cl.wait_served(kept, timeout=30) == {n: serials[n] for n in kept}

    assert {n.node_id: n.pids() for n in cl.nodes} == pids, "a node reloaded or restarted"
    assert pebble.orders() - base == orders

    # a node down while a name is removed catches up at its start: its
    # mirror still says the name is registered until it syncs
    ngx2.stop()
    run_cli("remove", "--store", cl.spec, CLI_NAMES[0])
    wait_until(lambda: not_served_anywhere(cl, CLI_NAMES[0], serials[CLI_NAMES[0]],
                                           [ngx1, apache]),
               timeout=30, what=f"{CLI_NAMES[0]} no longer served by the running nodes")
    ngx2.start()
    wait_until(lambda: not_served_anywhere(cl, CLI_NAMES[0], serials[CLI_NAMES[0]], [ngx2]),
               timeout=30, what=f"{CLI_NAMES[0]} no longer served by the restarted node")
    kept = [NGX_NAME, APACHE_NAME]
    assert cl.wait_served(kept, timeout=30) == {n: serials[n] for n in kept}
    assert pebble.orders() - base == orders
