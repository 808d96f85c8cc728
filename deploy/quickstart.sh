#!/usr/bin/env bash
# Starts a local replicated MariaDB sandbox (master 13306, replicas 13307 and 13308; installs MariaDB with
# apt-get if missing), builds rwsplit, and runs it in the foreground with the shipped proxy.yaml.
# Stop with Ctrl-C; stop the sandbox with `deploy/sandbox.sh down`.
#
#   deploy/quickstart.sh [--replication gtid|pos|semisync]   (default gtid; see deploy/sandbox.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    echo "usage: deploy/quickstart.sh [--replication gtid|pos|semisync]" >&2
    exit 2
}
mode=gtid
case "$#:${1:-}" in
    0:) ;;
    2:--replication)
        [[ "$2" =~ ^(gtid|pos|semisync)$ ]] || usage
        mode=$2
        ;;
    *) usage ;;
esac
bash deploy/sandbox.sh up --replication "$mode"
cargo build --release --locked --bin rwsplit
listen=$(sed -n 's/^listen: *//p' proxy.yaml)
cat <<MSG

rwsplit listens on ${listen} (config: proxy.yaml). Connect with:
  mariadb --no-defaults -h ${listen%:*} -P ${listen##*:} -u app -papppw
Try: SELECT @@server_id;   -- 2 or 3: a replica answered
     BEGIN; SELECT @@server_id; COMMIT;   -- 1: transactions run on the master

MSG
exec ./target/release/rwsplit --config proxy.yaml
