"""Helpers shared by the integration tests: the build, the CLI, ports,
waiting, and looking at certificates the way a TLS client sees them."""
import datetime
import os
import re
import socket
import subprocess
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)


def build_dir():
    return os.environ.get("ATLS_BUILD") or os.path.join(REPO, "build")


def cli_path():
    path = os.path.join(build_dir(), "autotls")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is missing: run 'make' first")
    return path


def run_cli(*args, check=True, timeout=180, env=None):
    """Runs the autotls CLI; with check=True a non-zero exit fails the test
    with the CLI's own output in the message."""
    proc = subprocess.run([cli_path(), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"autotls {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


_given_ports = set()


def free_port(udp=False):
    """A loopback port nobody listens on now and that this run has not
    handed out before (the OS may otherwise hand the same port twice)."""
    for _ in range(100):
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port
    raise RuntimeError("no free port")


def wait_until(fn, timeout=60, interval=0.2, what="condition", first_interval=None):
    """Polls fn until it returns something truthy, which is returned.
    first_interval: start polling that often and double up to interval, for
    waits that are usually over within a few tens of milliseconds (a server
    starting or stopping) and run in every test; only for fn that can be
    called often (no side effects a test counts)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    pause = min(first_interval or interval, interval)
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except (RuntimeError, AssertionError):
            raise
        except Exception as e:   # noqa: BLE001 - keep polling, report the last one
            last_exc = e
        time.sleep(pause)
        pause = min(pause * 2, interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


def stays(fn, seconds, interval=0.2, what="condition"):
    """For claims that something does NOT happen (no second log line, no
    new request): fn must hold at every poll for the whole window, and the
    test fails at the first poll where it does not.  Not for waiting until
    something happened: that is wait_until."""
    deadline = time.monotonic() + seconds
    while True:
        assert fn(), f"{what} stopped holding"
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def served_chain(port, sni, host="127.0.0.1", extra_args=(), timeout=15):
    """The certificate chain a TLS client gets for sni, as PEM strings (leaf first)."""
    argv = ["openssl", "s_client", "-connect", f"{host}:{port}", "-servername", sni,
            "-showcerts", *extra_args]
    proc = subprocess.run(argv, input="", capture_output=True, text=True, timeout=timeout)
    chain = PEM_RE.findall(proc.stdout)
    if not chain:
        raise AssertionError(f"no certificate from {host}:{port} for {sni}: {proc.stderr[-500:]}")
    return [c if c.endswith("\n") else c + "\n" for c in chain]


def cert_info(pem):
    cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(n) for n in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    pub = cert.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        key_type = {"secp256r1": "ec256", "secp384r1": "ec384"}.get(pub.curve.name, pub.curve.name)
    elif isinstance(pub, rsa.RSAPublicKey):
        key_type = f"rsa{pub.key_size}"
    else:
        key_type = type(pub).__name__

    def cn(name):
        attrs = name.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        return attrs[0].value if attrs else name.rfc4514_string()

    return {
        # whole bytes, lower case: how autotls (BN_bn2hex) and openssl print it
        "serial": _serial_hex(cert.serial_number),
        "issuer": cn(cert.issuer),
        "subject": cert.subject.rfc4514_string(),
        "not_before": cert.not_valid_before.replace(tzinfo=datetime.timezone.utc),
        "not_after": cert.not_valid_after.replace(tzinfo=datetime.timezone.utc),
        "names": names,
        "key_type": key_type,
        "self_signed": cert.issuer == cert.subject,
    }


def _serial_hex(n):
    h = format(n, "x")
    return "0" + h if len(h) % 2 else h


def verify_chain(chain_pems, roots_pem):
    """openssl verify of the leaf with the rest of the chain as untrusted
    intermediates and the given roots as the only trust anchors."""
    with tempfile.TemporaryDirectory() as d:
        leaf, roots, inter = (os.path.join(d, n) for n in ("leaf.pem", "roots.pem", "inter.pem"))
        with open(leaf, "w") as f:
            f.write(chain_pems[0])
        with open(roots, "w") as f:
            f.write(roots_pem)
        argv = ["openssl", "verify", "-CAfile", roots]
        if len(chain_pems) > 1:
            with open(inter, "w") as f:
                f.write("".join(chain_pems[1:]))
            argv += ["-untrusted", inter]
        proc = subprocess.run(argv + [leaf], capture_output=True, text=True)
        return proc.returncode == 0 and proc.stdout.strip().endswith("OK")


def split_pem_chain(text):
    return PEM_RE.findall(text)


def make_test_root(base=None):
    """A directory the server's unprivileged workers can traverse (0755);
    keys inside stay 0600 in 0700 directories made by autotls itself."""
    d = tempfile.mkdtemp(prefix="autotls-test-", dir=base)
    os.chmod(d, 0o755)
    return d


def sanitizer_env(module, log_dir):
    """Environment for a server binary that loads a module built with
    sanitizers (make asan): their runtimes must be preloaded into the
    uninstrumented server; reports go to files under log_dir, which
    sanitizer_reports() returns for the tests to fail on."""
    env = dict(os.environ)
    ldd = subprocess.run(["ldd", module], capture_output=True, text=True).stdout
    libs = re.findall(r"(\S*lib(?:asan|ubsan)\.so\S*) => (\S+)", ldd)
    if libs:
        env["LD_PRELOAD"] = " ".join(path for _, path in libs)
        env["ASAN_OPTIONS"] = f"detect_leaks=0:log_path={log_dir}/asan"
        env["UBSAN_OPTIONS"] = f"print_stacktrace=1:log_path={log_dir}/ubsan"
    return env


def sanitizer_reports(log_dir):
    """Text of every sanitizer report written under log_dir."""
    out = []
    for name in sorted(os.listdir(log_dir)):
        if name.startswith(("asan.", "ubsan.")):
            with open(os.path.join(log_dir, name), errors="replace") as f:
                out.append(f.read())
    return "".join(out)


def replace_file(path, text):
    """Rewrites path whole, as the store does (a temporary file renamed over
    it, same owner and mode), so a server reading it never sees it half
    written."""
    st = os.stat(path)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, st.st_mode & 0o7777)
    os.replace(tmp, path)
