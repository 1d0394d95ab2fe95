#!/usr/bin/python3
"""Time to obtain and serve certificates for N (50) ECDSA P-256 names from
Pebble (PEBBLE_VA_NOSLEEP=1, http-01), one certificate per name, measured
from server start to the moment every name is served, as a client sees it,
with a certificate issued by Pebble:

  apache_autotls   Apache + mod_autotls (no restart needed)
  apache_mod_md    Apache + Debian's mod_md; once it reports every domain
                   ready it needs `apache2 -k graceful`, inside the time
  nginx_autotls    nginx + the autotls module

Each contender gets its own fresh Pebble (no authorization reuse between them).

usage: issuance.py BUILD_DIR        Knobs: BENCH_ISSUE_NAMES, BENCH_ISSUE_TIMEOUT.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import time

import benchlib as B
from pebblectl import Pebble

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MD_READY = re.compile(r"AH10059: The Managed Domain (\S+) has been setup")


def issue_names(n):
    return [f"i{i}.issue.test" for i in range(n)]


def all_served(port, names, pending):
    """Drops from pending every name now served with a Pebble certificate."""
    for n in list(pending):
        issuer = B.served_issuer(port, n)
        if issuer and "Pebble" in issuer:
            pending.discard(n)
    return not pending


def log_tail(root, n=6):
    out = []
    for path in sorted(glob.glob(os.path.join(root, "*.error.log")) +
                       glob.glob(os.path.join(root, "*.out"))):
        try:
            with open(path, errors="replace") as f:
                lines = [l.rstrip() for l in f.readlines()[-n:]]
        except OSError:
            continue
        if lines:
            out.append(f"    {os.path.basename(path)}:\n      " + "\n      ".join(lines))
    return "\n".join(out)


def cleanup(root, failed):
    if failed or os.environ.get("BENCH_KEEP") == "1":
        return
    shutil.rmtree(root, ignore_errors=True)


def copy_ca(pebble, root):
    ca_file = os.path.join(root, "pebble-ca.pem")
    shutil.copyfile(pebble.ca_file, ca_file)
    os.chmod(ca_file, 0o644)
    return ca_file


def run_apache_autotls(build, names, timeout):
    module = os.path.join(build, "apache", "mod_autotls.so")
    if not os.path.exists(module):
        raise RuntimeError(f"{module} is missing (make apache)")
    root = B.workroot("/tmp/autotls-bench-issue-")
    pebble = Pebble().start()
    failed = False
    try:
        ca_file = copy_ca(pebble, root)
        tls = B.free_port()
        body = [f"AutoTLSCA {pebble.directory}", f"AutoTLSCACertificateFile {ca_file}",
                "AutoTLSContact bench@example.com", "AutoTLSAcceptTerms On",
                f'AutoTLSStoreDir "{root}/store"', "AutoTLSCheckInterval 1s",
                f"<VirtualHost 127.0.0.1:{pebble.http_port}>", "  ServerName plain.test",
                f"  ServerAlias {' '.join(names)}", "</VirtualHost>"]
        body += [f"<VirtualHost 127.0.0.1:{tls}>\n  ServerName {n}\n  SSLEngine on\n"
                 f"  AutoTLS On\n</VirtualHost>" for n in names]
        conf = B.apache_conf(root, "apache_autotls", [pebble.http_port, tls], "\n".join(body),
                             modules=(f"autotls_module={module}",))
        srv = B.ApacheServer("apache_autotls", conf, tls, root, names[0])
        t0 = time.monotonic()
        srv.start()
        try:
            pending = set(names)
            B.wait_for(lambda: all_served(tls, names, pending), timeout,
                       "every name served with a Pebble certificate", interval=0.1)
            return time.monotonic() - t0, ""
        finally:
            srv.stop()
    except Exception as e:
        failed = True
        raise RuntimeError(f"{e}\n  (kept {root})\n{log_tail(root)}") from e
    finally:
        pebble.close()
        cleanup(root, failed)


def run_mod_md(build, names, timeout):
    if not os.path.exists(os.path.join(B.APACHE_MODULES, "mod_md.so")):
        raise RuntimeError("mod_md.so is not installed")
    root = B.workroot("/tmp/autotls-bench-issue-")
    pebble = Pebble().start()
    failed = False
    try:
        ca_file = copy_ca(pebble, root)
        tls = B.free_port()
        log = os.path.join(root, "apache_mod_md.error.log")
        body = [f"MDCertificateAuthority {pebble.directory}", "MDCertificateAgreement accepted",
                "MDContactEmail bench@example.com", f"MDCACertificateFile {ca_file}",
                f'MDStoreDir "{root}/md"', "MDPrivateKeys secp256r1", "MDCAChallenges http-01",
                f"MDPortMap http:{pebble.http_port} https:{tls}", "LogLevel warn md:notice",
                f"<VirtualHost 127.0.0.1:{pebble.http_port}>", "  ServerName plain.test",
                f"  ServerAlias {' '.join(names)}", "</VirtualHost>"]
        body += [f"MDomain {n}" for n in names]
        body += [f"<VirtualHost 127.0.0.1:{tls}>\n  ServerName {n}\n  SSLEngine on\n"
                 f"</VirtualHost>" for n in names]
        conf = B.apache_conf(root, "apache_mod_md", [pebble.http_port, tls], "\n".join(body),
                             modules=("md",))
        srv = B.ApacheServer("apache_mod_md", conf, tls, root, names[0])
        t0 = time.monotonic()
        srv.start()
        try:
            def ready():
                try:
                    with open(log, errors="replace") as f:
                        done = set(MD_READY.findall(f.read()))
                except OSError:
                    done = set()
                # mod_md keeps new certificates in staging/ until the restart
                staged = glob.glob(os.path.join(root, "md", "staging", "*", "pubcert.pem"))
                return len(done) >= len(names) or len(staged) >= len(names)
            B.wait_for(ready, timeout, "mod_md to report every domain ready", interval=0.1)
            t_ready = time.monotonic() - t0
            g = srv.graceful()
            if g.returncode != 0:
                raise RuntimeError(f"apache2 -k graceful failed: {g.stderr.strip()}")
            pending = set(names)
            B.wait_for(lambda: all_served(tls, names, pending),
                       max(10, timeout - (time.monotonic() - t0)),
                       "every name served with a Pebble certificate", interval=0.1)
            return time.monotonic() - t0, f"ready after {t_ready:.2f}s, then graceful restart"
        finally:
            srv.stop()
    except Exception as e:
        failed = True
        raise RuntimeError(f"{e}\n  (kept {root})\n{log_tail(root)}") from e
    finally:
        pebble.close()
        cleanup(root, failed)


def run_nginx(build, names, timeout):
    module = os.path.join(build, "nginx", "ngx_http_autotls_module.so")
    if not os.path.exists(module):
        raise RuntimeError(f"{module} is missing (make nginx)")
    root = B.workroot("/tmp/autotls-bench-issue-")
    pebble = Pebble().start()
    failed = False
    try:
        ca_file = copy_ca(pebble, root)
        tls = B.free_port()
        os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
        user = "user nobody nogroup;" if os.geteuid() == 0 else ""
        servers = "".join(
            f"    server {{ listen 127.0.0.1:{pebble.http_port}; listen 127.0.0.1:{tls} ssl;\n"
            f"        server_name {n}; autotls pebble; }}\n" for n in names)
        conf = f"""load_module {module};
{user}
daemon off;
worker_processes 2;
pid {root}/nginx.pid;
error_log {root}/nginx.error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server_names_hash_bucket_size 128;
    autotls_issuer pebble {{
        directory {pebble.directory};
        contact bench@example.com;
        accept_terms on;
        ca_certificate {ca_file};
    }}
    autotls_store {root}/store;
    autotls_check_interval 1s;
{servers}}}
"""
        path = os.path.join(root, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        srv = B.Server("nginx_autotls", [NGINX, "-p", root + "/", "-c", path, "-e",
                                         os.path.join(root, "nginx.error.log")], tls, root,
                       names[0])
        t0 = time.monotonic()
        srv.start()
        try:
            pending = set(names)
            B.wait_for(lambda: all_served(tls, names, pending), timeout,
                       "every name served with a Pebble certificate", interval=0.1)
            return time.monotonic() - t0, ""
        finally:
            srv.stop()
    except Exception as e:
        failed = True
        raise RuntimeError(f"{e}\n  (kept {root})\n{log_tail(root)}") from e
    finally:
        pebble.close()
        cleanup(root, failed)


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(B.REPO, "build"))
    n = int(os.environ.get("BENCH_ISSUE_NAMES", "50"))
    timeout = float(os.environ.get("BENCH_ISSUE_TIMEOUT", "150"))
    names = issue_names(n)
    print(f"issuance bench: {n} names, one ECDSA P-256 certificate each, Pebble "
          f"PEBBLE_VA_NOSLEEP=1, http-01; server start -> every name served", flush=True)
    results, problems = {}, []
    for key, fn in (("apache_autotls", run_apache_autotls), ("apache_mod_md", run_mod_md),
                    ("nginx_autotls", run_nginx)):
        try:
            secs, note = fn(build, names, timeout)
            results[key] = secs
            print(f"  {key:<16} {secs:7.2f}s  {note}", flush=True)
        except Exception as e:   # noqa: BLE001 - report and go on with the next
            problems.append(f"{key}: {e}")
            print(f"  {key:<16} FAILED: {e}", flush=True)
    if "apache_autotls" in results and "apache_mod_md" in results:
        r = results["apache_autotls"] / results["apache_mod_md"]
        print(f"\ntarget: autotls/mod_md time {r:.3f} (target < 0.5): "
              f"{'MET' if r < 0.5 else 'NOT MET'}")
    return B.finish(problems)


if __name__ == "__main__":
    sys.exit(main())
