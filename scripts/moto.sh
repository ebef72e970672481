#!/usr/bin/env bash
# A loopback moto server (DynamoDB + SQS) for the conformance and scenario tests.
#
#   scripts/moto.sh start   start one (or reuse the running one) and print the export line
#   scripts/moto.sh env     print the export line for the running one
#   scripts/moto.sh stop    stop it
#
# Usage: eval "$(scripts/moto.sh start)"
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
state="$root/.moto"
port_file="$state/port"
pid_file="$state/pid"

say() { echo "$*" >&2; }

running() {
    [[ -f "$pid_file" && -f "$port_file" ]] || return 1
    local pid
    pid="$(cat "$pid_file")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# Python, not curl: a clean machine has Python but maybe no curl.
answers() {
    python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=2).read()
PY
}

export_line() {
    # moto takes any credentials; the tests name theirs here, as Portier never makes some up.
    echo "export PORTIER_TEST_AWS_ENDPOINT=http://127.0.0.1:$(cat "$port_file")" \
        "AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test"
}

ensure_moto() {
    if [[ ! -x "$venv/bin/python" ]]; then
        say "creating $venv"
        python3 -m venv "$venv"
    fi
    if [[ ! -x "$venv/bin/moto_server" ]]; then
        say "installing moto[server] into $venv"
        "$venv/bin/pip" install --quiet "moto[server]"
    fi
}

free_port() {
    "$venv/bin/python" - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

start() {
    if running && answers "$(cat "$port_file")"; then
        say "moto already running (pid $(cat "$pid_file"))"
        export_line
        return
    fi
    ensure_moto
    mkdir -p "$state"
    local port pid
    port="$(free_port)"
    # setsid: the server outlives this shell and its job control.
    setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$state/log" 2>&1 < /dev/null &
    pid=$!
    echo "$pid" >"$pid_file"
    echo "$port" >"$port_file"
    for _ in $(seq 1 100); do
        if answers "$port"; then
            say "moto listening on 127.0.0.1:$port (pid $pid, log $state/log)"
            export_line
            return
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            say "moto exited; see $state/log:"
            tail -n 20 "$state/log" >&2 || true
            rm -f "$pid_file" "$port_file"
            exit 1
        fi
        sleep 0.1
    done
    say "moto did not answer on port $port within 10 s; see $state/log"
    kill "$pid" 2>/dev/null || true
    rm -f "$pid_file" "$port_file"
    exit 1
}

stop() {
    if running; then
        local pid
        pid="$(cat "$pid_file")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        say "moto stopped (pid $pid)"
    else
        say "moto is not running"
    fi
    rm -f "$pid_file" "$port_file"
}

env_cmd() {
    if running; then
        export_line
    else
        say "moto is not running: scripts/moto.sh start"
        exit 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env) env_cmd ;;
    *)
        say "usage: $0 start|stop|env"
        exit 2
        ;;
esac
