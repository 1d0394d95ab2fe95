"""A bulk registration costs one sync per batch, not one per name (issue 11).

`autotls add --from-file` of 2,000 names writes every registry entry with
one store batch (temps, one syncfs, renames, one fsync of names/): strace
counts the CLI's fsync-family calls, far fewer than the names.  Every name
is then listed and served by nginx (its zone sized from names-count, which
the batch kept), a name never registered refused; the same for a bulk
remove.  The issuer's directory answers nothing (a closed port), so names
are served with their own fallback certificates and no 2,000 orders load
the machine: what is tested is the registry, not issuance."""
import os
import subprocess
import types

from nginxctl import Nginx
from test_cli_names import names_table
from test_nginx_dynamic import dynamic_conf, refused, served_name
from util import cli_path, free_port, run_cli, wait_until

N = 2000


def sync_calls(cmd, out):
    """Runs cmd under strace -c -f; the fsync+fdatasync+syncfs calls it made."""
    proc = subprocess.run(["strace", "-c", "-f", "-e", "trace=fsync,fdatasync,syncfs",
                           "-o", out, *cmd], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out) as f:
        for line in f:
            cells = line.split()
            if cells and cells[-1] == "total":
                return int(cells[3]), proc.stdout
    return 0, proc.stdout       # strace prints no table when there were no calls


def test_bulk_add_and_remove_few_syncs_every_name_served(pebble, test_root):
    api_port = free_port()
    # Pebble's CA file for the issuer block, a directory nobody answers at
    issuer = types.SimpleNamespace(ca_file=pebble.ca_file, http_port=free_port(),
                                   tls_port=free_port(),
                                   directory=f"https://127.0.0.1:{free_port()}/dir")
    ngx = Nginx(test_root, dynamic_conf(issuer, test_root, api_port, unknown="reject"),
                workers=1)
    names = [f"b{i}.bulk.example" for i in range(N)]
    listing = os.path.join(test_root, "names.txt")
    with open(listing, "w") as f:
        f.write("\n".join(names) + "\n")

    calls, out = sync_calls([cli_path(), "add", "--store", ngx.store, "--from-file", listing],
                            os.path.join(test_root, "strace.add"))
    assert out.count(": registered (home default)") == N
    # one entry's own fsync each would be 2,000 and more
    assert calls < N / 10, calls
    rows = names_table(run_cli("list", "--store", ngx.store).stdout)
    assert set(rows) == set(names)
    assert all(rows[n][3] == "active" for n in names)
    assert sorted(os.listdir(os.path.join(ngx.store, "names"))) == \
        sorted(n + ".json" for n in names)      # no temp left behind

    with ngx.start():
        wait_until(lambda: f"{N} dynamic names in the zone" in ngx.log(), timeout=120,
                   what=f"the mirror of {N} names")
        for n in names[::199] + [names[-1]]:
            info = served_name(issuer.tls_port, n)
            assert info["names"] == [n], info
        assert refused(issuer.tls_port, "stranger.bulk.example")

        calls, out = sync_calls([cli_path(), "remove", "--store", ngx.store, "--from-file",
                                 listing], os.path.join(test_root, "strace.remove"))
        assert out.count(": removed (no longer served") == N
        assert calls < N / 10, calls
        for n in (names[0], names[N // 2], names[-1]):
            wait_until(lambda: refused(issuer.tls_port, n), timeout=60,
                       what=f"{n} refused after the bulk remove")
    rows = names_table(run_cli("list", "--store", ngx.store).stdout)
    assert all(rows[n][3] == "removed" for n in names)
