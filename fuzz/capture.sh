#!/usr/bin/env bash
# Rebuilds the committed seed corpus, fuzz/corpus/<target>/, from real protocol captures.
#
#   bash fuzz/capture.sh
#
# Starts a MariaDB sandbox (deploy/sandbox.sh, in its own directory and ports) and an rwsplit in front of it,
# records real client sessions through a loopback relay (fuzz/capture.py: the mariadb client, MySQL
# Connector/Python, and a raw client for the commands those do not send), cuts the captures into seeds
# for each target, and keeps of them only what adds coverage (libFuzzer's -merge), so each target's corpus
# stays a few dozen small files. Stops the proxy and wipes the sandbox at the end, also on failure.
#
# Needs: mariadbd (Debian's mariadb-server) and the mariadb client, python3, and the fuzz targets built
# (bash benches/fuzz.sh builds them; a target not built has its raw seeds copied instead of merged).
# Environment: CAPTURE_SANDBOX_DIR (default /tmp/rwsplit-fuzz-capture), CAPTURE_PORT (the sandbox's base
# port, default 24306; the proxy listens on base+10, its admin interface on base+11), RWSPLIT_BIN (default
# target/debug/rwsplit, built if missing).
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$FUZZ_DIR/.." && pwd)"
SB_DIR="${CAPTURE_SANDBOX_DIR:-/tmp/rwsplit-fuzz-capture}"
BASE="${CAPTURE_PORT:-24306}"
PROXY_PORT=$((BASE + 10))
ADMIN_PORT=$((BASE + 11))
RAW="$FUZZ_DIR/target/capture-raw"
BIN_DIR="$FUZZ_DIR/target/x86_64-unknown-linux-gnu/release"
RWSPLIT_BIN="${RWSPLIT_BIN:-$REPO/target/debug/rwsplit}"
PROXY_PID=""

log() { echo "fuzz/capture.sh: $*" >&2; }

cleanup() {
    if [[ -n "$PROXY_PID" ]]; then
        kill "$PROXY_PID" 2>/dev/null || true
        wait "$PROXY_PID" 2>/dev/null || true
    fi
    bash "$REPO/deploy/sandbox.sh" down --dir "$SB_DIR" --wipe >/dev/null 2>&1 || true
}
trap cleanup EXIT

wait_port() {
    local port=$1 i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# A Python that imports mysql.connector: the test drivers' venv if it has it, else a venv of our own.
python_with_connector() {
    local py
    for py in "$REPO/target/drivers-venv/bin/python" "$FUZZ_DIR/target/capture-venv/bin/python"; do
        if [[ -x "$py" ]] && "$py" -c 'import mysql.connector' 2>/dev/null; then
            echo "$py"
            return
        fi
    done
    local pinned
    pinned="$(sed -n 's/^mysql-connector-python==\([^[:space:];#]*\).*/\1/p' "$REPO/tests/drivers/requirements.txt")"
    log "installing mysql-connector-python ${pinned} into fuzz/target/capture-venv"
    if python3 -m venv "$FUZZ_DIR/target/capture-venv" >&2 &&
        "$FUZZ_DIR/target/capture-venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "mysql-connector-python==${pinned}" >&2; then
        echo "$FUZZ_DIR/target/capture-venv/bin/python"
    else
        log "no Connector/Python: its sessions are skipped"
        echo python3
    fi
}

log "starting the sandbox in $SB_DIR (ports $BASE-$((BASE + 2)))"
bash "$REPO/deploy/sandbox.sh" up --dir "$SB_DIR" --port "$BASE" >&2

if [[ ! -x "$RWSPLIT_BIN" ]]; then
    log "building the proxy (cargo build -p rwsplit)"
    (cd "$REPO" && cargo build -p rwsplit >&2)
fi
CONFIG="$SB_DIR/capture-proxy.yaml"
cat >"$CONFIG" <<EOF
# The proxy of fuzz/capture.sh: in front of its sandbox.
listen: 127.0.0.1:$PROXY_PORT
users:
  - user: app
    password: apppw
master:
  address: 127.0.0.1:$BASE
replicas:
  - address: 127.0.0.1:$((BASE + 1))
  - address: 127.0.0.1:$((BASE + 2))
    weight: 2
health:
  user: monitor
  password: monitorpw
  interval: 250ms
  max_replica_lag: 2s
admin:
  listen: 127.0.0.1:$ADMIN_PORT
  user: admin
  password: adminpw
connect_timeout: 1s
shutdown_grace: 1s
EOF
"$RWSPLIT_BIN" --config "$CONFIG" >"$SB_DIR/proxy.log" 2>&1 &
PROXY_PID=$!
wait_port "$PROXY_PORT" || { tail -20 "$SB_DIR/proxy.log" >&2; log "the proxy did not start"; exit 1; }
wait_port "$ADMIN_PORT" || { log "the admin interface did not start"; exit 1; }

# Config seeds: the shipped configs, proxy.yaml with every optional setting it shows switched on, and this
# capture's own config.
rm -rf "$RAW"
mkdir -p "$RAW/extra"
python3 - "$REPO/proxy.yaml" "$RAW/extra/proxy-all-options.yaml" <<'EOF'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
out = [re.sub(r"^(\s*)# ([a-z_]+: [^#]*?)\s*(#.*)?$", r"\1\2", line) for line in lines]
open(sys.argv[2], "w").write("\n".join(out) + "\n")
EOF
PY="$(python_with_connector)"
"$PY" "$FUZZ_DIR/capture.py" --master "$BASE" --proxy "$PROXY_PORT" --admin "$ADMIN_PORT" --out "$RAW" \
    --config-seeds "$REPO/proxy.yaml" "$REPO/deploy/compose/proxy.yaml" "$REPO/deploy/kubernetes/configmap.yaml" \
    "$CONFIG" "$RAW/extra/proxy-all-options.yaml"

# Keep what adds coverage; targets not built yet (or not registered) get their raw seeds.
for dir in "$RAW"/*/; do
    target="$(basename "$dir")"
    [[ "$target" == extra ]] && continue
    out="$FUZZ_DIR/corpus/$target"
    rm -rf "$out.new"
    mkdir -p "$out.new"
    if [[ -x "$BIN_DIR/$target" ]]; then
        nice -n 19 "$BIN_DIR/$target" -merge=1 -rss_limit_mb=2048 "$out.new" "$dir" >/dev/null 2>&1
    else
        # No fuzzer to merge with: a sample of 40 (names are content hashes, so a fair one).
        find "$dir" -type f | sort | head -n 40 | xargs -r cp -t "$out.new/"
    fi
    rm -rf "$out"
    mv "$out.new" "$out"
    log "$target: $(find "$out" -type f | wc -l) seeds"
done
