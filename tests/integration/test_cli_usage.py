"""The CLI's command line: help, version, and usage errors that name the
offending option (exit 2) before anything touches a store or a CA."""
import os

import pytest

from util import run_cli

ISSUE = ["issue", "--directory", "https://127.0.0.1:9/dir", "--agree-tos"]


def usage_error(*args):
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
    assert proc.stdout == ""
    first = proc.stderr.splitlines()[0]
    assert first.startswith("autotls: ")
    assert "Try 'autotls" in proc.stderr
    return first


def test_version_and_help():
    proc = run_cli("--version")
    assert proc.stdout.startswith("autotls 0.1.0")
    general = run_cli("help").stdout
    for cmd in ("issue", "list", "show", "renew", "revoke"):
        assert cmd in general
        text = run_cli(cmd, "--help").stdout
        assert text.startswith(f"Usage: autotls {cmd}")
        assert run_cli("help", cmd).stdout == text
    issue_help = run_cli("issue", "--help").stdout
    for opt in ("--directory", "--ca-file", "--store", "--contact", "--agree-tos",
                "--eab-kid", "--eab-hmac-key", "--challenge", "--http-port", "--tls-port",
                "--dns-hook", "--key", "--profile", "--profile-required",
                "--preferred-chain", "--renew-before", "--listen-address", "--csr-cn"):
        assert opt in issue_help, opt


def test_no_arguments():
    proc = run_cli(check=False)
    assert proc.returncode == 2
    assert "Usage: autotls" in proc.stderr


def test_unknown_command():
    assert "frobnicate" in usage_error("frobnicate")


def test_unknown_option():
    assert "--frobnicate" in usage_error("list", "--store", "/nonexistent", "--frobnicate")


def test_option_of_another_command():
    line = usage_error("list", "--store", "/nonexistent", "--agree-tos")
    assert "--agree-tos" in line


def test_unknown_key_type(tmp_path):
    store = str(tmp_path / "store")
    line = usage_error(*ISSUE, "--store", store, "--key", "dsa1024", "a.test")
    assert "--key" in line and "dsa1024" in line
    assert not os.path.exists(store), "a usage error must not create the store"


def test_three_key_types(tmp_path):
    line = usage_error(*ISSUE, "--store", str(tmp_path), "--key", "ec256", "--key",
                       "rsa2048", "--key", "ec384", "a.test")
    assert "--key" in line


def test_missing_agree_tos(tmp_path):
    store = str(tmp_path / "store")
    line = usage_error("issue", "--directory", "https://127.0.0.1:9/dir", "--store", store,
                       "a.test")
    assert "--agree-tos" in line
    assert not os.path.exists(store)


@pytest.mark.parametrize("args,needle", [
    (["--challenge", "smtp-01"], "--challenge"),
    (["--http-port", "70000"], "--http-port"),
    (["--tls-port", "x"], "--tls-port"),
    (["--renew-before", "soon"], "--renew-before"),
    (["--challenge", "dns-01"], "--dns-hook"),
    (["--eab-kid", "k"], "--eab-hmac-key"),
])
def test_bad_issue_values(tmp_path, args, needle):
    line = usage_error(*ISSUE, "--store", str(tmp_path / "s"), *args, "a.test")
    assert needle in line


def test_missing_values():
    assert "--store" in usage_error("list")
    assert "--http-port" in usage_error(*ISSUE, "--store", "/tmp/x", "a.test", "--http-port")
    assert "name" in usage_error("show", "--store", "/nonexistent")
    assert "name" in usage_error(*ISSUE, "--store", "/nonexistent")


def test_bad_revoke_reason(tmp_path):
    assert "--reason" in usage_error("revoke", "--store", str(tmp_path), "--reason",
                                     "boredom", "a.test")


def test_request_excludes_issuer_options(tmp_path):
    line = usage_error("renew", "--store", str(tmp_path), "--request", "--key", "ec256",
                       "a.test")
    assert "--request" in line
