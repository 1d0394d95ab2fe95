"""Processes started by the tests: tracked so that every one of them is
stopped by PID at teardown, on SIGTERM and at interpreter exit."""
import atexit
import os
import signal
import subprocess
import threading

_started = []


def spawn(argv, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.Popen(argv, **kw)
    _started.append(proc)
    return proc


def stop(proc, timeout=10):
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass
    if proc in _started:
        _started.remove(proc)


def track_pid(pid):
    """For daemons that fork (nginx, apache): remember the PID to kill at exit."""
    _pids.add(pid)


def untrack_pid(pid):
    _pids.discard(pid)


_pids = set()


def stop_all():
    for proc in list(_started):
        stop(proc)
    for pid in list(_pids):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        _pids.discard(pid)


atexit.register(stop_all)


def _on_sigterm(signum, frame):
    stop_all()
    raise SystemExit(128 + signum)


# Only the main thread may install a handler: execnet 1.9 sometimes runs an
# xdist worker's start-up in another thread, where signal.signal() raises
# and the worker crashes before its first test (atexit and the session's
# end still stop everything there).
if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _on_sigterm)
