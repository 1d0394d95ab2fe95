#!/usr/bin/python3
"""Runs a private Pebble + challtestsrv for `make demo` until SIGTERM/SIGINT.

Writes shell variables (DIRECTORY, CA_FILE, HTTP_PORT, TLS_PORT, CHALL_URL)
to the file named on the command line once Pebble answers, and stops both
processes on exit.  Reuses the integration tests' pebblectl so the demo
and the tests start Pebble the same way.
"""
import os
import shlex
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

from pebblectl import Pebble  # noqa: E402


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: demo_pebble.py ENV_FILE")
    env_file = sys.argv[1]
    # procs (imported by pebblectl) turns SIGTERM into SystemExit; SIGINT
    # arrives as KeyboardInterrupt: both reach the finally below.
    pebble = Pebble()
    try:
        pebble.start()
        values = {
            "DIRECTORY": pebble.directory,
            "CA_FILE": pebble.ca_file,
            "HTTP_PORT": pebble.http_port,
            "TLS_PORT": pebble.tls_port,
            "CHALL_URL": pebble.chall_url,
            "MGMT_URL": pebble.mgmt_url,
        }
        tmp = env_file + ".tmp"
        with open(tmp, "w") as f:
            for k, v in values.items():
                f.write(f"{k}={shlex.quote(str(v))}\n")
        os.rename(tmp, env_file)   # the shell only ever sees a complete file
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        pebble.close()


if __name__ == "__main__":
    main()
