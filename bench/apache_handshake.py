#!/usr/bin/python3
"""Full TLS 1.3 ECDSA P-256 handshakes against Apache httpd (event MPM, one
child process, pinned with its parent to the server core; hsclient on the
client core), configurations interleaved in short slices:

  static        one <VirtualHost> with SSLCertificateFile per name   (a)
  static_b      the same, second instance: the A/A control           (a2)
  autotls       the same certificates served by mod_autotls from a
                pre-seeded store (valid, not due: no issuance)        (b)
  autotls_nopre the same with `AutoTLSPreload Off` (many names only)

at 1 name and at BENCH_APACHE_NAMES (1,000) names.

Before measuring, every configuration gets a warm-up pass that visits each
of its names once (SNI in turn); that cold first pass is reported on its
own (rate and server CPU per handshake).  Child RSS is taken at the first
handshake, once the child's background preload has finished (from its
debug log line), after the warm-up pass and at the end.

usage: apache_handshake.py BUILD_DIR
Knobs: BENCH_APACHE_NAMES, BENCH_CYCLES, BENCH_SLICE, BENCH_CONC,
       BENCH_APACHE_NOPRELOAD (1: also run autotls_nopre at many names).
"""
import os
import random
import re
import sys

import benchlib as B


def static_body(certs, names, port):
    return "\n".join(
        f"<VirtualHost 127.0.0.1:{port}>\n  ServerName {n}\n  SSLEngine on\n"
        f"  SSLCertificateFile {certs[n][0]}\n  SSLCertificateKeyFile {certs[n][1]}\n"
        f"</VirtualHost>" for n in names)


def autotls_body(names, port, store, pebble, ca_file, preload=True):
    """store: a directory, or a Redis store's URL and options (a cluster
    node, bench/cluster.py)."""
    store_line = (f"AutoTLSStore {store}" if store.startswith(("redis://", "rediss://"))
                  else f'AutoTLSStoreDir "{store}"')
    head = (f"AutoTLSCA {pebble.directory}\nAutoTLSCACertificateFile {ca_file}\n"
            f"AutoTLSContact bench@example.com\nAutoTLSAcceptTerms On\n"
            f"{store_line}\nAutoTLSCheckInterval 1h\n"
            f"AutoTLSPreload {'On' if preload else 'Off'}\n")
    return head + "\n".join(
        f"<VirtualHost 127.0.0.1:{port}>\n  ServerName {n}\n  SSLEngine on\n  AutoTLS On\n"
        f"</VirtualHost>" for n in names)


PRELOADED = re.compile(r"child (\d+) preloaded (\d+) certificate\(s\) for (\d+) of (\d+) "
                       r"name set\(s\) in (\d+) ms")


def preload_done(root, key):
    """(certificates, ms) from the child's preload summary, or None."""
    try:
        with open(os.path.join(root, f"{key}.error.log"), errors="replace") as f:
            m = PRELOADED.search(f.read())
    except OSError:
        return None
    return (int(m.group(2)), int(m.group(5))) if m else None


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(B.REPO, "build"))
    big = int(os.environ.get("BENCH_APACHE_NAMES", "1000"))
    cycles, secs, conc = B.knobs()
    nopre = os.environ.get("BENCH_APACHE_NOPRELOAD", "1") == "1"
    module = os.path.join(build, "apache", "mod_autotls.so")
    problems = []
    with_autotls = os.path.exists(module)
    if not with_autotls:
        problems.append(f"autotls skipped: {module} is missing (make apache)")

    exe = B.build_client(build)
    root = B.workroot("/tmp/autotls-bench-apache-")
    print(f"Apache handshake bench: names 1 and {big}, {cycles} cycles x {secs}s slices, "
          f"concurrency {conc}, event MPM with one child, server core {B.SERVER_CORE}, "
          f"client core {B.CLIENT_CORE}")
    ca = B.LocalCA()
    certs = B.write_certs(ca, os.path.join(root, "certs"), big)
    all_names = B.names(big)
    one = all_names[:1]
    pebble = None
    servers = []
    try:
        if with_autotls:
            pebble, ca_file, owner = B.issuer_pebble(root, "apache")
            stores = [(1, one, "store1"), (big, all_names, f"store{big}")]
            if nopre:
                stores.append((big, all_names, f"store{big}_nopre"))
            B.seed_stores(root, certs, stores, pebble.directory, ca_file, owner)

        specs = []
        for k, nm in ((big, all_names), (1, one)):
            kinds = ["static", "autotls"] + (["autotls_nopre"] if k == big and nopre else [])
            for kind in kinds + ["static_b"]:
                if kind.startswith("autotls") and not with_autotls:
                    continue
                key = f"{kind}_{k}"
                port = B.free_port()
                extra = ""
                if kind.startswith("autotls"):
                    store = os.path.join(root, f"store{k}" + ("_nopre" if "nopre" in kind else ""))
                    body = autotls_body(nm, port, store, pebble, ca_file,
                                        preload="nopre" not in kind)
                    mods = (f"autotls_module={module}",)
                    # the preload summary and per-name loads are logged at debug
                    extra = "LogLevel warn autotls:debug"
                else:
                    body = static_body(certs, nm, port)
                    mods = ()
                conf = B.apache_conf(root, key, [port], body, modules=mods, extra=extra)
                specs.append((key, k, B.ApacheServer(key, conf, port, root, "n0.bench.test")))

        def after_start(key, k, srv):
            servers.append(srv)
            srv.rss_start = srv.workers_rss_kb()
            B.check_serves(srv, certs, one if k == 1 else random.sample(all_names, 20) + one)
            return (f"serving after {srv.start_s:.2f}s, child RSS {srv.rss_start / 1024:.1f} MB "
                    f"at the first handshake")
        started = B.start_each(specs, problems, after_start)

        if not any(key.startswith("static_") for key, _, _ in started):
            raise RuntimeError("no static baseline started")

        # memory once the background preload is over, then a warm-up pass
        # over every name of every configuration: the cold first pass is a
        # result of its own, and the measured cycles below run warm
        print("  warm-up: one pass over every name of every configuration ...", flush=True)
        warm, preload = {}, {}
        for key, k, srv in started:
            if key.startswith("autotls_") and "nopre" not in key:
                try:
                    preload[key] = B.wait_for(lambda: preload_done(root, key), 120,
                                              f"{key}'s preload summary", interval=0.1)
                except RuntimeError as e:
                    problems.append(str(e))
            srv.rss_settled = srv.workers_rss_kb()
            w = B.warm_pass(exe, srv, k, conc, slice_s=0.25, pids=srv.cpu_pids())
            rate, us, wsecs, err = w["rate"], w["us"], w["secs"], w["err"]
            srv.rss_warm = srv.workers_rss_kb()
            warm[key] = (rate, us, wsecs, err)
            print(f"    {key}: cold pass over {k} name(s) {rate:.0f} hs/s, {us:.0f} us/hs "
                  f"server CPU ({wsecs:.1f}s, {err:.0f} errors); child RSS "
                  f"{srv.rss_settled / 1024:.1f} MB before, {srv.rss_warm / 1024:.1f} MB "
                  f"after" + (f"; preloaded {preload[key][0]} certificates in "
                              f"{preload[key][1]} ms" if key in preload else ""), flush=True)
        res = B.measure(started, exe, conc, cycles, secs, pids=lambda srv: srv.cpu_pids())

        print("\nApache: full TLS 1.3 ECDSA P-256 handshakes (medians over cycles; ratios are "
              "per-cycle medians [min..max])")
        rows = B.summarize(res, B.groups_by_count(started))
        print("\ntargets:")
        for r in rows:
            if r["key"].startswith("autotls_"):
                print(f"  {r['key']}/static rate ratio {r['ratio']:.3f} (target >= 0.97): "
                      f"{'MET' if r['ratio'] >= 0.97 else 'NOT MET'}; CPU/handshake "
                      f"static/autotls {r['cpu_ratio']:.3f}")
        B.note_unsaturated(rows)
        print("\ncold first pass (every name once, before the cycles above):")
        for k in (1, big):
            base = warm.get(f"static_{k}")
            for key, kk, _ in started:
                if kk != k or key not in warm:
                    continue
                rate, us, wsecs, err = warm[key]
                rel = (f"  rate/static {rate / base[0]:.3f}, us/hs static/cfg {base[1] / us:.3f}"
                       if base and key != f"static_{k}" else "")
                print(f"  {key:<20}{rate:>8.0f} hs/s{us:>8.0f} us/hs{rel}")
        print("\nstart-up and memory (child RSS at the first handshake / after the preload / "
              "after the warm-up pass / at the end):")
        for key, k, s in started:
            pre = (f"  preload {preload[key][0]} certs in {preload[key][1]} ms"
                   if key in preload else "")
            print(f"  {key:<20} start-up {s.start_s:6.2f}s  child RSS "
                  f"{s.rss_start / 1024:6.1f} / {getattr(s, 'rss_settled', 0) / 1024:6.1f} / "
                  f"{getattr(s, 'rss_warm', 0) / 1024:6.1f} / {s.workers_rss_kb() / 1024:6.1f} MB"
                  + pre)
    finally:
        B.cleanup(servers, pebble, root)
    return B.finish(problems)


if __name__ == "__main__":
    sys.exit(main())
