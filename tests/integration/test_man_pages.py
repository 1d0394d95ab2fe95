"""The manual pages: docs/man/mkman.py writes them from docs/*.md; every
directive of the modules' command tables (read from the C sources) is in
its man page, its docs/*.md and README; `man -l` renders each page without
a warning; the CLI's commands are all in autotls(1)."""
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGES = {"autotls.1": "docs/cli.md", "autotls-nginx.5": "docs/nginx.md",
         "autotls-apache.5": "docs/apache.md"}


def read(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


def sources(directory, prefix):
    d = os.path.join(ROOT, directory)
    return "".join(read(directory, n) for n in sorted(os.listdir(d))
                   if n.startswith(prefix) and n.endswith(".c"))


def nginx_directives():
    """Every name in an ngx_command_t table: { ngx_string("name"), ..."""
    names = re.findall(r'\{\s*ngx_string\("([a-z_0-9]+)"\)', sources("nginx-module", "ngx_"))
    assert "autotls" in names and "autotls_store" in names and "directory" in names
    return sorted(set(names))


def apache_directives():
    """Every name in the command_rec table: AP_INIT_TAKE1("Name", ..."""
    names = re.findall(r'AP_INIT_[A-Z0-9_]+\(\s*"([A-Za-z0-9]+)"', sources("apache-module", "mod_"))
    assert "AutoTLS" in names and "AutoTLSCA" in names
    return sorted(set(names))


@pytest.fixture(scope="module")
def man_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("man")
    subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "docs", "man", "mkman.py"), str(out)],
                   check=True, timeout=60)
    return str(out)


def rendered(man_dir, page):
    """The page as man shows it (plain text), and the formatter's warnings."""
    proc = subprocess.run(["man", "--warnings", "-l", os.path.join(man_dir, page)],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MANWIDTH="200", MAN_KEEP_FORMATTING="",
                                   LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat"))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr


@pytest.mark.parametrize("page", sorted(PAGES))
def test_man_renders(man_dir, page):
    text, warnings = rendered(man_dir, page)
    assert not warnings.strip(), f"{page}: {warnings}"
    name = page.rsplit(".", 1)[0]
    assert text.lstrip().startswith(name.upper()), text[:200]
    for section in ("NAME", "DESCRIPTION", "SEE ALSO"):
        assert re.search(rf"^{section}$", text, re.M), f"{page} has no {section}"


def words_in(text):
    # man renders "-" as U+2010 in some locales; directives have none, but
    # a table cell "`autotls_store DIR;`" must still match "autotls_store"
    return set(re.findall(r"[A-Za-z0-9_]+", text))


@pytest.mark.parametrize("page,directives", [("autotls-nginx.5", nginx_directives),
                                             ("autotls-apache.5", apache_directives)])
def test_every_directive_documented(man_dir, page, directives):
    text, _ = rendered(man_dir, page)
    places = {page: words_in(text), PAGES[page]: words_in(read(PAGES[page])),
              "README.md": words_in(read("README.md"))}
    missing = {where: [d for d in directives() if d not in words]
               for where, words in places.items()}
    assert not any(missing.values()), f"directives not documented: {missing}"


def test_every_cli_command_in_autotls_1(man_dir):
    text, _ = rendered(man_dir, "autotls.1")
    # cli_cmd_notify_test is `autotls notify-test`
    commands = [c.replace("_", "-") for c in
                re.findall(r"&cli_cmd_([a-z_]+)", read("tools", "autotls", "main.c"))]
    assert {"issue", "list", "show", "renew", "revoke"} <= set(commands), commands
    for command in commands:
        assert re.search(rf"^AUTOTLS {command.upper()}$", text, re.M), \
            f"autotls(1) has no section for {command}"


def test_version_is_atls_version(man_dir):
    version = re.search(r'#define ATLS_VERSION\s+"([^"]+)"', read("common", "atls.h")).group(1)
    for page in PAGES:
        with open(os.path.join(man_dir, page)) as f:
            assert f'"autotls {version}"' in f.read().split("\n.TH", 1)[1].split("\n")[0]
