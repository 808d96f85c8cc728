#!/usr/bin/env bash
# End-to-end benchmark of rwsplit against a direct replica connection and HAProxy (TCP mode), all in one run,
# so every comparison is between figures taken minutes apart on the same machine. Reports ratios; the
# absolute numbers are printed for context only (the machine is shared and noisy).
#
#   bash benches/e2e/run.sh
#
# Parts (all by default; choose with BENCH_PARTS="sysbench latency churn idle"):
#   sysbench  oltp_point_select, oltp_read_only --skip_trx=on, oltp_read_only with transactions; text
#             (--db-ps-mode=disable) and prepared (--db-ps-mode=auto); BENCH_THREADS threads; against the
#             direct replica, HAProxy and rwsplit: QPS, p95 latency, proxy CPU µs per query
#   latency   1-thread oltp_point_select (unloaded): median latency per target and what each proxy adds
#   churn     connect / SELECT 1 / disconnect loop (benches/churn.rs): connections/s and proxy CPU µs per
#             connection
#   idle      VmRSS of a fresh rwsplit before/after BENCH_IDLE_CONNS idle logged-in client connections
#             (benches/idle.rs): bytes per connection
#   load      BENCH_LOAD_CONNS (10000) client connections open at once, each querying (a point select, then
#             a random pause of mean BENCH_LOAD_THINK_MS=1000 ms) for BENCH_LOAD_TIME (30) s through a fresh
#             rwsplit with pool.max_backend_connections BENCH_LOAD_CAP (64) per backend (benches/load.rs):
#             errors, QPS, p50/p99 latency, rwsplit's VmRSS (not in the default set: run it by name)
#   workers   rwsplit with workers: 2 (two event loops, SO_REUSEPORT) against workers: 1, sysbench
#             point_select and read_only (text, --skip_trx), BENCH_WORKERS_RUNS (3) interleaved rounds,
#             medians: QPS and CPU µs per query, and their ratios (not in the default set: run it by name)
#   fair      issue 13's comparison, BENCH_FAIR_RUNS (3) interleaved rounds, medians and [ranges]: reads
#             (point_select, read_only --skip_trx; text and prepared) through rwsplit over ONE replica vs
#             HAProxy to that replica (the same work), and over two vs HAProxy over two; oltp_read_write and
#             oltp_write_only (with transactions, and --skip_trx) through rwsplit (session and eventual) vs
#             HAProxy in front of the master vs the master direct; one ratio table (run it by name);
#             BENCH_FAIR_ONLY="point_select read_only" keeps only the workloads named
#   consistency  sysbench oltp_read_write (in transactions, and autocommit) and the write-then-read client
#             (benches/ryw.rs) against the master directly, rwsplit with consistency: eventual and rwsplit
#             with consistency: session (the default), BENCH_CONSISTENCY_RUNS (3) rounds, medians: QPS, p95,
#             share of reads on replicas, stale reads, and the cost of session over eventual
#
# Environment (defaults): BENCH_TIME=10 (seconds per sysbench run), BENCH_LATENCY_TIME=BENCH_TIME,
# BENCH_CHURN_TIME=BENCH_TIME, BENCH_THREADS=16, BENCH_TABLES=4, BENCH_TABLE_SIZE=10000,
# BENCH_CHURN_WORKERS=4, BENCH_IDLE_CONNS=10000, BENCH_PORT=23306 (sandbox master; replicas +1, +2;
# HAProxy +10; rwsplit +11), BENCH_DIR=/tmp/rwsplit-bench (sandbox data, wiped at the end),
# BENCH_KEEP_SANDBOX=1 (leave the sandbox running for another run), BENCH_RWSPLIT_LOG=warn (RUST_LOG),
# BENCH_RWSPLIT_WORKERS=1 (rwsplit's `workers`), BENCH_HAPROXY_THREADS=$(nproc) (HAProxy's nbthread).
#
# Needs: mariadb (installed by deploy/sandbox.sh), sysbench and haproxy (installed with apt-get if missing).
# Everything it starts (sandbox, HAProxy, rwsplit) is stopped on exit, also on failure or Ctrl-C.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO_ROOT
cd "$REPO_ROOT"

readonly DURATION="${BENCH_TIME:-10}"
readonly LATENCY_TIME="${BENCH_LATENCY_TIME:-$DURATION}"
readonly CHURN_TIME="${BENCH_CHURN_TIME:-$DURATION}"
readonly THREADS="${BENCH_THREADS:-16}"
readonly TABLES="${BENCH_TABLES:-4}"
readonly TABLE_SIZE="${BENCH_TABLE_SIZE:-10000}"
readonly CHURN_WORKER_COUNT="${BENCH_CHURN_WORKERS:-4}"
IDLE_CONNS="${BENCH_IDLE_CONNS:-10000}"
LOAD_CONNS="${BENCH_LOAD_CONNS:-10000}"
LOAD_TIME="${BENCH_LOAD_TIME:-30}" LOAD_THINK_MS="${BENCH_LOAD_THINK_MS:-1000}" LOAD_CAP="${BENCH_LOAD_CAP:-64}"
readonly BASE="${BENCH_PORT:-23306}"
readonly SANDBOX_DIR="${BENCH_DIR:-/tmp/rwsplit-bench}"
readonly PARTS=" ${BENCH_PARTS:-sysbench latency churn idle consistency} "
readonly MASTER_PORT=$BASE R1_PORT=$((BASE + 1)) R2_PORT=$((BASE + 2))
readonly HAPROXY_PORT=$((BASE + 10)) RWSPLIT_PORT=$((BASE + 11)) EVENTUAL_PORT=$((BASE + 12))
readonly DIRECT_PORT=$R1_PORT
readonly HAPROXY1_PORT=$((BASE + 15)) HAPROXYM_PORT=$((BASE + 16)) RWSPLIT1_PORT=$((BASE + 17))
CLK_TCK="$(getconf CLK_TCK)"
readonly CLK_TCK

WORK="$(mktemp -d /tmp/rwsplit-bench-run.XXXXXX)"
readonly WORK
HAPROXY_PID="" RWSPLIT_PID="" EVENTUAL_PID="" LOAD_RWSPLIT_PID="" WORKERS2_PID="" RWSPLIT1_PID="" CHILD_PID="" CHILD_NAME="" SANDBOX_STARTED=0 FAILED=0
STARTED_AT=$SECONDS

log() { echo "[bench $((SECONDS - STARTED_AT))s] $*" >&2; }
die() {
    echo "bench: error: $*" >&2
    exit 1
}
has_part() { [[ "$PARTS" == *" $1 "* ]]; }

# --- cleanup -----------------------------------------------------------------------------------------------

stop_pid() {
    local pid=$1 name=$2 i
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$CHILD_PID" "$CHILD_NAME"
    stop_pid "$RWSPLIT_PID" rwsplit
    stop_pid "$EVENTUAL_PID" rwsplit-eventual
    stop_pid "$LOAD_RWSPLIT_PID" rwsplit-load
    stop_pid "$WORKERS2_PID" rwsplit-workers2
    stop_pid "$RWSPLIT1_PID" rwsplit-one-replica
    stop_pid "$HAPROXY_PID" haproxy
    if ((SANDBOX_STARTED)); then
        if [[ "${BENCH_KEEP_SANDBOX:-0}" == 1 ]]; then
            log "leaving the sandbox running in $SANDBOX_DIR" \
                "(stop: bash deploy/sandbox.sh down --wipe --dir $SANDBOX_DIR)"
        else
            bash deploy/sandbox.sh down --wipe --dir "$SANDBOX_DIR" >/dev/null 2>&1 || log "sandbox down failed"
        fi
    fi
    if ((rc == 0 || rc == 130)); then
        rm -rf "$WORK"
    else
        log "failed (exit $rc); logs kept in $WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_child LOG CMD...: runs CMD as a background child with stdout and stderr appended to LOG, and waits for
# it. A foreground child would delay Ctrl-C: bash runs the INT trap only after the child ends, and not at all
# if the child (sysbench) handles SIGINT itself. `wait` is interrupted at once, and cleanup stops the child.
# (The log is the child's redirection, not the function's, so cleanup's messages still reach stderr.)
run_child() {
    local rc=0 log=$1
    shift
    "$@" >>"$log" 2>&1 &
    CHILD_PID=$! CHILD_NAME=$1
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    return "$rc"
}

# --- setup -------------------------------------------------------------------------------------------------

apt_install() {
    local sudo=()
    [[ "$(id -u)" == 0 ]] || sudo=(sudo)
    log "installing $* with apt-get"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

ensure_tools() {
    local missing=()
    command -v sysbench >/dev/null || missing+=(sysbench)
    export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
    command -v haproxy >/dev/null || missing+=(haproxy)
    ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
}

# Raises the open-files limit of this shell and its children to the hard limit (rwsplit and the idle client
# each hold one descriptor per idle connection; HAProxy checks it can hold 2 per maxconn).
raise_nofile() {
    local want=$((IDLE_CONNS + 1024)) hard
    ((LOAD_CONNS + 1024 <= want)) || want=$((LOAD_CONNS + 1024))
    ((want >= 10000)) || want=10000
    hard="$(ulimit -Hn)"
    if [[ "$hard" != unlimited ]] && ((hard < want)); then
        ulimit -Hn "$want" 2>/dev/null || true
        hard="$(ulimit -Hn)"
    fi
    if [[ "$hard" == unlimited ]]; then
        ulimit -n "$want"
    else
        ulimit -n "$hard"
    fi
    NOFILE="$(ulimit -n)"
    if ((NOFILE < IDLE_CONNS + 1024)); then
        IDLE_CONNS=$((NOFILE - 1024))
        log "open-files limit is $NOFILE; idle test reduced to $IDLE_CONNS connections"
    fi
    if ((NOFILE < LOAD_CONNS + 1024)); then
        LOAD_CONNS=$((NOFILE - 1024))
        log "open-files limit is $NOFILE; load test reduced to $LOAD_CONNS connections"
    fi
}

# Prints the "executable" path cargo reports for target $1 in the JSON messages on stdin.
executable_of() {
    sed -n "s/.*\"name\":\"$1\".*\"executable\":\"\([^\"]*\)\".*/\1/p" | tail -n 1
}

build() {
    log "building rwsplit (release) and the load clients (benches/churn.rs, idle.rs, ryw.rs, load.rs)"
    local json
    json="$(cargo build --release -p rwsplit --bin rwsplit --message-format=json-render-diagnostics)"
    RWSPLIT_BIN="$(executable_of rwsplit <<<"$json")"
    json="$(cargo bench --no-run --bench churn --bench idle --bench ryw --bench load \
        --message-format=json-render-diagnostics)"
    CHURN_BIN="$(executable_of churn <<<"$json")"
    IDLE_BIN="$(executable_of idle <<<"$json")"
    RYW_BIN="$(executable_of ryw <<<"$json")"
    LOAD_BIN="$(executable_of load <<<"$json")"
    [[ -x "$RWSPLIT_BIN" && -x "$CHURN_BIN" && -x "$IDLE_BIN" && -x "$RYW_BIN" && -x "$LOAD_BIN" ]] ||
        die "build did not produce the binaries"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until $1 (port) accepts connections while pid $2 lives.
wait_port() {
    local port=$1 pid=$2 name=$3 deadline=$((SECONDS + 30))
    until port_open "$port"; do
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup; see $WORK/$name.log"
        ((SECONDS < deadline)) || die "$name did not listen on $port within 30s"
        sleep 0.1
    done
}

sql_root() {
    local port=$1
    shift
    mariadb --no-defaults -h127.0.0.1 -P "$port" -uroot -prootpw --protocol=TCP -N -B "$@"
}

start_sandbox() {
    local p
    for p in "$HAPROXY_PORT" "$RWSPLIT_PORT" "$EVENTUAL_PORT"; do
        ! port_open "$p" || die "port $p is in use; choose another BENCH_PORT"
    done
    log "starting the MariaDB sandbox in $SANDBOX_DIR on ports $MASTER_PORT-$R2_PORT"
    SANDBOX_STARTED=1
    run_child "$WORK/sandbox.log" bash deploy/sandbox.sh up --dir "$SANDBOX_DIR" --port "$BASE" ||
        {
            tail -n 30 "$WORK/sandbox.log" >&2
            die "sandbox did not start"
        }
}

sysbench_common() {
    echo --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-password=apppw --mysql-db=app \
        --tables="$TABLES" --table-size="$TABLE_SIZE"
}

prepare_data() {
    log "preparing sysbench tables on the master ($TABLES × $TABLE_SIZE rows in database app)"
    # shellcheck disable=SC2046
    run_child "$WORK/prepare.log" sysbench oltp_read_only $(sysbench_common) --mysql-port="$MASTER_PORT" cleanup
    # shellcheck disable=SC2046
    run_child "$WORK/prepare.log" sysbench oltp_read_only $(sysbench_common) --mysql-port="$MASTER_PORT" \
        --threads=2 prepare || {
        tail -n 20 "$WORK/prepare.log" >&2
        die "sysbench prepare failed"
    }
    local pos r
    pos="$(sql_root "$MASTER_PORT" -e 'SELECT @@gtid_binlog_pos')"
    for r in "$R1_PORT" "$R2_PORT"; do
        [[ "$(sql_root "$r" -e "SELECT MASTER_GTID_WAIT('$pos', 120)")" == 0 ]] ||
            die "replica on port $r did not catch up with the master ($pos) within 120s"
    done
    log "replicas caught up (gtid $pos)"
}

start_haproxy() {
    cat >"$WORK/haproxy.cfg" <<EOF
# HAProxy in TCP mode in front of the two replicas (benchmark reference), by default with its own default of
# one thread per core.
global
    maxconn $(((NOFILE - 100) / 2 < 4000 ? (NOFILE - 100) / 2 : 4000))
    nbthread ${BENCH_HAPROXY_THREADS:-$(nproc)}
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend mysql
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend replicas
backend replicas
    balance roundrobin
    server replica1 127.0.0.1:$R1_PORT
    server replica2 127.0.0.1:$R2_PORT
# For the fair comparison (part fair): one replica alone, and the master alone.
frontend mysql_one
    bind 127.0.0.1:$HAPROXY1_PORT
    default_backend replica1
backend replica1
    server replica1 127.0.0.1:$R1_PORT
frontend mysql_master
    bind 127.0.0.1:$HAPROXYM_PORT
    default_backend master
backend master
    server master 127.0.0.1:$MASTER_PORT
EOF
    haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    wait_port "$HAPROXY_PORT" "$HAPROXY_PID" haproxy
    local version
    version="$(haproxy -v | sed -n '1s/HAProxy version \([^ ]*\).*/\1/p')"
    log "haproxy $version on 127.0.0.1:$HAPROXY_PORT (pid $HAPROXY_PID)"
}

# write_rwsplit_config FILE PORT [EXTRA]: the benchmark's rwsplit config, listening on PORT, EXTRA appended.
write_rwsplit_config() {
    cat >"$1" <<EOF
listen: 127.0.0.1:$2
users:
  - user: app
    password: apppw
master:
  address: 127.0.0.1:$MASTER_PORT
replicas:
  - address: 127.0.0.1:$R1_PORT
  - address: 127.0.0.1:$R2_PORT
# As deployed: the health checker probes every backend (its CPU counts in rwsplit's CPU per query).
health:
  user: monitor
  password: monitorpw
  interval: 250ms
shutdown_grace: 2s
workers: ${BENCH_RWSPLIT_WORKERS:-1}
${3:-}
EOF
    "$RWSPLIT_BIN" --config "$1" --check >/dev/null || die "rwsplit rejected $1"
}

start_rwsplit() {
    write_rwsplit_config "$WORK/rwsplit.yaml" "$RWSPLIT_PORT"
    RUST_LOG="${BENCH_RWSPLIT_LOG:-warn}" "$RWSPLIT_BIN" --config "$WORK/rwsplit.yaml" >>"$WORK/rwsplit.log" 2>&1 &
    RWSPLIT_PID=$!
    wait_port "$RWSPLIT_PORT" "$RWSPLIT_PID" rwsplit
    log "rwsplit on 127.0.0.1:$RWSPLIT_PORT (pid $RWSPLIT_PID)"
}

# A second rwsplit with consistency: eventual, for the consistency part's comparison.
start_rwsplit_eventual() {
    write_rwsplit_config "$WORK/rwsplit-eventual.yaml" "$EVENTUAL_PORT" "consistency: eventual"
    RUST_LOG="${BENCH_RWSPLIT_LOG:-warn}" "$RWSPLIT_BIN" --config "$WORK/rwsplit-eventual.yaml" \
        >>"$WORK/rwsplit-eventual.log" 2>&1 &
    EVENTUAL_PID=$!
    wait_port "$EVENTUAL_PORT" "$EVENTUAL_PID" rwsplit-eventual
    log "rwsplit (consistency: eventual) on 127.0.0.1:$EVENTUAL_PORT (pid $EVENTUAL_PID)"
}

# --- measuring ---------------------------------------------------------------------------------------------

# utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15; the command name in field 2
# may contain spaces, so count from the field after it).
cpu_ticks() {
    local stat rest
    local -a f
    [[ -n "$1" ]] || {
        echo 0
        return
    }
    stat="$(<"/proc/$1/stat")"
    rest="${stat##*) }"
    read -r -a f <<<"$rest"
    echo $((f[11] + f[12]))
}

port_of_target() {
    case "$1" in
        direct) echo "$DIRECT_PORT" ;;
        haproxy) echo "$HAPROXY_PORT" ;;
        rwsplit | session) echo "$RWSPLIT_PORT" ;;
        master) echo "$MASTER_PORT" ;;
        eventual) echo "$EVENTUAL_PORT" ;;
        workers2) echo "$((BASE + 14))" ;;
        haproxy1) echo "$HAPROXY1_PORT" ;;
        haproxym) echo "$HAPROXYM_PORT" ;;
        rwsplit1) echo "$RWSPLIT1_PORT" ;;
    esac
}

pid_of_target() {
    case "$1" in
        direct | master) echo "" ;;
        haproxy) echo "$HAPROXY_PID" ;;
        rwsplit | session) echo "$RWSPLIT_PID" ;;
        eventual) echo "$EVENTUAL_PID" ;;
        workers2) echo "$WORKERS2_PID" ;;
        haproxy1 | haproxym) echo "$HAPROXY_PID" ;;
        rwsplit1) echo "$RWSPLIT1_PID" ;;
    esac
}

# utime + stime of the three servers together, in clock ticks.
server_ticks() {
    local n t=0
    for n in master replica1 replica2; do
        t=$((t + $(cpu_ticks "$(cat "$SANDBOX_DIR/$n/mariadbd.pid" 2>/dev/null)")))
    done
    echo "$t"
}

# Statements the three servers executed so far (Questions: client statements, the proxies' included).
server_questions() {
    local p t=0
    for p in "$MASTER_PORT" "$R1_PORT" "$R2_PORT"; do
        t=$((t + $(sql_root "$p" -e "SHOW GLOBAL STATUS LIKE 'Questions'" | awk '{print $2}')))
    done
    echo "$t"
}

# Questions answered by master, replica1, replica2 (to show where a run's queries went).
questions() {
    local p
    for p in "$MASTER_PORT" "$R1_PORT" "$R2_PORT"; do
        sql_root "$p" -e "SHOW GLOBAL STATUS LIKE 'Com_select'" | awk '{printf "%s ", $2}'
    done
}

# "m/r1/r2" shares of SELECTs between two questions() samples, in percent.
shares() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        split(a, x, " "); split(b, y, " "); t = 0
        for (i = 1; i <= 3; i++) { d[i] = y[i] - x[i]; t += d[i] }
        if (t <= 0) { print "-"; exit }
        printf "%d/%d/%d", 100 * d[1] / t + 0.5, 100 * d[2] / t + 0.5, 100 * d[3] / t + 0.5 }'
}

declare -A QPS P95 CPU WHERE SCPU SQ

# One sysbench run: target, label, sysbench test, extra options.
sysbench_run() {
    local target=$1 label=$2 test=$3
    shift 3
    local port pid out t0 t1 q0 q1 queries s0 s1 n0 n1 f0 f1
    port="$(port_of_target "$target")"
    f0="$(unreachable_events)"
    pid="$(pid_of_target "$target")"
    out="$WORK/sysbench-${label//\//-}-$target.log"
    q0="$(questions)"
    n0="$(server_questions)"
    s0="$(server_ticks)"
    t0="$(cpu_ticks "$pid")"
    # shellcheck disable=SC2046
    if ! run_child "$out" sysbench "$test" $(sysbench_common) --mysql-port="$port" --threads="$THREADS" \
        --time="$DURATION" --percentile=95 "$@" run; then
        log "FAILED: $label via $target (see below)"
        tail -n 15 "$out" >&2
        FAILED=1
        QPS[$label/$target]=FAIL
        return 0
    fi
    t1="$(cpu_ticks "$pid")"
    s1="$(server_ticks)"
    n1="$(server_questions)"
    q1="$(questions)"
    queries="$(sed -n 's/^ *queries: *\([0-9]*\) .*/\1/p' "$out")"
    QPS[$label/$target]="$(sed -n 's/^ *queries: *[0-9]* *(\([0-9.]*\) per sec.*/\1/p' "$out")"
    P95[$label/$target]="$(sed -n 's/^ *95th percentile: *\([0-9.]*\).*/\1/p' "$out")"
    WHERE[$label/$target]="$(shares "$q0" "$q1")"
    # What the servers did per client query: CPU (all three mariadbd) and statements executed.
    SCPU[$label/$target]="$(awk -v d=$((s1 - s0)) -v hz="$CLK_TCK" -v q="$queries" 'BEGIN { printf "%.1f", d * 1e6 / hz / q }')"
    SQ[$label/$target]="$(awk -v d=$((n1 - n0)) -v q="$queries" 'BEGIN { printf "%.3f", d / q }')"
    if [[ -n "$pid" ]]; then
        CPU[$label/$target]="$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v q="$queries" \
            'BEGIN { printf "%.1f", d * 1e6 / hz / q }')"
    else
        CPU[$label/$target]="-"
    fi
    f1="$(unreachable_events)"
    log "$label via $target: ${QPS[$label/$target]} qps, p95 ${P95[$label/$target]} ms," \
        "cpu/query ${CPU[$label/$target]} µs$( ((f1 > f0)) && echo "; $((f1 - f0)) servers declared unreachable")"
}

# The lines of the rwsplit logs given in which a health checker declared a server unreachable (colours
# stripped).
unreachable_lines() {
    cat "$@" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | grep 'reachable=false' || true
}

# How many times the running proxies' health checkers have declared a server unreachable so far.
unreachable_events() {
    unreachable_lines "$WORK"/rwsplit*.log | grep -c . || true
}

# a ÷ b with two decimals, or "-" if either is missing or failed.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}

readonly WORKLOADS=(
    "point_select|oltp_point_select|--skip_trx=on"
    "read_only_autocommit|oltp_read_only|--skip_trx=on"
    "read_only_trx|oltp_read_only|--skip_trx=off"
)
readonly TARGETS=(direct haproxy rwsplit)

part_sysbench() {
    local w name test opt mode label target
    for w in "${WORKLOADS[@]}"; do
        IFS='|' read -r name test opt <<<"$w"
        for mode in disable auto; do
            label="$name/$([[ $mode == disable ]] && echo text || echo ps)"
            # Targets back to back per workload, so load drift on the machine hits all three alike.
            for target in "${TARGETS[@]}"; do
                sysbench_run "$target" "$label" "$test" "$opt" --db-ps-mode="$mode"
            done
        done
    done
    echo
    echo "== sysbench: $THREADS threads, ${DURATION}s per run, $TABLES tables × $TABLE_SIZE rows =="
    printf '%-28s %-8s %10s %8s %14s %10s\n' workload target QPS "p95 ms" "CPU µs/query" "m/r1/r2 %"
    for w in "${WORKLOADS[@]}"; do
        IFS='|' read -r name test opt <<<"$w"
        for label in "$name/text" "$name/ps"; do
            for target in "${TARGETS[@]}"; do
                printf '%-28s %-8s %10s %8s %14s %10s\n' "$label" "$target" "${QPS[$label/$target]:-}" \
                    "${P95[$label/$target]:-}" "${CPU[$label/$target]:-}" "${WHERE[$label/$target]:-}"
            done
        done
    done
    echo
    echo "== sysbench ratios (same run) =="
    printf '%-28s %14s %14s %14s %14s %14s\n' workload "rw÷ha CPU/q" "rw÷ha QPS" "rw÷direct QPS" \
        "ha÷direct QPS" "rw÷ha p95"
    for w in "${WORKLOADS[@]}"; do
        IFS='|' read -r name test opt <<<"$w"
        for label in "$name/text" "$name/ps"; do
            printf '%-28s %14s %14s %14s %14s %14s\n' "$label" \
                "$(ratio "${CPU[$label/rwsplit]:-}" "${CPU[$label/haproxy]:-}")" \
                "$(ratio "${QPS[$label/rwsplit]:-}" "${QPS[$label/haproxy]:-}")" \
                "$(ratio "${QPS[$label/rwsplit]:-}" "${QPS[$label/direct]:-}")" \
                "$(ratio "${QPS[$label/haproxy]:-}" "${QPS[$label/direct]:-}")" \
                "$(ratio "${P95[$label/rwsplit]:-}" "${P95[$label/haproxy]:-}")"
        done
    done
    cat <<EOF

Notes: 'direct' is replica1 alone (127.0.0.1:$DIRECT_PORT). HAProxy balances connections round-robin over both
replicas; rwsplit picks a replica per read (fewest outstanding requests, then weighted round-robin), so
sysbench's $THREADS connections spread over both replicas too ('m/r1/r2 %' = share of SELECTs each server
executed). All servers, the proxies and
sysbench share this machine's $(nproc) cores, so two replicas do not add CPU: QPS ratios measure the cost of
the extra hop. In read_only_trx every event is BEGIN … COMMIT, which rwsplit sends to the master (a
transaction runs where it started), while HAProxy keeps it on a replica. CPU µs/query = the proxy process's
utime+stime (/proc/PID/stat) over the run ÷ the queries sysbench counted (BEGIN/COMMIT included).
EOF
}

# Median latency (ms) over sysbench --histogram=on reports (files given): buckets of all files are merged, and
# the median is the first bucket value where the running count reaches half of the total.
histogram_median() {
    awk '/^ +[0-9.]+ \|/ { print $1, $NF }' "$@" | sort -n -k1,1 |
        awk '{ v[n] = $1; c[n] = $2; total += $2; n++ }
            END { if (total == 0) { print "-"; exit }
                  for (i = 0; i < n; i++) { s += c[i]; if (s * 2 >= total) { printf "%.3f", v[i]; exit } } }'
}

part_latency() {
    local mode target label round rounds=$(((LATENCY_TIME + 1) / 2))
    local -A MED
    ((rounds >= 1)) || rounds=1
    for mode in disable auto; do
        label="$([[ $mode == disable ]] && echo text || echo ps)"
        # Short runs alternating between the targets, merged per target, so drift hits all targets alike.
        for ((round = 1; round <= rounds; round++)); do
            for target in "${TARGETS[@]}"; do
                local out="$WORK/latency-$label-$target-$round.log"
                # shellcheck disable=SC2046
                if ! run_child "$out" sysbench oltp_point_select $(sysbench_common) \
                    --mysql-port="$(port_of_target "$target")" --threads=1 --time=2 --histogram=on \
                    --percentile=50 --db-ps-mode="$mode" run; then
                    log "FAILED: latency $label via $target"
                    tail -n 15 "$out" >&2
                    FAILED=1
                    MED[$label/$target]=-
                fi
            done
        done
        for target in "${TARGETS[@]}"; do
            [[ "${MED[$label/$target]:-}" == - ]] && continue
            MED[$label/$target]="$(histogram_median "$WORK/latency-$label-$target-"*.log)"
            log "latency $label via $target: median ${MED[$label/$target]} ms"
        done
    done
    echo
    echo "== unloaded latency: 1 thread oltp_point_select, $rounds alternating 2s runs per target (median, ms) =="
    printf '%-6s %10s %10s %10s %14s %14s %12s %12s\n' mode direct haproxy rwsplit "rwsplit adds" \
        "haproxy adds" "rw÷direct" "rw÷haproxy"
    for label in text ps; do
        printf '%-6s %10s %10s %10s %14s %14s %12s %12s\n' "$label" "${MED[$label/direct]}" \
            "${MED[$label/haproxy]}" "${MED[$label/rwsplit]}" \
            "$(awk -v a="${MED[$label/rwsplit]}" -v b="${MED[$label/direct]}" 'BEGIN { printf "%+.3f", a - b }')" \
            "$(awk -v a="${MED[$label/haproxy]}" -v b="${MED[$label/direct]}" 'BEGIN { printf "%+.3f", a - b }')" \
            "$(ratio "${MED[$label/rwsplit]}" "${MED[$label/direct]}")" \
            "$(ratio "${MED[$label/rwsplit]}" "${MED[$label/haproxy]}")"
    done
}

part_churn() {
    local target pid out t0 t1 line
    local -A RATE CPUC
    for target in "${TARGETS[@]}"; do
        pid="$(pid_of_target "$target")"
        out="$WORK/churn-$target.log"
        t0="$(cpu_ticks "$pid")"
        if ! CHURN_ADDR="127.0.0.1:$(port_of_target "$target")" CHURN_SECS="$CHURN_TIME" \
            CHURN_WORKERS="$CHURN_WORKER_COUNT" run_child "$out" "$CHURN_BIN"; then
            log "FAILED: churn via $target"
            tail -n 15 "$out" >&2
            FAILED=1
            RATE[$target]=-
            CPUC[$target]=-
            continue
        fi
        t1="$(cpu_ticks "$pid")"
        line="$(grep '^churn ' "$out")"
        RATE[$target]="$(sed -n 's/.* conn_per_s=\([0-9.]*\).*/\1/p' <<<"$line")"
        if [[ -n "$pid" ]]; then
            CPUC[$target]="$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" \
                -v n="$(sed -n 's/.* connections=\([0-9]*\).*/\1/p' <<<"$line")" \
                'BEGIN { printf "%.1f", d * 1e6 / hz / n }')"
        else
            CPUC[$target]="-"
        fi
        log "churn via $target: $line"
    done
    echo
    echo "== connection churn: $CHURN_WORKER_COUNT workers, connect + SELECT 1 + disconnect," \
        "${CHURN_TIME}s per target =="
    printf '%-8s %12s %18s\n' target "conn/s" "proxy CPU µs/conn"
    for target in "${TARGETS[@]}"; do
        printf '%-8s %12s %18s\n' "$target" "${RATE[$target]}" "${CPUC[$target]}"
    done
    local fmt='ratios: rwsplit÷direct conn/s %s, haproxy÷direct conn/s %s, rwsplit÷haproxy conn/s %s,'
    printf "$fmt rwsplit÷haproxy CPU/conn %s\n" \
        "$(ratio "${RATE[rwsplit]}" "${RATE[direct]}")" "$(ratio "${RATE[haproxy]}" "${RATE[direct]}")" \
        "$(ratio "${RATE[rwsplit]}" "${RATE[haproxy]}")" "$(ratio "${CPUC[rwsplit]}" "${CPUC[haproxy]}")"
    echo "(rwsplit serves SELECT 1 from its pool of backend connections; HAProxy opens a replica connection per client)"
}

part_idle() {
    # A fresh rwsplit, so memory freed by earlier sessions cannot hide the cost of new ones.
    stop_pid "$RWSPLIT_PID" rwsplit
    RWSPLIT_PID=""
    start_rwsplit
    local out="$WORK/idle.log" line
    if ! IDLE_ADDR="127.0.0.1:$RWSPLIT_PORT" IDLE_PID="$RWSPLIT_PID" IDLE_CONNS="$IDLE_CONNS" \
        run_child "$out" "$IDLE_BIN"; then
        log "FAILED: idle connections"
        tail -n 15 "$out" >&2
        FAILED=1
        return 0
    fi
    line="$(grep '^idle ' "$out")"
    log "$line"
    echo
    echo "== idle connections: $IDLE_CONNS logged-in client connections held open on a fresh rwsplit =="
    awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { printf "VmRSS before %.1f MiB, with %d idle connections %.1f MiB, after closing them %.1f MiB\n",
                     v["rss_before"] / 1048576, v["conns"], v["rss_open"] / 1048576, v["rss_closed"] / 1048576
              printf "=> %d bytes (%.1f KiB) of rwsplit RSS per idle connection (no backend connection is opened)\n",
                     v["bytes_per_conn"], v["bytes_per_conn"] / 1024
              for (k = 2; ("rss_open" k) in v; k++)
                  printf "open/close cycle %d: %.1f MiB open, %.1f MiB closed; the peak grew by %d bytes/connection\n",
                         k, v["rss_open" k] / 1048576, v["rss_closed" k] / 1048576,
                         (v["rss_open" k] - v["rss_open" (k == 2 ? "" : k - 1)]) / v["conns"]
              print "(about 0: what stays after closing is reused; steady growth per cycle would be a leak;",
                    "IDLE_CYCLES=N runs more cycles)" }' <<<"$line"
}

part_load() {
    local rows=1000 out="$WORK/load.log" line port=$((BASE + 13)) pid ticks
    sql_root "$MASTER_PORT" app -e "CREATE TABLE IF NOT EXISTS load_rows (id INT PRIMARY KEY, v VARCHAR(32));
        INSERT IGNORE INTO load_rows SELECT seq, CONCAT('row ', seq) FROM seq_1_to_$rows;"
    # Until both replicas have the rows (reads go there).
    local deadline=$((SECONDS + 30)) r
    for r in "$R1_PORT" "$R2_PORT"; do
        until [[ "$(sql_root "$r" -e "SELECT COUNT(*) FROM app.load_rows")" == "$rows" ]]; do
            ((SECONDS < deadline)) || die "the load table did not reach replica $r"
            sleep 0.1
        done
    done
    write_rwsplit_config "$WORK/rwsplit-load.yaml" "$port" "max_client_connections: $((LOAD_CONNS + 100))
connect_timeout: 5s
pool:
  max_backend_connections: $LOAD_CAP"
    RUST_LOG="${BENCH_RWSPLIT_LOG:-warn}" "$RWSPLIT_BIN" --config "$WORK/rwsplit-load.yaml" \
        >>"$WORK/rwsplit-load.log" 2>&1 &
    pid=$!
    LOAD_RWSPLIT_PID=$pid
    wait_port "$port" "$pid" rwsplit-load
    ticks=$(cpu_ticks "$pid")
    if ! LOAD_ADDR="127.0.0.1:$port" LOAD_PID="$pid" LOAD_CONNS="$LOAD_CONNS" LOAD_SECS="$LOAD_TIME" \
        LOAD_THINK_MS="$LOAD_THINK_MS" LOAD_ROWS="$rows" run_child "$out" "$LOAD_BIN"; then
        log "FAILED: load"
        tail -n 15 "$out" >&2
        FAILED=1
    fi
    ticks=$(($(cpu_ticks "$pid") - ticks))
    local backends
    backends="$(for p in "$MASTER_PORT" "$R1_PORT" "$R2_PORT"; do
        sql_root "$p" -e "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'"
    done | paste -sd/)"
    stop_pid "$pid" rwsplit-load
    LOAD_RWSPLIT_PID=""
    line="$(grep '^load ' "$out" || true)"
    [[ -n "$line" ]] || return 0
    log "$line"
    echo
    echo "== load: $LOAD_CONNS client connections open at once, each querying for ${LOAD_TIME}s =="
    awk -v cap="$LOAD_CAP" -v ticks="$ticks" -v tck="$CLK_TCK" -v backends="$backends" \
        '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { printf "%d connections opened in %.1f s; %d queries (%.0f/s), %d errors\n",
                     v["conns"], v["open_secs"], v["queries"], v["qps"], v["errors"]
              printf "latency p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n",
                     v["p50_ms"], v["p99_ms"], v["p999_ms"], v["max_ms"]
              printf "rwsplit VmRSS: %.1f MiB before, %.1f MiB with the connections open, %.1f MiB peak under load, %.1f MiB after\n",
                     v["rss_before"] / 1048576, v["rss_open"] / 1048576, v["rss_peak"] / 1048576, v["rss_after"] / 1048576
              if (v["queries"] > 0) printf "rwsplit CPU %.1f us per query (logins included)\n", ticks / tck * 1e6 / v["queries"]
              printf "backend connections: at most %d per server (pool.max_backend_connections); app sessions seen on master/replica1/replica2 at the end: %s\n", cap, backends }' <<<"$line"
    echo "(a direct connection per client would need $LOAD_CONNS server connections; the sandbox allows 1000)"
}

part_workers() {
    local runs="${BENCH_WORKERS_RUNS:-3}" round w name test opt target label
    BENCH_RWSPLIT_WORKERS=2 write_rwsplit_config "$WORK/rwsplit-workers2.yaml" "$((BASE + 14))"
    RUST_LOG="${BENCH_RWSPLIT_LOG:-warn}" "$RWSPLIT_BIN" --config "$WORK/rwsplit-workers2.yaml" \
        >>"$WORK/rwsplit-workers2.log" 2>&1 &
    WORKERS2_PID=$!
    wait_port "$((BASE + 14))" "$WORKERS2_PID" rwsplit-workers2
    local -a names=()
    for round in $(seq 1 "$runs"); do
        for w in "point_select|oltp_point_select" "read_only|oltp_read_only"; do
            IFS='|' read -r name test <<<"$w"
            names+=("$name")
            # Alternate which goes first per round, so drift does not favour one.
            local order=(rwsplit workers2)
            ((round % 2)) || order=(workers2 rwsplit)
            for target in "${order[@]}"; do
                sysbench_run "$target" "$name/r$round" "$test" --skip_trx=on --db-ps-mode=disable
            done
        done
    done
    stop_pid "$WORKERS2_PID" rwsplit-workers2
    WORKERS2_PID=""
    echo
    echo "== workers: 2 event loops vs 1, $THREADS threads, ${DURATION}s per run, $runs interleaved rounds (medians) =="
    printf '%-14s %12s %12s %12s %12s %12s %12s\n' workload "QPS w=1" "QPS w=2" "w2÷w1 QPS" "CPU/q w=1" \
        "CPU/q w=2" "w2÷w1 CPU/q"
    for name in point_select read_only; do
        local q1=() q2=() c1=() c2=() rq=() rc=()
        for round in $(seq 1 "$runs"); do
            label="$name/r$round"
            q1+=("${QPS[$label/rwsplit]:-}") q2+=("${QPS[$label/workers2]:-}")
            c1+=("${CPU[$label/rwsplit]:-}") c2+=("${CPU[$label/workers2]:-}")
            rq+=("$(ratio "${QPS[$label/workers2]:-}" "${QPS[$label/rwsplit]:-}")")
            rc+=("$(ratio "${CPU[$label/workers2]:-}" "${CPU[$label/rwsplit]:-}")")
        done
        printf '%-14s %12s %12s %12s %12s %12s %12s\n' "$name" "$(median "${q1[@]}")" "$(median "${q2[@]}")" \
            "$(spread "${rq[@]}")" \
            "$(median "${c1[@]}")" "$(median "${c2[@]}")" \
            "$(spread "${rc[@]}")"
    done
    echo "(ratios per round, then the median and [range]; sysbench, MariaDB and both proxies share $(nproc) cores)"
}

# "median [min-max]" of the numbers given, or "-".
spread() {
    local m lo hi
    m="$(median "$@")"
    if [[ "$m" == - ]]; then
        echo -
        return
    fi
    lo="$(printf '%s\n' "$@" | awk '/^[0-9.]+$/' | sort -g | head -1)"
    hi="$(printf '%s\n' "$@" | awk '/^[0-9.]+$/' | sort -g | tail -1)"
    echo "$m [$lo-$hi]"
}

part_fair() {
    local runs="${BENCH_FAIR_RUNS:-3}" round w name test opt targets mode label target i ref k
    write_rwsplit_config "$WORK/rwsplit-one.yaml" "$RWSPLIT1_PORT"
    # Keep the first replica only.
    sed -i "/^  - address: 127.0.0.1:$R2_PORT\$/d" "$WORK/rwsplit-one.yaml"
    RUST_LOG="${BENCH_RWSPLIT_LOG:-warn}" "$RWSPLIT_BIN" --config "$WORK/rwsplit-one.yaml" \
        >>"$WORK/rwsplit-one.log" 2>&1 &
    RWSPLIT1_PID=$!
    wait_port "$RWSPLIT1_PORT" "$RWSPLIT1_PID" rwsplit-one-replica
    [[ -n "$EVENTUAL_PID" ]] || start_rwsplit_eventual
    # workload | sysbench test | options | targets (the first is the reference of the ratios)
    local -a rows=(
        "point_select|oltp_point_select|--skip_trx=on|haproxy1 rwsplit1 haproxy rwsplit direct"
        "read_only|oltp_read_only|--skip_trx=on|haproxy1 rwsplit1 haproxy rwsplit direct"
        "read_write_trx|oltp_read_write|--skip_trx=off|haproxym rwsplit eventual master"
        "read_write_autocommit|oltp_read_write|--skip_trx=on --mysql-ignore-errors=1062,1213|haproxym rwsplit eventual master"
        "write_only_trx|oltp_write_only|--skip_trx=off|haproxym rwsplit eventual master"
        "write_only_autocommit|oltp_write_only|--skip_trx=on --mysql-ignore-errors=1062,1213|haproxym rwsplit eventual master"
    )
    local -A targets_of=()
    local -a labels=() modes order ts q rq rc rp
    for round in $(seq 1 "$runs"); do
        for w in "${rows[@]}"; do
            IFS='|' read -r name test opt targets <<<"$w"
            if [[ -n "${BENCH_FAIR_ONLY:-}" && " $BENCH_FAIR_ONLY " != *" $name "* ]]; then continue; fi
            modes=(disable)
            if [[ "$name" == point_select || "$name" == read_only ]]; then modes=(disable auto); fi
            for mode in "${modes[@]}"; do
                label="$name/$([[ $mode == disable ]] && echo text || echo ps)"
                if ((round == 1)); then
                    labels+=("$label")
                    targets_of[$label]="$targets"
                fi
                # Rotate the order per round, so drift does not favour a target.
                read -r -a order <<<"$targets"
                for ((i = 0; i < round - 1; i++)); do order=("${order[@]:1}" "${order[0]}"); done
                for target in "${order[@]}"; do
                    # shellcheck disable=SC2086
                    sysbench_run "$target" "$label/r$round" "$test" $opt --db-ps-mode="$mode"
                done
            done
        done
    done
    stop_pid "$RWSPLIT1_PID" rwsplit-one-replica
    RWSPLIT1_PID=""
    health_flaps
    echo
    echo "== fair comparison: $THREADS threads, ${DURATION}s per run, $runs interleaved rounds: median [range] =="
    printf '%-24s %-9s %24s %18s %18s %18s %18s %8s\n' workload target QPS "QPS ÷ ref" "CPU µs/q ÷ ref" \
        "p95 ÷ ref" "server CPU/q ÷ ref" "stmts/q"
    for label in "${labels[@]}"; do
        read -r -a ts <<<"${targets_of[$label]}"
        ref="${ts[0]}"
        for target in "${ts[@]}"; do
            q=() rq=() rc=() rp=() rs=() sq=()
            for round in $(seq 1 "$runs"); do
                k="$label/r$round"
                q+=("${QPS[$k/$target]:-}")
                rq+=("$(ratio "${QPS[$k/$target]:-}" "${QPS[$k/$ref]:-}")")
                rc+=("$(ratio "${CPU[$k/$target]:-}" "${CPU[$k/$ref]:-}")")
                rp+=("$(ratio "${P95[$k/$target]:-}" "${P95[$k/$ref]:-}")")
                rs+=("$(ratio "${SCPU[$k/$target]:-}" "${SCPU[$k/$ref]:-}")")
                sq+=("${SQ[$k/$target]:-}")
            done
            printf '%-24s %-9s %24s %18s %18s %18s %18s %8s\n' "$label" "$target" "$(spread "${q[@]}")" \
                "$(spread "${rq[@]}")" "$(spread "${rc[@]}")" "$(spread "${rp[@]}")" "$(spread "${rs[@]}")" \
                "$(median "${sq[@]}")"
        done
    done
    cat <<EOF
Reference (first row of each workload): haproxy1 = HAProxy to replica1 alone, to compare with rwsplit1 =
rwsplit over replica1 alone (the same work); haproxy and rwsplit spread reads over both replicas; haproxym =
HAProxy in front of the master alone (a proxy that does not split), to compare with rwsplit (consistency:
session, the default) and eventual (consistency: eventual), which split reads over both replicas;
direct/master = no proxy (no CPU figure). "server CPU/q" is the three mariadbd processes' CPU per client
query (what the proxy makes the servers do), "stmts/q" the statements the servers executed per client query
(1.0 = nothing added; health probes of the running proxies add a little to every row). Autocommit runs ignore sysbench's duplicate-key and deadlock
errors (1062, 1213), which its threads cause by colliding on inserted keys. Everything shares $(nproc) cores.
EOF
}

# Whether the proxies' health checkers took a loaded server for a dead one during the run (every such event
# is logged at warn level): reads abandoned, writes refused with 1053.
health_flaps() {
    local f n_down n_abandoned
    for f in "$WORK"/rwsplit*.log; do
        [[ -f "$f" ]] || continue
        n_down="$(unreachable_lines "$f" | grep -c . || true)"
        n_abandoned="$(grep -c 'reports it unreachable' "$f" || true)"
        log "health under load, $(basename "$f" .log): $n_down servers declared unreachable," \
            "$n_abandoned commands abandoned for it"
        unreachable_lines "$f" | head -n 3 | cut -c1-300 >&2 || true
    done
}

# Median of the numbers given (missing or failed values are left out), or "-".
median() {
    printf '%s\n' "$@" | awk '/^[0-9.]+$/' | sort -g |
        awk '{ v[n++] = $1 } END { if (n == 0) print "-"; else if (n % 2) print v[(n - 1) / 2];
                                   else printf "%.2f", (v[n / 2 - 1] + v[n / 2]) / 2 }'
}

# The replicas' share (percent) of an "m/r1/r2" SELECT split.
replica_share() { awk -F/ '/^[0-9]+\/[0-9]+\/[0-9]+$/ { print $2 + $3; next } { print "-" }' <<<"$1"; }

# Without transactions sysbench's DELETE + INSERT pairs of different threads collide on keys (1062) and, at the
# master's full speed, deadlock on them (1213): both are the workload's own errors, ignored on every target.
readonly RW_WORKLOADS=(
    "read_write_trx|oltp_read_write|--skip_trx=off"
    "read_write_autocommit|oltp_read_write|--skip_trx=on --mysql-ignore-errors=1062,1213"
)
readonly RW_TARGETS=(master eventual session)

part_consistency() {
    start_rwsplit_eventual
    local runs="${BENCH_CONSISTENCY_RUNS:-3}" run w name test opt target out line
    local -A PAIRS PP95 STALE RREADS MQ
    for ((run = 1; run <= runs; run++)); do
        for w in "${RW_WORKLOADS[@]}"; do
            IFS='|' read -r name test opt <<<"$w"
            for target in "${RW_TARGETS[@]}"; do
                # shellcheck disable=SC2086 # $opt holds several options
                sysbench_run "$target" "$name/$run" "$test" $opt --db-ps-mode=disable
            done
        done
        for target in "${RW_TARGETS[@]}"; do
            out="$WORK/ryw-$target-$run.log"
            if ! RYW_ADDR="127.0.0.1:$(port_of_target "$target")" RYW_SECS="$DURATION" run_child "$out" "$RYW_BIN"; then
                log "FAILED: write-then-read via $target"
                tail -n 15 "$out" >&2
                FAILED=1
                continue
            fi
            line="$(grep '^ryw ' "$out")"
            log "write-then-read via $target: $line"
            PAIRS[$target/$run]="$(sed -n 's/.* pairs_per_s=\([0-9.]*\).*/\1/p' <<<"$line")"
            PP95[$target/$run]="$(sed -n 's/.* p95_ms=\([0-9.]*\).*/\1/p' <<<"$line")"
            STALE[$target/$run]="$(sed -n 's/.* stale=\([0-9]*\).*/\1/p' <<<"$line")"
            RREADS[$target/$run]="$(awk -v l="$line" 'BEGIN { n = split(l, f, " "); for (i = 1; i <= n; i++) {
                split(f[i], kv, "="); v[kv[1]] = kv[2] }
                printf "%d", 100 * v["replica_reads"] / (v["pairs"] > 0 ? v["pairs"] : 1) + 0.5 }')"
        done
    done
    local -a q p s
    local stale r
    echo
    echo "== consistency: medians of $runs rounds, $THREADS sysbench threads / 8 write-then-read workers," \
        "${DURATION}s per run =="
    printf '%-24s %-9s %10s %8s %10s %8s\n' workload target QPS "p95 ms" "replica %" stale
    for w in "${RW_WORKLOADS[@]}" "write_then_read||"; do
        IFS='|' read -r name test opt <<<"$w"
        for target in "${RW_TARGETS[@]}"; do
            q=() p=() s=()
            stale="-"
            [[ $name == write_then_read ]] && stale=0
            for ((run = 1; run <= runs; run++)); do
                if [[ $name == write_then_read ]]; then
                    q+=("${PAIRS[$target/$run]:-}") p+=("${PP95[$target/$run]:-}") s+=("${RREADS[$target/$run]:-}")
                    stale=$((stale + ${STALE[$target/$run]:-0}))
                else
                    q+=("${QPS[$name/$run/$target]:-}") p+=("${P95[$name/$run/$target]:-}")
                    s+=("$(replica_share "${WHERE[$name/$run/$target]:-}")")
                fi
            done
            MQ[$name/$target]="$(median "${q[@]}")"
            printf '%-24s %-9s %10s %8s %10s %8s\n' "$name" "$target" "${MQ[$name/$target]}" "$(median "${p[@]}")" \
                "$(median "${s[@]}")" "$stale"
        done
    done
    echo
    echo "(ratios: the median over rounds of each round's ratio; the rounds ran the targets back to back)"
    printf '%-24s %17s %16s %18s\n' workload "session÷eventual" "session÷master" "cost of session"
    local -a re rm
    for name in read_write_trx read_write_autocommit write_then_read; do
        re=() rm=()
        for ((run = 1; run <= runs; run++)); do
            if [[ $name == write_then_read ]]; then
                re+=("$(ratio "${PAIRS[session/$run]:-}" "${PAIRS[eventual/$run]:-}")")
                rm+=("$(ratio "${PAIRS[session/$run]:-}" "${PAIRS[master/$run]:-}")")
            else
                re+=("$(ratio "${QPS[$name/$run/session]:-}" "${QPS[$name/$run/eventual]:-}")")
                rm+=("$(ratio "${QPS[$name/$run/session]:-}" "${QPS[$name/$run/master]:-}")")
            fi
        done
        r="$(median "${re[@]}")"
        printf '%-24s %17s %16s %18s\n' "$name" "$r" "$(median "${rm[@]}")" \
            "$(awk -v r="$r" 'BEGIN { if (r ~ /^[0-9.]+$/) printf "%+.1f %% QPS", (1 - r) * 100; else print "-" }')"
    done
    cat <<EOF

Notes: 'master' is the master alone (every read sees every write). 'eventual' is rwsplit with consistency:
eventual (reads right after writes may be stale: see write_then_read's stale column, all rounds); 'session' is
the default, read-your-writes. write_then_read's QPS is write+read pairs per second (benches/ryw.rs, 8
workers), its replica % the share of its reads a replica answered; the sysbench rows' replica % is the
replicas' share of all SELECTs the servers executed. In read_write_trx every event is a transaction, which
rwsplit runs on the master in every mode. Replication shares the machine's $(nproc) cores with the load.
EOF
}

# --- main --------------------------------------------------------------------------------------------------

main() {
    ensure_tools
    raise_nofile
    build
    start_sandbox
    if has_part sysbench || has_part latency || has_part workers || has_part fair; then
        prepare_data
    fi
    start_haproxy
    start_rwsplit
    local t
    local commit
    commit="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
    echo "rwsplit e2e benchmark: $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit"
    if has_part sysbench; then
        t=$SECONDS
        part_sysbench
        log "sysbench part took $((SECONDS - t))s"
    fi
    if has_part latency; then
        t=$SECONDS
        part_latency
        log "latency part took $((SECONDS - t))s"
    fi
    if has_part churn; then
        t=$SECONDS
        part_churn
        log "churn part took $((SECONDS - t))s"
    fi
    if has_part consistency; then
        t=$SECONDS
        has_part sysbench || has_part latency || prepare_data
        part_consistency
        log "consistency part took $((SECONDS - t))s"
    fi
    if has_part idle; then
        t=$SECONDS
        part_idle
        log "idle part took $((SECONDS - t))s"
    fi
    if has_part fair; then
        t=$SECONDS
        part_fair
        log "fair part took $((SECONDS - t))s"
    fi
    if has_part workers; then
        t=$SECONDS
        part_workers
        log "workers part took $((SECONDS - t))s"
    fi
    if has_part load; then
        t=$SECONDS
        part_load
        log "load part took $((SECONDS - t))s"
    fi
    log "done in $((SECONDS - STARTED_AT))s"
    ((FAILED == 0)) || die "some runs failed (marked FAIL or '-' above)"
}

main "$@"
