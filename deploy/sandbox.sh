#!/usr/bin/env bash
# A replicated MariaDB topology on loopback for tests and development: one master, two read-only replicas,
# GTID replication. The Rust test harness (tests/common/mod.rs) drives this script; it is the only
# implementation of the topology.
#
#   deploy/sandbox.sh up     [--dir DIR] [--port BASE] [--replication gtid|pos|semisync]
#                                                       start master on BASE, replicas on BASE+1, BASE+2
#                                                       (idempotent: a healthy topology in DIR is left running)
#   deploy/sandbox.sh down   [--dir DIR] [--wipe]       stop every instance; --wipe also deletes DIR
#   deploy/sandbox.sh status [--dir DIR]                one line per instance; exit 1 unless all are healthy
#   deploy/sandbox.sh start  NAME [--dir DIR]           start one stopped instance, wait until it answers
#   deploy/sandbox.sh kill   NAME [--dir DIR]           SIGKILL one instance and wait until it is gone
#   deploy/sandbox.sh pause  NAME [--dir DIR]           SIGSTOP one instance (a hung server)
#   deploy/sandbox.sh resume NAME [--dir DIR]           SIGCONT one instance
#
# NAME is master, replica1 or replica2. Defaults: DIR=<repo>/.sandbox, BASE=13306, --replication gtid.
# Replication modes: gtid (MASTER_USE_GTID=slave_pos); pos, as the classic guides teach: the replicas are
# seeded from a `mariadb-dump --master-data` of the master (accounts included) and pointed at its binary log
# by file and position (MASTER_USE_GTID=no; their gtid_slave_pos is set to the dump's point too, so GTID
# waits still work); semisync: gtid plus MariaDB's built-in semi-synchronous replication (the master waits
# up to 1 s for a replica's acknowledgement per commit, then falls back to asynchronous).
# Exit codes: 0 ok, 1 failure, 2 usage error, 3 a port is already taken (a caller may retry elsewhere).
#
# Accounts (created on the master, replicated): root@127.0.0.1/rootpw (all privileges), app/apppw (ordinary,
# so read_only stops it), monitor/monitorpw (replication monitoring, rwsplit.*), repl/replpw (replication),
# x509/x509pw (app's privileges, but only over TLS with a client certificate: REQUIRE X509).
#
# TLS: every instance serves TLS (clients may use it, none must) with DIR/tls/server.pem, for 127.0.0.1 and
# localhost, signed by DIR/tls/ca.pem; DIR/tls/client.pem and client.key are a client certificate from the
# same CA (for rwsplit's backend tls: and the x509 account). Made with openssl at every fresh `up`.
set -euo pipefail

# mariadbd and mariadb-install-db live in /usr/sbin, which a non-root PATH often lacks.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

readonly INSTANCES=(master replica1 replica2)
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly START_TIMEOUT="${SANDBOX_START_TIMEOUT:-60}"
readonly STOP_TIMEOUT="${SANDBOX_STOP_TIMEOUT:-30}"
readonly SYNC_TIMEOUT="${SANDBOX_SYNC_TIMEOUT:-60}"
readonly MARKER=sandbox.env
readonly LOCK=.lock
readonly EXIT_PORT_TAKEN=3
OS_USER="$(id -un)"
readonly OS_USER

DIR="$REPO_ROOT/.sandbox"
BASE_PORT=13306
PORT_GIVEN=0
WIPE=0
REPLICATION=gtid

log() { echo "sandbox: $*" >&2; }
die() {
    echo "sandbox: error: $*" >&2
    exit 1
}
usage() {
    sed -n '6,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# --- instance facts ----------------------------------------------------------------------------------------

index_of() {
    case "$1" in
        master) echo 0 ;;
        replica1) echo 1 ;;
        replica2) echo 2 ;;
        *) die "unknown instance '$1' (expected master, replica1 or replica2)" ;;
    esac
}
port_of() { echo $((BASE_PORT + $(index_of "$1"))); }
server_id_of() { echo $(($(index_of "$1") + 1)); }
idir() { echo "$DIR/$1"; }
cnf_of() { echo "$DIR/$1/my.cnf"; }
sock_of() { echo "$DIR/$1/mariadbd.sock"; }
errlog_of() { echo "$DIR/$1/error.log"; }

# Prints the last lines of an instance's error log (and of its captured stdout/stderr) to stderr.
log_tail() {
    local name=$1 f
    for f in "$(errlog_of "$name")" "$DIR/$name/console.log"; do
        if [[ -s "$f" ]]; then
            echo "---- last lines of $f ----" >&2
            tail -n 25 "$f" >&2
        fi
    done
}

# Reads the base port recorded by `up`.
load_env() {
    [[ -f "$DIR/$MARKER" ]] || die "no sandbox in $DIR (missing $MARKER); run: $0 up --dir $DIR"
    local recorded
    recorded="$(sed -n 's/^BASE_PORT=\([0-9][0-9]*\)$/\1/p' "$DIR/$MARKER")"
    [[ -n "$recorded" ]] || die "$DIR/$MARKER has no BASE_PORT"
    BASE_PORT=$recorded
}

# --- processes ---------------------------------------------------------------------------------------------

# State letter of a process (R, S, T, Z, ...), empty if it does not exist.
proc_state() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    stat="${stat##*) }"
    echo "${stat%% *}"
}

# True if PID is a live (not zombie) mariadbd started with this instance's option file.
is_our_mariadbd() {
    local pid=$1 name=$2 state cmdline
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    state="$(proc_state "$pid")"
    [[ -n "$state" && "$state" != Z && "$state" != X ]] || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"--defaults-file=$(cnf_of "$name") "* ]]
}

# Prints the pid of the instance's running mariadbd, or fails. Checks the server's pid file, then the pid
# recorded at launch (the server writes its pid file only once it is initialised).
instance_pid() {
    local name=$1 f pid
    for f in "$DIR/$name/mariadbd.pid" "$DIR/$name/launch.pid"; do
        [[ -f "$f" ]] || continue
        pid="$(tr -d '[:space:]' <"$f")"
        if is_our_mariadbd "$pid" "$name"; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

# Polls until PID is gone (or a zombie), for at most $2 seconds.
wait_gone() {
    local pid=$1 name=$2 deadline=$((SECONDS + $3))
    while is_our_mariadbd "$pid" "$name"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- SQL ---------------------------------------------------------------------------------------------------

# As the OS user over the unix socket (unix_socket auth; works before any TCP account exists).
sql_sock() {
    local name=$1
    shift
    mariadb --no-defaults -S "$(sock_of "$name")" -u"$OS_USER" --batch --skip-column-names "$@"
}

# As root over TCP (root@127.0.0.1 exists once the master's accounts have replicated).
sql_tcp() {
    local name=$1
    shift
    mariadb --no-defaults -h127.0.0.1 -P "$(port_of "$name")" -uroot -prootpw --protocol=TCP \
        --connect-timeout=3 --batch --skip-column-names "$@"
}

ping_sock() {
    mariadb-admin --no-defaults -S "$(sock_of "$1")" -u"$OS_USER" --connect-timeout=2 ping >/dev/null 2>&1
}

# Prints "IO SQL" running flags and errors of a replica from SHOW SLAVE STATUS (via $1 = sql_sock|sql_tcp).
slave_status() {
    local via=$1 name=$2
    "$via" "$name" --column-names --vertical -e 'SHOW SLAVE STATUS' 2>/dev/null | awk -F': ' '
        /^ *Slave_IO_Running:/ { io = $2 }
        /^ *Slave_SQL_Running:/ { sqlr = $2 }
        /^ *Seconds_Behind_Master:/ { behind = $2 }
        /^ *Last_IO_Error:/ { ioerr = $2 }
        /^ *Last_SQL_Error:/ { sqlerr = $2 }
        END { printf "io=%s sql=%s behind=%s", (io != "" ? io : "-"), (sqlr != "" ? sqlr : "-"),
                     (behind != "" ? behind : "-");
              if (ioerr != "") printf " io_error=\"%s\"", ioerr;
              if (sqlerr != "") printf " sql_error=\"%s\"", sqlerr;
              printf "\n" }'
}

# --- one instance ------------------------------------------------------------------------------------------

write_cnf() {
    local name=$1 d
    d="$(idir "$name")"
    {
        echo "# Generated by deploy/sandbox.sh for instance $name."
        echo "[mariadbd]"
        echo "user=$OS_USER"
        echo "port=$(port_of "$name")"
        echo "bind-address=127.0.0.1"
        echo "socket=$d/mariadbd.sock"
        echo "pid-file=$d/mariadbd.pid"
        echo "datadir=$d/data"
        echo "log-error=$d/error.log"
        echo "tmpdir=$d/tmp"
        echo "skip-name-resolve"
        echo "server_id=$(server_id_of "$name")"
        echo "log_bin=mariadb-bin"
        echo "log_bin_index=mariadb-bin.index"
        echo "relay_log=relay-bin"
        echo "relay_log_index=relay-bin.index"
        echo "binlog_format=ROW"
        echo "log_slave_updates=1"
        echo "gtid_strict_mode=1"
        [[ "$name" == master ]] || echo "read_only=1"
        echo "slave_net_timeout=10"
        echo "max_allowed_packet=256M"
        echo "slave_max_allowed_packet=1G"
        echo "max_connections=1000"
        echo "innodb_buffer_pool_size=64M"
        echo "innodb_log_file_size=32M"
        echo "innodb_flush_log_at_trx_commit=2"
        echo "performance_schema=OFF"
        echo "event_scheduler=ON"
        echo "character-set-server=utf8mb4"
        echo "ssl_ca=$DIR/tls/ca.pem"
        echo "ssl_cert=$DIR/tls/server.pem"
        echo "ssl_key=$DIR/tls/server.key"
        if [[ "$REPLICATION" == semisync ]]; then
            if [[ "$name" == master ]]; then
                echo "rpl_semi_sync_master_enabled=ON"
                echo "rpl_semi_sync_master_timeout=1000"
            else
                echo "rpl_semi_sync_slave_enabled=ON"
            fi
        fi
        echo "collation-server=utf8mb4_general_ci"
        echo
        echo "[client]"
        echo "socket=$d/mariadbd.sock"
        echo "port=$(port_of "$name")"
        echo "max_allowed_packet=256M"
    } >"$d/my.cnf"
}

# Launches an instance detached from this shell (its own session, stdio to files) and returns at once.
launch() {
    local name=$1 d pid
    d="$(idir "$name")"
    if pid="$(instance_pid "$name")"; then
        log "$name already running (pid $pid)"
        return 0
    fi
    if port_taken "$(port_of "$name")"; then
        log "port $(port_of "$name") (for $name) is already in use"
        exit "$EXIT_PORT_TAKEN"
    fi
    rm -f "$d/mariadbd.pid" "$d/launch.pid" "$d/mariadbd.sock"
    mkdir -p "$d/tmp"
    setsid nohup mariadbd --defaults-file="$(cnf_of "$name")" </dev/null >>"$d/console.log" 2>&1 9>&- &
    echo $! >"$d/launch.pid"
}

# Polls until a launched instance answers a ping on its socket; fails early if the process dies.
wait_up() {
    local name=$1 deadline=$((SECONDS + START_TIMEOUT)) pid
    until ping_sock "$name"; do
        if ! pid="$(instance_pid "$name")"; then
            log_tail "$name"
            if grep -qs 'Address already in use' "$(errlog_of "$name")"; then
                log "$name could not bind port $(port_of "$name")"
                exit "$EXIT_PORT_TAKEN"
            fi
            die "$name (port $(port_of "$name")) exited during startup; see $(errlog_of "$name")"
        fi
        if ((SECONDS >= deadline)); then
            log_tail "$name"
            die "$name (port $(port_of "$name"), pid $pid) did not answer within ${START_TIMEOUT}s"
        fi
        sleep 0.1
    done
}

# SIGTERM (after SIGCONT, in case it is paused), then SIGKILL after STOP_TIMEOUT. Waits until it is gone.
signal_stop() {
    local name=$1 pid
    pid="$(instance_pid "$name")" || return 0
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
}
wait_stopped() {
    local name=$1 pid
    pid="$(instance_pid "$name")" || return 0
    wait_gone "$pid" "$name" "$STOP_TIMEOUT" && return 0
    log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" "$name" 10 || die "$name (pid $pid) survived SIGKILL"
}

# --- the topology ------------------------------------------------------------------------------------------

# True if all three instances run, answer root over TCP with the right server_id, and replicas replicate.
healthy() {
    local name id st
    for name in "${INSTANCES[@]}"; do
        instance_pid "$name" >/dev/null || return 1
        id="$(sql_tcp "$name" -e 'SELECT @@server_id' 2>/dev/null)" || return 1
        [[ "$id" == "$(server_id_of "$name")" ]] || return 1
        if [[ "$name" != master ]]; then
            st="$(slave_status sql_tcp "$name")"
            [[ "$st" == "io=Yes sql=Yes"* ]] || return 1
        fi
    done
}

# Refuses to delete a directory this script did not create.
check_ours() {
    [[ -d "$DIR" ]] || return 0
    [[ -f "$DIR/$MARKER" ]] && return 0
    local other
    other="$(find "$DIR" -mindepth 1 -maxdepth 1 ! -name "$LOCK" -print -quit)"
    [[ -z "$other" ]] && return 0
    die "$DIR exists, is not empty and was not created by this script (no $MARKER); refusing to touch it"
}

# Serialises the commands that change a sandbox, so that e.g. a test watchdog's `down` waits for an `up`
# still in progress instead of racing it. The lock file survives the wipe `up` does; `down --wipe` deletes
# it last. Every server is launched with fd 9 closed, or it would hold the lock for its whole life.
lock_dir() {
    exec 9>>"$DIR/$LOCK"
    flock -w 300 9 || die "another deploy/sandbox.sh kept $DIR/$LOCK locked for 300s"
}

# Deletes everything in DIR but the lock file.
wipe_contents() {
    find "$DIR" -mindepth 1 -maxdepth 1 ! -name "$LOCK" -exec rm -rf {} +
}

stop_all() {
    local name
    for name in "${INSTANCES[@]}"; do signal_stop "$name"; done
    for name in "${INSTANCES[@]}"; do wait_stopped "$name"; done
}

# A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, in DIR/tls.
make_certs() {
    local t="$DIR/tls" name ext
    mkdir -p "$t"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$t/server.ext"
    printf 'extendedKeyUsage=clientAuth\n' >"$t/client.ext"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$t/ca.key" -out "$t/ca.pem" -days 3650 \
        -subj "/CN=rwsplit sandbox CA" >"$t/openssl.log" 2>&1 || die "openssl failed; see $t/openssl.log"
    for name in server client; do
        ext="$t/$name.ext"
        openssl req -newkey rsa:2048 -nodes -keyout "$t/$name.key" -out "$t/$name.csr" \
            -subj "/CN=rwsplit sandbox $name" >>"$t/openssl.log" 2>&1 &&
            openssl x509 -req -in "$t/$name.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
                -out "$t/$name.pem" -days 3650 -extfile "$ext" >>"$t/openssl.log" 2>&1 ||
            die "openssl failed; see $t/openssl.log"
    done
}

install_datadirs() {
    local d name
    d="$(idir master)"
    mkdir -p "$d"
    log "initialising datadir"
    # One retry: a CI run once saw the bootstrap fail while other sandboxes were starting beside it, and the
    # log's generic advice hid the cause. The server's own [ERROR] lines and the disk and memory state are
    # printed first so that the next failure says why.
    local attempt
    for attempt in 1 2; do
        if mariadb-install-db --no-defaults --user="$OS_USER" --datadir="$d/data" \
            --auth-root-authentication-method=socket --skip-test-db --skip-name-resolve \
            --innodb-buffer-pool-size=64M --innodb-log-file-size=32M >"$d/install.log" 2>&1; then
            break
        fi
        {
            echo "sandbox: mariadb-install-db failed (attempt $attempt); its errors:"
            grep -E '\[ERROR\]|ERROR|rror:|Errcode|errno' "$d/install.log" | head -n 20
            df -h "$d" | tail -n 1
            grep -E '^(MemAvailable|Committed_AS):' /proc/meminfo
        } >&2
        if [[ "$attempt" == 2 ]]; then
            tail -n 25 "$d/install.log" >&2
            die "mariadb-install-db failed; see $d/install.log"
        fi
        mv "$d/install.log" "$d/install.1.log"
        rm -rf "$d/data"
    done
    # Replicas start from an identical copy, so replication has no system-table differences to trip on.
    for name in replica1 replica2; do
        mkdir -p "$(idir "$name")"
        cp -a "$d/data" "$(idir "$name")/data"
    done
}

create_accounts() {
    sql_sock master <<'SQL' || die "creating accounts on the master failed"
CREATE DATABASE rwsplit;
CREATE DATABASE app;
CREATE USER 'root'@'127.0.0.1' IDENTIFIED BY 'rootpw';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE USER 'app'@'%' IDENTIFIED BY 'apppw';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, CREATE TEMPORARY TABLES, LOCK TABLES,
      EXECUTE, CREATE ROUTINE, ALTER ROUTINE, CREATE VIEW, SHOW VIEW, TRIGGER, EVENT, REFERENCES, PROCESS,
      RELOAD ON *.* TO 'app'@'%';
CREATE USER 'monitor'@'%' IDENTIFIED BY 'monitorpw';
GRANT SLAVE MONITOR, REPLICATION CLIENT, PROCESS ON *.* TO 'monitor'@'%';
GRANT SELECT, INSERT, UPDATE, CREATE ON rwsplit.* TO 'monitor'@'%';
CREATE USER 'repl'@'%' IDENTIFIED BY 'replpw';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
CREATE USER 'x509'@'%' IDENTIFIED BY 'x509pw' REQUIRE X509;
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP ON *.* TO 'x509'@'%';
SQL
}

start_replication() {
    local name
    if [[ "$REPLICATION" == pos ]]; then
        seed_by_position
        return
    fi
    for name in replica1 replica2; do
        sql_sock "$name" -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$(port_of master),
            MASTER_USER='repl', MASTER_PASSWORD='replpw', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
            START SLAVE;" || die "CHANGE MASTER / START SLAVE failed on $name"
    done
}

# The classic setup: a consistent dump of the master with its binary log coordinates (--master-data), loaded
# into each replica without binary logging, then replication from those coordinates.
seed_by_position() {
    local name dump="$DIR/seed.sql" gtid
    gtid="$(sql_sock master -e 'SELECT @@gtid_binlog_pos')" || die "reading the master's GTID position failed"
    mariadb-dump --no-defaults -S "$(sock_of master)" -u"$OS_USER" --single-transaction --master-data=1 \
        --system=users --insert-ignore --databases app rwsplit >"$dump" 2>"$DIR/seed.log" ||
        die "mariadb-dump --master-data failed; see $DIR/seed.log"
    grep -q "^CHANGE MASTER TO MASTER_LOG_FILE=" "$dump" || die "the dump has no CHANGE MASTER coordinates"
    for name in replica1 replica2; do
        sql_sock "$name" -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$(port_of master),
            MASTER_USER='repl', MASTER_PASSWORD='replpw', MASTER_USE_GTID=no, MASTER_CONNECT_RETRY=1;" ||
            die "CHANGE MASTER failed on $name"
        { echo "SET SESSION sql_log_bin=0;"; cat "$dump"; } | sql_sock "$name" ||
            die "loading the dump into $name failed"
        sql_sock "$name" -e "SET GLOBAL gtid_slave_pos='$gtid'; START SLAVE;" || die "START SLAVE failed on $name"
    done
}

# Polls until both replicas run both threads and have applied everything in the master's binlog.
wait_in_sync() {
    local deadline=$((SECONDS + SYNC_TIMEOUT)) target name st pos pending
    while :; do
        target="$(sql_sock master -e 'SELECT @@gtid_binlog_pos')" || die "master stopped answering"
        pending=""
        for name in replica1 replica2; do
            st="$(slave_status sql_sock "$name")"
            pos="$(sql_sock "$name" -e 'SELECT @@gtid_slave_pos')" || pos="?"
            if [[ "$st" != "io=Yes sql=Yes"* || "$pos" != "$target" ]]; then
                pending+="$name: $st gtid_slave_pos=$pos; "
            fi
        done
        [[ -z "$pending" ]] && return 0
        if ((SECONDS >= deadline)); then
            log "replicas not in sync with master gtid_binlog_pos=$target after ${SYNC_TIMEOUT}s: $pending"
            for name in replica1 replica2; do log_tail "$name"; done
            die "replication did not catch up"
        fi
        sleep 0.1
    done
}

print_summary() {
    local p0 p1 p2
    p0="$(port_of master)"
    p1="$(port_of replica1)"
    p2="$(port_of replica2)"
    cat <<EOF
MariaDB sandbox in $DIR
  master    127.0.0.1:$p0  (server_id 1)
  replica1  127.0.0.1:$p1  (server_id 2, read_only)
  replica2  127.0.0.1:$p2  (server_id 3, read_only)
  replication $REPLICATION
  accounts  root/rootpw (all privileges)  app/apppw (ordinary)  monitor/monitorpw  repl/replpw  x509/x509pw
  tls       CA $DIR/tls/ca.pem, client certificate $DIR/tls/client.pem + client.key
  connect   mariadb --no-defaults -h127.0.0.1 -P$p0 -uapp -papppw app
  stop      $0 down --dir $DIR [--wipe]
SANDBOX master=127.0.0.1:$p0 replicas=127.0.0.1:$p1,127.0.0.1:$p2 dir=$DIR replication=$REPLICATION
EOF
}

ensure_installed() {
    command -v mariadbd >/dev/null && command -v mariadb >/dev/null && command -v openssl >/dev/null && return 0
    local sudo=()
    [[ "$(id -u)" == 0 ]] || sudo=(sudo)
    log "mariadbd or openssl not found; installing mariadb-server mariadb-client openssl with apt-get"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server mariadb-client openssl >&2
    command -v mariadbd >/dev/null || die "mariadbd still missing after apt-get install"
}

cmd_up() {
    local started=$SECONDS recorded name
    check_ours
    mkdir -p "$DIR"
    DIR="$(cd "$DIR" && pwd)"
    lock_dir
    # An interrupted `up` leaves nothing running (the mariadb client survives a Ctrl-C, so the script would
    # otherwise carry on launching servers).
    trap 'log "interrupted; stopping what was started"; stop_all; exit 130' INT TERM
    ensure_installed
    if [[ -f "$DIR/$MARKER" ]]; then
        recorded="$(sed -n 's/^BASE_PORT=\([0-9][0-9]*\)$/\1/p' "$DIR/$MARKER")"
        if [[ -n "$recorded" ]]; then
            local wanted=$BASE_PORT
            BASE_PORT=$recorded
            # A sandbox from before TLS was added has no certificates, one in another mode the wrong setup:
            # either is recreated.
            local mode
            mode="$(sed -n 's/^REPLICATION=//p' "$DIR/$MARKER")"
            if healthy && [[ -f "$DIR/tls/client.pem" && "${mode:-gtid}" == "$REPLICATION" ]]; then
                if ((PORT_GIVEN && wanted != recorded)); then
                    die "a healthy sandbox already runs in $DIR on base port $recorded (not $wanted); run down first"
                fi
                log "sandbox in $DIR is already running and healthy"
                print_summary
                return 0
            fi
            log "sandbox in $DIR is not healthy (stale data or a dead run); recreating it"
            stop_all
            ((PORT_GIVEN)) && BASE_PORT=$wanted
        fi
    fi
    wipe_contents
    local sock_len=${#DIR}
    ((sock_len + 25 <= 107)) || die "$DIR is too long for a unix socket path; use a shorter --dir"
    printf 'BASE_PORT=%s\nREPLICATION=%s\n' "$BASE_PORT" "$REPLICATION" >"$DIR/$MARKER"

    for name in "${INSTANCES[@]}"; do
        if port_taken "$(port_of "$name")"; then
            log "port $(port_of "$name") (for $name) is already in use; choose another --port"
            exit "$EXIT_PORT_TAKEN"
        fi
    done
    make_certs
    install_datadirs
    for name in "${INSTANCES[@]}"; do write_cnf "$name"; done
    log "starting master, replica1, replica2 on ports $BASE_PORT-$((BASE_PORT + 2))"
    for name in "${INSTANCES[@]}"; do launch "$name"; done
    for name in "${INSTANCES[@]}"; do wait_up "$name"; done
    create_accounts
    start_replication
    wait_in_sync
    trap - INT TERM
    log "up in $((SECONDS - started))s"
    print_summary
}

cmd_down() {
    if [[ ! -d "$DIR" ]]; then
        log "nothing in $DIR"
        return 0
    fi
    check_ours
    lock_dir
    stop_all
    if ((WIPE)); then
        rm -rf "$DIR"
        log "stopped and wiped $DIR"
    else
        log "stopped; data left in $DIR"
    fi
}

cmd_status() {
    load_env
    local name pid state id st extra all_ok=0
    for name in "${INSTANCES[@]}"; do
        if ! pid="$(instance_pid "$name")"; then
            printf '%-8s 127.0.0.1:%s down\n' "$name" "$(port_of "$name")"
            all_ok=1
            continue
        fi
        state="$(proc_state "$pid")"
        if [[ "$state" == T ]]; then
            printf '%-8s 127.0.0.1:%s paused pid=%s\n' "$name" "$(port_of "$name")" "$pid"
            all_ok=1
            continue
        fi
        if ! id="$(sql_tcp "$name" -e 'SELECT @@server_id' 2>/dev/null)"; then
            printf '%-8s 127.0.0.1:%s up pid=%s not-answering\n' "$name" "$(port_of "$name")" "$pid"
            all_ok=1
            continue
        fi
        if [[ "$name" == master ]]; then
            extra="gtid_binlog_pos=$(sql_tcp master -e 'SELECT @@gtid_binlog_pos')"
        else
            st="$(slave_status sql_tcp "$name")"
            [[ "$st" == "io=Yes sql=Yes"* ]] || all_ok=1
            extra="read_only=$(sql_tcp "$name" -e 'SELECT @@read_only') $st"
            extra+=" gtid_slave_pos=$(sql_tcp "$name" -e 'SELECT @@gtid_slave_pos')"
        fi
        printf '%-8s 127.0.0.1:%s up pid=%s server_id=%s %s\n' "$name" "$(port_of "$name")" "$pid" "$id" "$extra"
    done
    return "$all_ok"
}

cmd_start() {
    local name=$1
    load_env
    lock_dir
    launch "$name"
    wait_up "$name"
    log "$name up on port $(port_of "$name")"
}

cmd_kill() {
    local name=$1 pid
    load_env
    lock_dir
    pid="$(instance_pid "$name")" || die "$name is not running"
    kill -KILL "$pid"
    wait_gone "$pid" "$name" 10 || die "$name (pid $pid) survived SIGKILL"
}

# Sends SIGSTOP/SIGCONT and polls until the process state shows it took effect.
cmd_pause_resume() {
    local name=$1 sig=$2 pid deadline=$((SECONDS + 10)) state
    load_env
    pid="$(instance_pid "$name")" || die "$name is not running"
    kill "-$sig" "$pid"
    while :; do
        state="$(proc_state "$pid")"
        [[ "$sig" == STOP && "$state" == T ]] && return 0
        [[ "$sig" == CONT && "$state" != T ]] && return 0
        ((SECONDS < deadline)) || die "$name (pid $pid) still in state $state after SIG$sig"
        sleep 0.02
    done
}

main() {
    local cmd=${1:-}
    [[ -n "$cmd" ]] || usage
    shift
    local name=""
    case "$cmd" in
        start | kill | pause | resume)
            [[ $# -ge 1 && "$1" != --* ]] || usage
            name=$1
            shift
            index_of "$name" >/dev/null
            ;;
        up | down | status) ;;
        -h | --help | help) usage ;;
        *)
            log "unknown command '$cmd'"
            usage
            ;;
    esac
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --dir)
                [[ $# -ge 2 ]] || usage
                DIR=$2
                shift 2
                ;;
            --port)
                [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage
                BASE_PORT=$2
                PORT_GIVEN=1
                shift 2
                ;;
            --wipe)
                WIPE=1
                shift
                ;;
            --replication)
                [[ $# -ge 2 && "$2" =~ ^(gtid|pos|semisync)$ ]] || usage
                REPLICATION=$2
                shift 2
                ;;
            *)
                log "unknown option '$1'"
                usage
                ;;
        esac
    done
    if [[ -d "$DIR" ]]; then DIR="$(cd "$DIR" && pwd)"; fi
    case "$cmd" in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        start) cmd_start "$name" ;;
        kill) cmd_kill "$name" ;;
        pause) cmd_pause_resume "$name" STOP ;;
        resume) cmd_pause_resume "$name" CONT ;;
    esac
}

main "$@"
