#!/usr/bin/python3
"""Full TLS 1.3 ECDSA P-256 handshakes against Apache httpd (event MPM, one
child process, pinned with its parent to the server core; hsclient on the
client core), configurations interleaved in short slices:

  static     one <VirtualHost> with SSLCertificateFile per name      (a)
  static_b   the same, second instance: the A/A control              (a2)
  autotls    the same certificates served by mod_autotls from a
             pre-seeded store (valid, not due: no issuance)           (b)

at 1 name and at BENCH_APACHE_NAMES (1,000) names.

usage: apache_handshake.py BUILD_DIR
Knobs: BENCH_APACHE_NAMES, BENCH_CYCLES, BENCH_SLICE, BENCH_CONC.
"""
import os
import random
import shutil
import sys

import benchlib as B


def static_body(certs, names, port):
    return "\n".join(
        f"<VirtualHost 127.0.0.1:{port}>\n  ServerName {n}\n  SSLEngine on\n"
        f"  SSLCertificateFile {certs[n][0]}\n  SSLCertificateKeyFile {certs[n][1]}\n"
        f"</VirtualHost>" for n in names)


def autotls_body(names, port, store, pebble, ca_file):
    head = (f"AutoTLSCA {pebble.directory}\nAutoTLSCACertificateFile {ca_file}\n"
            f"AutoTLSContact bench@example.com\nAutoTLSAcceptTerms On\n"
            f'AutoTLSStoreDir "{store}"\nAutoTLSCheckInterval 1h\n')
    return head + "\n".join(
        f"<VirtualHost 127.0.0.1:{port}>\n  ServerName {n}\n  SSLEngine on\n  AutoTLS On\n"
        f"</VirtualHost>" for n in names)


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(B.REPO, "build"))
    big = int(os.environ.get("BENCH_APACHE_NAMES", "1000"))
    cycles = int(os.environ.get("BENCH_CYCLES", "8"))
    secs = float(os.environ.get("BENCH_SLICE", "1.0"))
    conc = int(os.environ.get("BENCH_CONC", "32"))
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
            from pebblectl import Pebble
            pebble = Pebble().start()
            ca_file = os.path.join(root, "pebble-ca.pem")
            shutil.copyfile(pebble.ca_file, ca_file)
            os.chmod(ca_file, 0o644)
            owner = None
            if os.geteuid() == 0:
                import pwd
                pw = pwd.getpwnam("www-data")
                owner = (pw.pw_uid, pw.pw_gid)
            for k, nm in ((1, one), (big, all_names)):
                B.seed_store(os.path.join(root, f"store{k}"), {n: certs[n] for n in nm},
                             pebble.directory, ca_file, owner)

        specs = []
        for k, nm in ((big, all_names), (1, one)):
            for kind in ("static", "autotls", "static_b"):
                if kind == "autotls" and not with_autotls:
                    continue
                key = f"{kind}_{k}"
                port = B.free_port()
                if kind == "autotls":
                    body = autotls_body(nm, port, os.path.join(root, f"store{k}"), pebble, ca_file)
                    mods = (f"autotls_module={module}",)
                else:
                    body = static_body(certs, nm, port)
                    mods = ()
                conf = B.apache_conf(root, key, [port], body, modules=mods)
                specs.append((key, k, B.ApacheServer(key, conf, port, root, "n0.bench.test")))

        started = []
        for key, k, srv in specs:
            print(f"  starting {key} ...", flush=True)
            try:
                srv.start()
                servers.append(srv)
                sample = one if k == 1 else random.sample(all_names, 20) + one
                B.check_serves(srv, certs, sample)
                started.append((key, k, srv))
                print(f"    {key}: serving after {srv.start_s:.2f}s, child RSS "
                      f"{sum(B.rss_kb(w) for w in srv.workers()) / 1024:.1f} MB", flush=True)
            except Exception as e:   # noqa: BLE001 - report and go on without it
                problems.append(f"{key}: {e}")
                print(f"    {key}: FAILED: {e}", flush=True)
                try:
                    with open(os.path.join(root, f"{key}.error.log")) as f:
                        print("      " + "      ".join(f.readlines()[-5:]), flush=True)
                except OSError:
                    pass
                srv.stop()

        if not any(key.startswith("static_") for key, _, _ in started):
            raise RuntimeError("no static baseline started")
        clients = {1: B.Client(exe, 1, conc), big: B.Client(exe, big, conc)}
        targets = [dict(key=key, client=clients[k], port=srv.port, pids=srv.cpu_pids())
                   for key, k, srv in started]
        print(f"  measuring {len(targets)} configurations ...", flush=True)
        res = B.interleave(targets, cycles, secs)
        for c in clients.values():
            c.close()

        print("\nApache: full TLS 1.3 ECDSA P-256 handshakes (medians over cycles; ratios are "
              "per-cycle medians [min..max])")
        groups = []
        for k in (1, big):
            ks = [key for key, kk, _ in started if kk == k]
            base = f"static_{k}"
            if base in ks:
                groups.append((base, [base] + [x for x in ks if x != base]))
        rows = B.summarize(res, groups)
        print("\ntargets:")
        for r in rows:
            if r["key"].startswith("autotls_"):
                print(f"  {r['key']}/static rate ratio {r['ratio']:.3f} (target >= 0.97): "
                      f"{'MET' if r['ratio'] >= 0.97 else 'NOT MET'}; CPU/handshake "
                      f"static/autotls {r['cpu_ratio']:.3f}")
        sat = [r for r in rows if r["srv_busy"] < 95]
        if sat:
            print("  note: server < 95% busy in " + ", ".join(r["key"] for r in sat)
                  + ": compare 'srv us/hs' (CPU per handshake) rather than rates")
        print(f"\nstart-up and memory:")
        for key, k, s in started:
            print(f"  {key:<16} start-up {s.start_s:6.2f}s  child RSS "
                  f"{sum(B.rss_kb(w) for w in s.workers()) / 1024:7.1f} MB")
    finally:
        for s in servers:
            s.stop()
        if pebble is not None:
            pebble.close()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)
    if problems:
        print("\nproblems:\n  " + "\n  ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
