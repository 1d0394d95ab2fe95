#!/usr/bin/python3
"""Full TLS 1.3 ECDSA P-256 handshakes against nginx, one worker pinned to
the server core, hsclient on the client core, all configurations in one run
visited in random order in short slices (benchmarking.md's method):

  static     one `ssl_certificate` per server block            (a)
  static_b   the same, second instance: the A/A control        (a2)
  autotls    the same certificates served by autotls from a
             pre-seeded store (valid, not due: no issuance)     (b)
             at many names ONE server with every name and
             `autotls bench per_name;`; variants autotls_nopre
             (`autotls_preload off`) and autotls_blk (one server
             block per name)
  data_var   `ssl_certificate data:$var` from a map            (c)

each at 1 name and at BENCH_NAMES (10,000) names, plus worker RSS and
start-up time (spawn to first completed handshake) at BENCH_NAMES names.
Before measuring, every many-names server gets a warm-up pass that visits
each name once (its rate is reported as the cold first pass), and worker
RSS is reported at start and after that pass.

usage: nginx_handshake.py BUILD_DIR       exit 0 when it ran (targets are
reported, not enforced), 1 when it could not measure.
Knobs: BENCH_NAMES, BENCH_CYCLES, BENCH_SLICE, BENCH_CONC, BENCH_A2_BIG=0/1,
BENCH_SKIP_AUTOTLS=1, BENCH_AUTOTLS_BLOCKS=0/1 (default 0),
BENCH_AUTOTLS_NOPRELOAD=0/1.
"""
import os
import random
import sys
import time

import benchlib as B

def conf_static(certs, names, port):
    return "".join(
        f"    server {{ listen 127.0.0.1:{port} ssl; server_name {n};\n"
        f"        ssl_certificate {certs[n][0]}; ssl_certificate_key {certs[n][1]}; }}\n"
        for n in names)


def conf_data_var(certs, names, port):
    """How nginx-acme serves: the PEM text comes from a variable and is
    parsed at every handshake."""
    def pem_map(var, idx):
        out = [f"    map $ssl_server_name ${var} {{\n        hostnames;\n"]
        out.append(f'        default "{certs[names[0]][idx]}";\n')
        for n in names[1:]:
            out.append(f'        {n} "{certs[n][idx]}";\n')
        out.append("    }\n")
        return "".join(out)
    sn = " ".join(names)
    return (pem_map("bench_cert", 2) + pem_map("bench_key", 3)
            + f"    server {{ listen 127.0.0.1:{port} ssl; server_name {sn};\n"
              f"        ssl_certificate data:$bench_cert; ssl_certificate_key data:$bench_key; }}\n")


def conf_autotls(names, port, store, pebble, ca_file, per_name=True, preload=True):
    """per_name: ONE server holding every name, one certificate per name
    (how a hosting provider would configure it); else one server block per
    name.  The issuer matches what seed_store() wrote (no contact), so the
    driver's first scan finds nothing to rewrite."""
    head = (f"    autotls_issuer bench {{\n"
            f"        directory {pebble.directory};\n"
            f"        accept_terms on;\n"
            f"        ca_certificate {ca_file};\n"
            f"    }}\n"
            f"    autotls_store {store};\n"
            f"    autotls_check_interval 1h;\n"
            f"    autotls_preload {'on' if preload else 'off'};\n"
            f"    autotls_shared_zone {max(1, len(names) // 500 + 1)}m;\n")
    if per_name and len(names) > 1:
        sn = "\n            ".join(names)
        return head + (f"    server {{ listen 127.0.0.1:{port} ssl;\n"
                       f"        server_name {sn};\n"
                       f"        autotls bench per_name; }}\n")
    return head + "".join(
        f"    server {{ listen 127.0.0.1:{port} ssl; server_name {n}; autotls bench; }}\n"
        for n in names)


def store_rewrites(store, since):
    """meta.json files written after `since` (the seeding): what the
    driver's first scan rewrote."""
    n = 0
    certs = os.path.join(store, "certs")
    for d in os.listdir(certs):
        try:
            if os.stat(os.path.join(certs, d, "meta.json")).st_mtime > since:
                n += 1
        except OSError:
            pass
    return n


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(B.REPO, "build"))
    big = int(os.environ.get("BENCH_NAMES", "10000"))
    cycles, secs, conc = B.knobs()
    a2_big = os.environ.get("BENCH_A2_BIG", "1") == "1"
    # extra autotls variants at many names (start-up, memory and rate)
    blocks_big = os.environ.get("BENCH_AUTOTLS_BLOCKS", "0") == "1"
    nopreload_big = os.environ.get("BENCH_AUTOTLS_NOPRELOAD", "1") == "1"
    module = os.path.join(build, "nginx", "ngx_http_autotls_module.so")
    with_autotls = os.environ.get("BENCH_SKIP_AUTOTLS") != "1"
    problems = []
    if with_autotls and not os.path.exists(module):
        problems.append(f"autotls skipped: {module} is missing (make nginx)")
        with_autotls = False

    exe = B.build_client(build)
    root = B.workroot("/tmp/autotls-bench-nginx-")
    print(f"nginx handshake bench: names 1 and {big}, {cycles} cycles x {secs}s slices, "
          f"concurrency {conc}, server core {B.SERVER_CORE}, client core {B.CLIENT_CORE}")
    print(f"  work dir {root}; generating {big} P-256 certificates ...", flush=True)
    ca = B.LocalCA()
    certs = B.write_certs(ca, os.path.join(root, "certs"), big)
    all_names = B.names(big)
    one = all_names[:1]

    pebble = None
    servers = []
    try:
        specs = []      # (key, k, server)
        if with_autotls:
            pebble, ca_file, owner = B.issuer_pebble(root, "nginx")
            stores = [(1, one, "store1"), (big, all_names, f"store{big}")]
            if blocks_big:
                stores.append((big, all_names, f"store{big}_blocks"))
            if nopreload_big:
                stores.append((big, all_names, f"store{big}_nopreload"))
            B.seed_stores(root, certs, stores, pebble.directory, ca_file, owner)
            seeded = time.time()

        def add(key, k, port, body, mod=None):
            srv = B.nginx_server(root, key, body, port, "n0.bench.test", mod)
            specs.append((key, k, srv))
            return srv

        # the big configurations first, one at a time: their start-up time
        # and RSS are results
        p = B.free_port()
        add(f"static_{big}", big, p, conf_static(certs, all_names, p))
        if with_autotls:
            p = B.free_port()
            add(f"autotls_{big}", big, p,
                conf_autotls(all_names, p, os.path.join(root, f"store{big}"), pebble, ca_file),
                module)
            if nopreload_big:
                p = B.free_port()
                add(f"autotls_nopre_{big}", big, p,
                    conf_autotls(all_names, p, os.path.join(root, f"store{big}_nopreload"),
                                 pebble, ca_file, preload=False), module)
            if blocks_big:
                p = B.free_port()
                add(f"autotls_blk_{big}", big, p,
                    conf_autotls(all_names, p, os.path.join(root, f"store{big}_blocks"),
                                 pebble, ca_file, per_name=False), module)
        p = B.free_port()
        add(f"data_var_{big}", big, p, conf_data_var(certs, all_names, p))
        if a2_big:
            p = B.free_port()
            add(f"static_b_{big}", big, p, conf_static(certs, all_names, p))
        for key, body_fn, mod in (("static_1", None, None), ("static_b_1", None, None),
                                  ("autotls_1", "autotls", module), ("data_var_1", "data", None)):
            if body_fn == "autotls" and not with_autotls:
                continue
            p = B.free_port()
            if body_fn == "autotls":
                body = conf_autotls(one, p, os.path.join(root, "store1"), pebble, ca_file)
            elif body_fn == "data":
                body = conf_data_var(certs, one, p)
            else:
                body = conf_static(certs, one, p)
            add(key, 1, p, body, mod)

        def after_start(key, k, srv):
            servers.append(srv)
            srv.rss_start = (B.rss_kb(srv.pid), srv.workers_rss_kb())
            B.check_serves(srv, certs, one if k == 1 else random.sample(all_names, 20) + one)
            return (f"serving after {srv.start_s:.2f}s, master RSS {srv.rss_start[0] / 1024:.1f} "
                    f"MB, worker RSS {srv.rss_start[1] / 1024:.1f} MB at first handshake")
        started = B.start_each(specs, problems, after_start)

        # every name served once before measuring: the cold first pass is a
        # result of its own, then memory once each name has been visited
        warm = {}
        for key, k, srv in started:
            if k == 1:
                continue
            # the other servers share the server core: let this one's
            # background work (driver scan, cache fill) end first
            srv.settle_s = B.settle(srv)
            srv.rss_settled = srv.workers_rss_kb()
            print(f"    {key}: background work settled after {srv.settle_s:.0f}s more",
                  flush=True)
            w = B.warm_pass(exe, srv, k, conc)
            warm[key] = (w["rate"], w["secs"], w["err"], srv.workers_rss_kb())
            print(f"    {key}: cold pass over {k} names {w['rate']:.0f} hs/s ({w['secs']:.1f}s, "
                  f"{w['err']:.0f} errors); worker RSS {srv.rss_settled / 1024:.1f} MB before, "
                  f"{warm[key][3] / 1024:.1f} MB after", flush=True)
        if with_autotls:
            for sd in sorted(d for d in os.listdir(root) if d.startswith("store")):
                print(f"    {sd}: meta.json rewritten since seeding: "
                      f"{store_rewrites(os.path.join(root, sd), seeded)}", flush=True)

        keys = {key for key, _, _ in started}
        if "static_1" not in keys and f"static_{big}" not in keys:
            raise RuntimeError("no static baseline started")
        res = B.measure(started, exe, conc, cycles, secs)

        print("\nnginx: full TLS 1.3 ECDSA P-256 handshakes (medians over cycles; ratios are "
              "per-cycle medians [min..max])")
        rows = B.summarize(res, B.groups_by_count(started))

        # targets
        print("\ntargets:")
        for r in rows:
            if r["key"].startswith("autotls_"):
                ok = r["ratio"] >= 0.97
                print(f"  {r['key']}/static rate ratio {r['ratio']:.3f} (target >= 0.97): "
                      f"{'MET' if ok else 'NOT MET'}; CPU/handshake static/autotls "
                      f"{r['cpu_ratio']:.3f}")
        B.note_unsaturated(rows)
        bykey = {key: srv for key, _, srv in started}
        sb, ab = bykey.get(f"static_{big}"), bykey.get(f"autotls_{big}")
        print(f"\nstart-up and memory at {big} names:")
        print("  (worker RSS: at the first handshake / once background work settled / "
              "after the warm-up pass over every name / at the end)")
        for key in (f"static_{big}", f"static_b_{big}", f"autotls_{big}",
                    f"autotls_nopre_{big}", f"autotls_blk_{big}", f"data_var_{big}",
                    "static_1", "autotls_1"):
            s = bykey.get(key)
            if s:
                w = warm.get(key)
                print(f"  {key:<20} start-up {s.start_s:7.2f}s  master RSS "
                      f"{B.rss_kb(s.pid) / 1024:7.1f} MB  worker RSS "
                      f"{s.rss_start[1] / 1024:6.1f} / "
                      f"{getattr(s, 'rss_settled', 0) / 1024:6.1f} / "
                      f"{(w[3] if w else 0) / 1024:6.1f} / "
                      f"{s.workers_rss_kb() / 1024:6.1f} MB"
                      + (f"  cold pass {w[0]:.0f} hs/s" if w else ""))
        if sb and ab:
            swr = sb.workers_rss_kb()
            for key in (f"autotls_{big}", f"autotls_nopre_{big}", f"autotls_blk_{big}"):
                a = bykey.get(key)
                if a is None:
                    continue
                wr0 = a.rss_start[1] / max(1, sb.rss_start[1])
                wr = a.workers_rss_kb() / max(1, swr)
                print(f"  {key}/static worker RSS at start {wr0:.3f}, after every name was "
                      f"served {wr:.3f} (target < 0.1): {'MET' if wr < 0.1 else 'NOT MET'}")
            tr = ab.start_s / sb.start_s
            print(f"  autotls/static start-up   {tr:.3f} (target < 0.1): "
                  f"{'MET' if tr < 0.1 else 'NOT MET'}")
    finally:
        B.cleanup(servers, pebble, root)
    return B.finish(problems)


if __name__ == "__main__":
    sys.exit(main())
