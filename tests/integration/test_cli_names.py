"""`autotls add` / `autotls remove` / `autotls list`: the registry of dynamic
names in a store (names/<id>.json), each change an audited event naming the
invoking user, names checked before anything is stored, errors naming the
argument; root works on a store the worker owns as the worker."""
import json
import os
import pwd
import subprocess

import pytest

from storeseed import chown_tree, issuer_meta
from util import cli_path, run_cli

WORKER = "nobody"


def audit_json(store):
    out = run_cli("audit", "--store", store, "--json").stdout
    return [json.loads(line) for line in out.splitlines()]


def entry(store, name):
    with open(os.path.join(store, "names", name + ".json")) as f:
        return json.load(f)


def names_table(stdout):
    """The rows of list's dynamic names table, as lists of cells."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("DYNAMIC NAME"))
    assert lines[start].split() == ["DYNAMIC", "NAME", "HOME", "SOURCE", "STATE",
                                    "CERTIFICATE", "ADDED", "REMOVED"]
    return {line.split()[0]: line.split() for line in lines[start + 1:] if line.strip()}


def write_meta(store, name, state):
    """A certificate's meta.json in state (what the server records)."""
    d = os.path.join(store, "certs", name)
    os.makedirs(d, mode=0o700, exist_ok=True)
    meta = {"id": name, "names": [name], "issuer": issuer_meta("https://ca.test/dir"),
            "state": state, "failures": 0, "generation": 1}
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f)


def generation(store, what="generation"):
    with open(os.path.join(store, what)) as f:
        return int(f.read())


def test_add_list_remove_audited(tmp_path):
    store = str(tmp_path / "store")
    out = run_cli("add", "--store", store, "--issuer", "shop", "Shop.Example.com",
                  "xn--bcher-kva.example.").stdout
    assert "shop.example.com: registered (home shop)" in out
    assert "xn--bcher-kva.example: registered (home shop)" in out
    run_cli("add", "--store", store, "blog.example.net")
    e = entry(store, "shop.example.com")
    assert e["name"] == "shop.example.com" and e["home"] == "shop"
    assert e["state"] == "active" and e["source"] == "cli"
    assert e["by"].startswith(f"uid {os.getuid()} (")
    assert "home" not in entry(store, "blog.example.net")
    # one move of the generations per command, however many names it adds
    g_names, g_store = generation(store, "names-generation"), generation(store)
    assert g_names == 2 and g_store >= 2

    # added again: left as it is, nothing moves, no event
    out = run_cli("add", "--store", store, "shop.example.com").stdout
    assert "registered already (home shop)" in out
    assert generation(store, "names-generation") == g_names

    write_meta(store, "blog.example.net", "valid")
    rows = names_table(run_cli("list", "--store", store).stdout)
    assert set(rows) == {"blog.example.net", "shop.example.com", "xn--bcher-kva.example"}
    assert rows["shop.example.com"][1:5] == ["shop", "cli", "active", "pending"]
    assert rows["blog.example.net"][1:5] == ["default", "cli", "active", "valid"]
    assert rows["shop.example.com"][6] == "-"

    out = run_cli("remove", "--store", store, "SHOP.example.com").stdout
    assert "shop.example.com: removed" in out
    e = entry(store, "shop.example.com")
    assert e["state"] == "removed" and e["removed"]
    assert generation(store, "names-generation") == g_names + 1
    rows = names_table(run_cli("list", "--store", store).stdout)
    assert rows["shop.example.com"][3] == "removed" and rows["shop.example.com"][6] != "-"
    assert "removed already" in run_cli("remove", "--store", store, "shop.example.com").stdout

    records = audit_json(store)
    added = [r for r in records if r["event"] == "name-added"]
    removed = [r for r in records if r["event"] == "name-removed"]
    assert [r["id"] for r in added] == ["shop.example.com", "xn--bcher-kva.example",
                                        "blog.example.net"]
    assert [r["id"] for r in removed] == ["shop.example.com"]
    me = pwd.getpwuid(os.getuid()).pw_name
    for r in added + removed:
        assert r["actor"]["kind"] == "cli" and r["actor"]["uid"] == os.getuid(), r
        assert r["actor"]["user"] == me and r["source"] == "cli", r
    assert "registered by uid" in added[0]["detail"] and "for home shop" in added[0]["detail"]
    assert removed[0]["detail"].startswith("removed by uid")
    # `audit --name` finds them like any certificate's records
    by_name = run_cli("audit", "--store", store, "--name", "shop.example.com").stdout
    assert "name-added" in by_name and "name-removed" in by_name


def test_errors_name_the_argument(tmp_path):
    store = str(tmp_path / "store")
    cases = [
        (["*.example.com"], 'argument 1 "*.example.com": wildcard'),
        (["ok.example", "bad name.example"], 'argument 2 "bad name.example": character 0x20'),
        (["a" * 64 + ".example"], "label longer than 63 bytes"),
        (["localhost"], "a single label"),
        (["a..example"], "empty label"),
        (["b\u00fccher.example"], "0xc3"),
        (["x.example/../../etc"], "0x2f"),
    ]
    for names, why in cases:
        proc = run_cli("add", "--store", store, *names, check=False)
        assert proc.returncode == 2, (names, proc.stderr)
        assert why in proc.stderr, (names, proc.stderr)
    # nothing was stored by any of them, not even the good name beside a bad one
    assert not os.path.exists(os.path.join(store, "names"))

    proc = run_cli("add", "--store", store, "--issuer", "", "ok.example", check=False)
    assert proc.returncode == 2 and "--issuer" in proc.stderr
    proc = run_cli("add", "--store", store, check=False)
    assert proc.returncode == 2 and "missing" in proc.stderr
    proc = run_cli("remove", "--store", store, "--issuer", "x", "ok.example", check=False)
    assert proc.returncode == 2 and "'--issuer' is not valid" in proc.stderr

    run_cli("add", "--store", store, "kept.example")
    proc = run_cli("remove", "--store", store, "nope.example", "kept.example", check=False)
    assert proc.returncode == 1
    assert "remove nope.example: not registered" in proc.stderr
    # the other name was still removed
    assert entry(store, "kept.example")["state"] == "removed"


def test_root_works_as_the_owner(test_root):
    """Root on a store the worker owns writes as the worker; the audit
    trail names root."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    store = os.path.join(test_root, "store")
    run_cli("add", "--store", store, "first.example")
    pw = pwd.getpwnam(WORKER)
    chown_tree(store, (pw.pw_uid, pw.pw_gid))

    run_cli("add", "--store", store, "--issuer", "shop", "second.example")
    path = os.path.join(store, "names", "second.example.json")
    assert os.stat(path).st_uid == pw.pw_uid
    assert entry(store, "second.example")["by"] == "uid 0 (root)"
    # the worker itself may add too, recorded as itself
    proc = subprocess.run(["runuser", "-u", WORKER, "--", cli_path(), "remove",
                           "--store", store, "first.example"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    records = [r for r in audit_json(store) if r["event"].startswith("name-")]
    assert [(r["event"], r["actor"]["user"]) for r in records] == [
        ("name-added", "root"), ("name-added", "root"), ("name-removed", WORKER)]
    assert os.stat(os.path.join(store, "audit.log")).st_uid == pw.pw_uid


def test_add_from_file_one_generation(tmp_path):
    """A bulk import: 1,000 names from a file (and stdin) are registered at
    once, the registry's and the store's generations move once."""
    store = str(tmp_path / "store")
    run_cli("add", "--store", store, "first.example")
    g_names, g_store = generation(store, "names-generation"), generation(store)
    names = [f"n{i}.bulk.example" for i in range(1000)]
    listing = tmp_path / "names.txt"
    listing.write_text("# customers\n\n" + "\n".join(f"  {n}\t" if i % 7 == 0 else n
                                                      for i, n in enumerate(names))
                       + "\nN1.BULK.example.\n")
    out = run_cli("add", "--store", store, "--from-file", str(listing), "arg.example",
                  timeout=600).stdout
    assert out.count(": registered (home default)") == 1001
    assert "n1.bulk.example: registered already" in out     # the file's second spelling
    assert generation(store, "names-generation") == g_names + 1
    assert generation(store) == g_store + 1
    rows = names_table(run_cli("list", "--store", store).stdout)
    assert set(names) | {"arg.example", "first.example"} == set(rows)

    # from standard input
    proc = subprocess.run([cli_path(), "add", "--store", store, "--from-file", "-"],
                          input="stdin1.example\nstdin2.example\n", capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert generation(store, "names-generation") == g_names + 2
    assert entry(store, "stdin2.example")["state"] == "active"


def test_add_from_file_errors_name_the_line(tmp_path):
    store = str(tmp_path / "store")
    listing = tmp_path / "names.txt"
    listing.write_text("ok.example\nbad name.example\n# fine\n*.wild.example\nok2.example\n")
    proc = run_cli("add", "--store", store, "--from-file", str(listing), check=False)
    assert proc.returncode == 2, proc.stderr
    assert f'{listing}:2: "bad name.example": character 0x20' in proc.stderr
    assert f'{listing}:4: "*.wild.example": wildcard' in proc.stderr
    assert "2 bad lines; nothing registered" in proc.stderr
    # nothing stored, not even the good lines
    assert not os.path.exists(os.path.join(store, "names"))

    proc = run_cli("add", "--store", store, "--from-file", str(tmp_path / "nope"),
                   check=False)
    assert proc.returncode == 1 and "--from-file" in proc.stderr and "nope" in proc.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    proc = run_cli("add", "--store", store, "--from-file", str(empty), check=False)
    assert proc.returncode == 2 and "no name in it" in proc.stderr


def test_remove_from_file_one_generation(tmp_path):
    """A bulk removal: 1,000 names from a file (and stdin) are removed at
    once, the generations move once, each name audited; names removed
    already or never registered are said, the others still removed."""
    store = str(tmp_path / "store")
    names = [f"r{i}.bulk.example" for i in range(1000)]
    listing = tmp_path / "names.txt"
    listing.write_text("\n".join(names) + "\n")
    run_cli("add", "--store", store, "--from-file", str(listing), "kept.example",
            "stdin1.example", timeout=600)
    g_names, g_store = generation(store, "names-generation"), generation(store)

    listing.write_text("# leaving\n" + "\n".join(names[:10]) + "\n\nR10.BULK.example.\n"
                       + "\n".join(names[11:]) + "\n")
    out = run_cli("remove", "--store", store, "--from-file", str(listing),
                  timeout=600).stdout
    assert out.count(": removed (no longer served") == 1000
    assert generation(store, "names-generation") == g_names + 1
    assert generation(store) == g_store + 1
    rows = names_table(run_cli("list", "--store", store).stdout)
    assert all(rows[n][3] == "removed" for n in names)
    assert rows["kept.example"][3] == "active"
    removed = [r for r in audit_json(store) if r["event"] == "name-removed"]
    assert sorted(r["id"] for r in removed) == sorted(names)
    assert all(r["detail"].startswith("removed by uid") for r in removed)

    # again with one never registered: said, the rest "removed already",
    # nothing moves
    listing.write_text("\n".join(names[:3] + ["nope.example"]) + "\n")
    proc = run_cli("remove", "--store", store, "--from-file", str(listing), check=False)
    assert proc.returncode == 1
    assert "remove nope.example: not registered" in proc.stderr
    assert proc.stdout.count(": removed already") == 3
    assert generation(store, "names-generation") == g_names + 1

    # from standard input
    proc = subprocess.run([cli_path(), "remove", "--store", store, "--from-file", "-"],
                          input="stdin1.example\n", capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert entry(store, "stdin1.example")["state"] == "removed"
    assert generation(store, "names-generation") == g_names + 2


def test_remove_from_file_errors_name_the_line(tmp_path):
    store = str(tmp_path / "store")
    run_cli("add", "--store", store, "ok.example", "ok2.example")
    listing = tmp_path / "names.txt"
    listing.write_text("ok.example\nbad name.example\nok2.example\n")
    proc = run_cli("remove", "--store", store, "--from-file", str(listing), check=False)
    assert proc.returncode == 2, proc.stderr
    assert f'{listing}:2: "bad name.example": character 0x20' in proc.stderr
    assert "1 bad line; nothing removed" in proc.stderr
    assert entry(store, "ok.example")["state"] == "active"
    proc = run_cli("remove", "--store", store, check=False)
    assert proc.returncode == 2 and "missing NAME" in proc.stderr
