#!/bin/sh
# Bulk registration with notification sinks (issue 11): N names added from
# a file then removed from a file by one CLI, with a webhook (a small
# receiver on loopback that counts requests) and a command (a script that
# counts runs) in the store's notify.json; then the queue is delivered by
# `autotls notify-test` (its own test event is not counted).  Prints, per
# step, the wall time, the fsync+fdatasync+syncfs calls (strace -c -f) and the
# notification queue entries; then the webhook requests and command runs
# the delivery took and its wall time.
#
#   bench/names_bulk.sh CLI [N...]      (default N: 1000 10000)
# CLI is an autotls binary (build/autotls, or an older build to compare).
# A CLI without `remove --from-file` (before it existed) gets the names as
# arguments.  notify.json's queue_max is raised to 100000 so that an old
# CLI's one-entry-per-name queue is not cut at the default bound (10000).
set -eu

CLI=${1:?usage: bench/names_bulk.sh CLI [N...]}
shift
[ $# -gt 0 ] || set -- 1000 10000
WORK=$(mktemp -d /tmp/atls-names-bulk.XXXXXX)
RX_PID=
cleanup() {
    [ -z "$RX_PID" ] || kill "$RX_PID" 2>/dev/null || true
    [ -n "${BENCH_KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# the receiver: one line per POST in $WORK/posts, 204 to each
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
/usr/bin/python3 - "$PORT" "$WORK/posts" 2>"$WORK/rx.log" <<'PY' &
import http.server, sys
port, out = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "a") as f:
            f.write("%d\n" % len(body))
        self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers()
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
RX_PID=$!
printf '#!/bin/sh\ncat >/dev/null\necho "$1" >> %s/runs\n' "$WORK" > "$WORK/sink.sh"
chmod 755 "$WORK/sink.sh"

now_ms() { date +%s%3N; }
lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
queued() { if [ -d "$1/events" ]; then ls "$1/events" | wc -l; else echo 0; fi; }

# step NAME STORE ARGS...: wall ms, syncs (fsync+fdatasync+syncfs), queue entries
step() {
    name=$1; st=$2; shift 2
    t0=$(now_ms)
    strace -c -f -e trace=fsync,fdatasync,syncfs -o "$WORK/strace.$name" "$CLI" "$@" \
        >"$WORK/out.$name" 2>&1 || { cat "$WORK/out.$name" >&2; exit 1; }
    t1=$(now_ms)
    calls=$(awk '$NF == "total" { print $4 }' "$WORK/strace.$name")
    printf '  %-8s %6d ms  %7s syncs  %6d queue entries\n' "$name" $((t1 - t0)) \
        "${calls:-0}" "$(queued "$st")"
}

remove_has_from_file() { "$CLI" remove --help 2>&1 | grep -q -- --from-file; }

for N in "$@"; do
    st=$WORK/store-$N
    mkdir -m 0700 "$st"
    printf '{"exec":"%s/sink.sh","webhook":"http://127.0.0.1:%s/hook","queue_max":100000}\n' \
        "$WORK" "$PORT" > "$st/notify.json"
    chmod 600 "$st/notify.json"
    i=0
    while [ $i -lt "$N" ]; do echo "n$i.bulk.example"; i=$((i + 1)); done > "$WORK/names-$N"
    : > "$WORK/posts"; : > "$WORK/runs"
    echo "== $N names ($CLI)"
    step add "$st" add --store "$st" --from-file "$WORK/names-$N"
    if remove_has_from_file; then
        step remove "$st" remove --store "$st" --from-file "$WORK/names-$N"
    else
        # shellcheck disable=SC2046
        step remove "$st" remove --store "$st" $(cat "$WORK/names-$N")
    fi
    # the delivery is stopped after BENCH_DELIVER_S (default 600) seconds:
    # one entry a name takes long (what is left is said)
    t0=$(now_ms)
    rc=0
    timeout "${BENCH_DELIVER_S:-600}" "$CLI" notify-test --store "$st" \
        >"$WORK/out.deliver" 2>&1 || rc=$?
    t1=$(now_ms)
    posts=$(lines "$WORK/posts"); runs=$(lines "$WORK/runs")
    if [ $rc -eq 0 ]; then
        posts=$((posts - 1)); runs=$((runs - 1))     # notify-test's own event
    elif [ $rc -ne 124 ]; then
        cat "$WORK/out.deliver" >&2; exit 1
    fi
    printf '  deliver  %6d ms  %7d webhook requests  %6d command runs  (%d queue entries left%s)\n' \
        $((t1 - t0)) "$posts" "$runs" "$(queued "$st")" \
        "$([ $rc -eq 124 ] && echo ", stopped after ${BENCH_DELIVER_S:-600} s")"
done
