"""The status page of a node on the Redis store (issue 12): nginx's
`autotls_status` and Apache's autotls-status handler, JSON and Prometheus,
show what a filesystem node shows, the events and orders counters
included.  Those counters are the cluster's (one value in Redis every node
adds to): a node shows its own additions at once and the other nodes' from
its mirror, which its driver refreshes at each heartbeat, so the page is
rendered from local files and never waits on Redis."""
import http.client
import json
import re

import pytest

from clusterctl import ADDRESS_BASES, paused, running_cluster, seed_account, start_holding
from util import wait_until

NAMES = ["s1.status.cluster.test", "s2.status.cluster.test", "s3.status.cluster.test"]
ADDRESS_BASE = ADDRESS_BASES["status"]  # 127.0.0.76-77
STATUS_HOST = {"nginx": "status.test", "apache": "plain.test"}


def status_get(node, query=""):
    """(HTTP status, body) of the node's status page, on its own address."""
    conn = http.client.HTTPConnection(node.addr, node.cluster.http_port, timeout=10)
    try:
        conn.request("GET", "/autotls-status" + query,
                     headers={"Host": STATUS_HOST[node.kind]})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def counters(node):
    status, body = status_get(node)
    assert status == 200, (node, status, body[:500])
    return json.loads(body)


def prometheus(node):
    status, body = status_get(node, "?format=prometheus")
    assert status == 200, (node, status, body[:500])
    return body


def prom_value(text, series):
    m = re.search(r"(?m)^" + re.escape(series) + r" (\d+)$", text)
    return int(m.group(1)) if m else None


@pytest.fixture
def cluster(pebble_factory, test_root):
    with running_cluster(pebble_factory, test_root, NAMES, ADDRESS_BASE, n_nginx=1,
                         n_apache=1) as cl:
        for node in cl.nodes:
            if node.kind == "nginx":
                # the status page on the node's address (Apache's config has
                # one at /autotls-status of its plain-HTTP host already)
                node.extra = (f"    server {{ listen {node.addr}:{cl.http_port}; "
                              f"server_name {STATUS_HOST['nginx']}; location = "
                              f"/autotls-status {{ autotls_status; }} }}\n")
                node.rewrite()
        yield cl


def test_status_page_shows_the_clusters_certificates_and_counters(cluster):
    cl = cluster
    seed_account(cl)
    with paused(cl.pebble):
        holders = start_holding(cl)
        cl.map_away_from(holders)
    cl.wait_served(NAMES, timeout=120)
    ordering = {n.node_id for n in holders.values()}
    print("ordered by:", {name: n.node_id for name, n in holders.items()})

    def page_complete(node):
        doc = counters(node)
        c = doc.get("counters", {})
        if c.get("orders.ok") != len(NAMES):
            return None
        return doc
    for node in cl.nodes:
        # every node, whether it ordered some of the names or none: the
        # cluster's three orders and the events they raised
        try:
            doc = wait_until(lambda: page_complete(node), timeout=60, interval=0.5,
                             what=f"{node}: the cluster's {len(NAMES)} orders on its status page")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{counters(node)}\n{cl.logs()}") from None
        c = doc["counters"]
        assert c.get("orders.failed", 0) == 0, c
        assert sum(v for k, v in c.items() if k.startswith("events.")) >= len(NAMES), c
        certs = {cert["id"]: cert for cert in doc["certificates"]}
        assert sorted(certs) == sorted(NAMES), doc["certificates"]
        assert all(cert["state"] == "valid" for cert in certs.values()), certs

        text = prometheus(node)
        assert prom_value(text, 'autotls_orders_total{result="ok"}') == len(NAMES), text
        assert prom_value(text, "autotls_certificates_total") == len(NAMES), text
        events = [line for line in text.splitlines()
                  if line.startswith("autotls_events_total{")]
        assert sum(int(line.rsplit(" ", 1)[1]) for line in events) == \
            sum(v for k, v in c.items() if k.startswith("events.")), (events, c)
        print(node, "ordered" if node.node_id in ordering else "ordered nothing", c)

    # the counters are Redis's, copied: the mirror holds the same object
    in_redis = cl.redis.get(f"{cl.prefix}{{/counters.json}}:v:counters.json")
    assert in_redis.startswith(b"p"), in_redis[:40]
    assert json.loads(in_redis[1:])["orders.ok"] == len(NAMES)
