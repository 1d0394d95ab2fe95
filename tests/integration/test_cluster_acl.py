"""Nodes that reach Redis as an ACL user (issue 12): `redis://user:password@...`
with the user allowed only the keys and channels of the cluster's prefix
and the commands autotls sends (the rule docs/store.md gives).  Issuance
and serving work with nothing denied (Redis's ACL LOG stays empty); a wrong
password or an unknown user is a clear error at start naming the
directive, with no password in any log, and the nodes serve their
mirror."""
import pytest

from clusterctl import ADDRESS_BASES, paused, running_cluster, seed_account, start_holding
from redisctl import store_url
from util import wait_until

NAMES = ["a1.acl.cluster.test", "a2.acl.cluster.test"]
ADDRESS_BASE = ADDRESS_BASES["acl"]    # 127.0.0.71-72
PREFIX = "acl:"
ADMIN_PASSWORD = "admin-quartz-5530"     # the default user's, for the test's redis-cli
USER = "autotls-node"
PASSWORD = "pass-lantern-2861"
WRONG = "wrong-lantern-7719"
DIRECTIVE = {"nginx": "autotls_store", "apache": "AutoTLSStore"}

# docs/store.md, "Redis: an ACL user": every command autotls sends, directly
# or from its Lua scripts, on the prefix's keys and channels only
COMMANDS = ("get set del exists type getrange incr incrby decrby lrange llen lpop rpush "
            "sadd srem smembers sismember zadd zrem zrange zremrangebyscore expire pexpire "
            "ttl time publish subscribe ping eval evalsha select").split()


def acl_rule(prefix=PREFIX):
    return (["on", f">{PASSWORD}", "resetkeys", f"~{prefix}*", "resetchannels",
             f"&{prefix}gen", f"&{prefix}chal", "-@all"] + [f"+{c}" for c in COMMANDS])


def user_spec(cl, user, password):
    """The cluster's store value with user:password@ in its URL."""
    url = store_url(cl.redis).replace("redis://", f"redis://{user}:{password}@", 1)
    return f"{url} key_file={cl.key} prefix={PREFIX}"


@pytest.fixture
def cluster(pebble_factory, test_root):
    with running_cluster(pebble_factory, test_root, NAMES, ADDRESS_BASE,
                         password=ADMIN_PASSWORD, check_logs=False, n_nginx=1, n_apache=1,
                         prefix=PREFIX) as cl:
        out = cl.redis.cli("ACL", "SETUSER", USER, *acl_rule())
        assert out.stdout.strip() == b"OK", out
        cl.spec = user_spec(cl, USER, PASSWORD)
        for node in cl.nodes:
            node.rewrite()
        yield cl


def denied(redis):
    """What Redis refused anyone since the last ACL LOG RESET (its log)."""
    return redis.cli("ACL", "LOG").stdout.decode(errors="replace").strip()


def check_refused_and_serving(cl, serials, secrets):
    for node in cl.nodes:
        directive = DIRECTIVE[node.kind]

        def said():
            return [line for line in node.log()[node.log_from:].splitlines()
                    if directive in line and ("password" in line.lower()
                                              or "auth" in line.lower())]
        try:
            lines = wait_until(said, timeout=60, what=f"{node}: an error naming {directive}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{node.log()[-3000:]}") from None
        print(node, lines[0])
        for secret in secrets:
            assert secret not in node.log(), f"{node}: a password in its log"
        for name in NAMES:
            assert node.serve(name) == (serials[name], True), (node, name)


def test_acl_user_issues_serves_and_is_refused_clearly(cluster):
    cl = cluster
    assert cl.redis.cli("ACL", "LOG", "RESET").stdout.strip() == b"OK"
    seed_account(cl)       # `autotls migrate` as the ACL user
    base = cl.pebble.orders()
    with paused(cl.pebble):
        cl.map_away_from(start_holding(cl))
    serials = cl.wait_served(NAMES, timeout=120)
    assert cl.pebble.orders() - base == len(NAMES)

    # nothing the nodes or the CLI sent was refused, and everything they
    # wrote is under the prefix (the user can reach nothing else)
    assert denied(cl.redis) == "", denied(cl.redis)
    keys = cl.redis.keys("*")
    assert keys and all(k.startswith(PREFIX.encode()) for k in keys), keys[:10]
    assert sorted(cl.members()) == sorted(n.node_id for n in cl.nodes)
    for node in cl.nodes:
        assert PASSWORD not in node.log(), f"{node}: the password in its log"

    # the right user, a wrong password
    cl.restart_with(user_spec(cl, USER, WRONG))
    check_refused_and_serving(cl, serials, (PASSWORD, WRONG))

    # a user Redis does not know, with the right password
    cl.restart_with(user_spec(cl, "no-such-user", PASSWORD))
    check_refused_and_serving(cl, serials, (PASSWORD, WRONG))
    for node in cl.nodes:
        node.stop()
