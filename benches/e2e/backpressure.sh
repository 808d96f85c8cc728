#!/usr/bin/env bash
# Backpressure: rwsplit's RSS while a slow client reads a 1 GiB result (1024 rows of 1 MiB) through it.
# The proxy forwards frames as they arrive and reads no further ahead than its 64 KiB write buffer, so its
# memory should grow by a few MiB at most, however large the result.
#
#   bash benches/e2e/backpressure.sh        (starts the dev sandbox with deploy/sandbox.sh if needed)
# Env: ROWS (1024), READ_DELAY (seconds per 1 MiB row read by the client, 0.01).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROWS="${ROWS:-1024}"
READ_DELAY="${READ_DELAY:-0.01}"

bash deploy/sandbox.sh up >/dev/null
cargo build --release --locked --bin rwsplit >/dev/null 2>&1
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s/^listen: .*/listen: 127.0.0.1:$port/" -e '/^metrics:/,/^$/d' -e '/^admin:/,/^$/d' proxy.yaml > "$work/proxy.yaml"
RUST_LOG=warn ./target/release/rwsplit --config "$work/proxy.yaml" 2>"$work/rwsplit.log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
before=$(rss)
mariadb --no-defaults --quick -h127.0.0.1 -P"$port" -uapp -papppw -N \
    -e "SELECT REPEAT('x', 1048576) FROM mysql.seq_1_to_$ROWS" |
    python3 -c "
import sys, time
n = 0
for line in sys.stdin.buffer:
    n += len(line)
    time.sleep($READ_DELAY)
print(n, file=open('$work/read', 'w'))
" &
reader=$!
max=$before
start=$(date +%s)
while kill -0 "$reader" 2>/dev/null; do
    r=$(rss)
    [ "$r" -gt "$max" ] && max=$r
    sleep 0.2
done
wait "$reader"
echo "backpressure: a slow client read $(cat "$work/read") bytes in $(( $(date +%s) - start ))s through rwsplit"
echo "rwsplit VmRSS before ${before} KiB, peak ${max} KiB: grew by $(( (max - before) / 1024 )) MiB"
