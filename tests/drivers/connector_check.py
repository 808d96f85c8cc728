#!/usr/bin/env python3
"""MySQL Connector/Python (pure-Python implementation) against rwsplit.

Run by tests/drivers.rs with target/drivers-venv/bin/python (install with tests/drivers/install.sh).

Environment: PROXY_HOST (default 127.0.0.1), PROXY_PORT (required), MASTER_PORT (the master directly, for
comparisons; optional), DB (required: a database writable by app), DIRECT=1 when PROXY_PORT is the master
itself (checks the script: replica assertions are skipped and nothing is compared). Accounts app/apppw and
root/rootpw (APP_USER, APP_PASSWORD, ROOT_USER, ROOT_PASSWORD override them).

Prints one line per check, `ok NAME` or `FAIL NAME: why`, and exits 1 if any check failed. Every check runs
through rwsplit and then, unless DIRECT=1, directly against the master: a failure direct against the master
means the check itself (or the sandbox) is wrong; where the observable result is comparable, the two must be
equal. Each run of a check has its own connections and a time limit: a hang is a failure.
"""

import hashlib
import os
import re
import secrets
import socket
import sys
import tempfile
import threading
import time

try:
    import mysql.connector
    from mysql.connector.constants import ClientFlag
except Exception as e:  # noqa: BLE001 - any import problem means "not installed"
    print(f"FAIL setup: cannot import mysql.connector (run tests/drivers/install.sh): {e}", flush=True)
    sys.exit(1)

ENV = os.environ
HOST = ENV.get("PROXY_HOST", "127.0.0.1")
DIRECT = ENV.get("DIRECT") == "1"
DB = ENV.get("DB")
APP = (ENV.get("APP_USER", "app"), ENV.get("APP_PASSWORD", "apppw"))
ROOT = (ENV.get("ROOT_USER", "root"), ENV.get("ROOT_PASSWORD", "rootpw"))
MIB = 1024 * 1024
BLOB_BYTES = 33 * MIB
READ_TIMEOUT = 20  # seconds, per packet read
WATCHDOG = 600  # seconds for the whole script

if not ENV.get("PROXY_PORT") or not DB:
    print("FAIL setup: PROXY_PORT and DB must be set", flush=True)
    sys.exit(1)


class Target:
    def __init__(self, key, label, host, port, direct):
        self.key, self.label, self.host, self.port, self.direct = key, label, host, int(port), direct


if DIRECT:
    TARGETS = [Target("direct", "direct against the master", HOST, ENV["PROXY_PORT"], True)]
else:
    TARGETS = [Target("proxy", "through rwsplit", HOST, ENV["PROXY_PORT"], False)]
    if ENV.get("MASTER_PORT"):
        TARGETS.append(
            Target("master", "direct against the master", ENV.get("MASTER_HOST", HOST), ENV["MASTER_PORT"], True)
        )
# Names of this run's tables and procedures: unique per run and per target (both share DB).
TAG = "cp_" + secrets.token_hex(3)


def one_line(s):
    return re.sub(r"\s+", " ", str(s)).strip()


def describe(e):
    if isinstance(e, mysql.connector.Error) and e.errno:
        return one_line(f"error {e.errno}: {e.msg}")
    return one_line(f"{type(e).__name__}: {e}")


class CheckFailed(Exception):
    pass


class Ctx:
    """What one run of a check uses: its target, its connections (all closed at the end, and shut down
    if the run hangs), and names unique to it."""

    def __init__(self, target):
        self.target = target
        self.conns = []

    def name(self, what):
        return f"{TAG}_{self.target.key}_{what}"

    def connect(self, **extra):
        opts = dict(
            host=self.target.host,
            port=self.target.port,
            user=APP[0],
            password=APP[1],
            database=DB,
            use_pure=True,
            connection_timeout=10,
            read_timeout=READ_TIMEOUT,
            write_timeout=READ_TIMEOUT,
            autocommit=True,
        )
        opts.update(extra)
        cnx = mysql.connector.connect(**opts)
        self.conns.append(cnx)
        return cnx

    def abort(self):
        """Unblocks a hung run: shuts its sockets down under it."""
        for cnx in self.conns:
            try:
                cnx._socket.sock.shutdown(socket.SHUT_RDWR)  # noqa: SLF001 - no public way to interrupt
            except Exception:  # noqa: BLE001
                pass

    def close_all(self):
        for cnx in self.conns:
            try:
                cnx.close()
            except Exception:  # noqa: BLE001
                pass
        self.conns = []


def rows(cnx, sql, params=None):
    cur = cnx.cursor(buffered=True)
    try:
        cur.execute(sql, params)
        return cur.fetchall() if cur.with_rows else []
    finally:
        cur.close()


def one(cnx, sql, params=None):
    r = rows(cnx, sql, params)
    if len(r) != 1:
        raise CheckFailed(f"{sql[:80]}: expected one row, got {r!r:.200}")
    return r[0]


def run(cnx, sql, params=None):
    cur = cnx.cursor()
    try:
        cur.execute(sql, params)
        if cur.with_rows:
            cur.fetchall()
        return cur.rowcount
    finally:
        cur.close()


def server_id_of(cnx):
    try:
        return one(cnx, "SELECT @@server_id")[0]
    except Exception as e:  # noqa: BLE001
        return f"unknown ({describe(e)})"


FAILURES = 0


def check(name, fn, timeout=60, compare=True):
    """Runs fn(ctx) on every target; compare: the values it returns must be equal on all targets."""
    global FAILURES
    results = []
    for target in TARGETS:
        ctx = Ctx(target)
        outcome = {}

        def body(ctx=ctx, outcome=outcome):
            try:
                outcome["value"] = fn(ctx)
            except Exception as e:  # noqa: BLE001
                outcome["error"] = describe(e) if not isinstance(e, CheckFailed) else one_line(e)

        started = time.monotonic()
        worker = threading.Thread(target=body, daemon=True, name=f"{name}-{target.key}")
        worker.start()
        worker.join(timeout)
        elapsed = time.monotonic() - started
        if worker.is_alive():
            ctx.abort()
            worker.join(5)
            results.append((target, False, f"no answer within {timeout} s (hang)"))
        elif "error" in outcome:
            results.append((target, False, f"{outcome['error']} (after {elapsed:.1f} s)"))
        else:
            results.append((target, True, outcome.get("value")))
        ctx.close_all()
    problems = []
    for target, ok, what in results:
        if not ok:
            blame = " (so the check itself or the sandbox is wrong)" if target.direct and not DIRECT else ""
            problems.append(f"{target.label}{blame}: {what}")
    if not problems and compare and len(results) > 1:
        values = [repr(v) for _, _, v in results]
        if any(v != values[0] for v in values):
            problems.append(", ".join(f"{t.label} gave {v}" for (t, _, _), v in zip(results, values)))
    if problems:
        FAILURES += 1
        print(f"FAIL {name}: {one_line('; '.join(problems))}", flush=True)
    else:
        print(f"ok {name}", flush=True)


# 1. The connection id of the handshake is the one SELECT CONNECTION_ID() reports.
def handshake_connection_id(ctx):
    cnx = ctx.connect()
    announced = cnx.connection_id
    (cid,) = one(cnx, "SELECT CONNECTION_ID()")
    if cid != announced:
        raise CheckFailed(f"the handshake announced connection id {announced}, SELECT CONNECTION_ID() returned {cid}")
    return "equal"


# 2. KILL QUERY <CONNECTION_ID() of the victim> from a second connection interrupts SELECT SLEEP(10).
def kill_query(ctx):
    victim = ctx.connect()
    killer = ctx.connect()
    (vid,) = one(victim, "SELECT CONNECTION_ID()")
    result = {}

    def sleep():
        try:
            result["rows"] = rows(victim, "SELECT SLEEP(10)")
        except Exception as e:  # noqa: BLE001
            result["error"] = e
        result["elapsed"] = time.monotonic() - started

    started = time.monotonic()
    sleeper = threading.Thread(target=sleep, daemon=True)
    sleeper.start()
    time.sleep(0.7)
    try:
        run(killer, f"KILL QUERY {vid}")
    except Exception as e:  # noqa: BLE001
        raise CheckFailed(f"KILL QUERY {vid} (the victim's CONNECTION_ID()) failed: {describe(e)}") from e
    sleeper.join(15)
    if sleeper.is_alive():
        raise CheckFailed("the victim's SELECT SLEEP(10) had not ended 15 s after the KILL QUERY")
    elapsed = result["elapsed"]
    err = result.get("error")
    if err is not None:
        if getattr(err, "errno", None) != 1317:
            raise CheckFailed(f"the victim's SELECT SLEEP(10) failed with {describe(err)}, expected error 1317")
        outcome = "error 1317"
    else:
        s = result["rows"][0][0] if result["rows"] else None
        if s != 1:
            raise CheckFailed(f"SELECT SLEEP(10) was not interrupted: returned {s} after {elapsed:.1f} s")
        outcome = "SLEEP returned 1"
    if elapsed > 3:
        raise CheckFailed(f"the victim's SELECT SLEEP(10) ended ({outcome}) only after {elapsed:.1f} s")
    try:
        (x,) = one(victim, "SELECT 1 + 1")
    except Exception as e:  # noqa: BLE001
        raise CheckFailed(f"the victim connection is unusable after the KILL QUERY ({outcome}): {describe(e)}") from e
    if x != 2:
        raise CheckFailed(f"after the KILL QUERY, SELECT 1 + 1 returned {x!r}")
    return outcome


# 3. COM_CHANGE_USER to root and back to app.
def change_user(ctx):
    cnx = ctx.connect()
    seen = [one(cnx, "SELECT CURRENT_USER()")[0]]
    cnx.cmd_change_user(username=ROOT[0], password=ROOT[1], database=DB)
    seen.append(one(cnx, "SELECT CURRENT_USER()")[0])
    cnx.cmd_change_user(username=APP[0], password=APP[1], database=DB)
    seen.append(one(cnx, "SELECT CURRENT_USER()")[0])
    expected = [APP[0], ROOT[0], APP[0]]
    if any(not str(u).startswith(f"{e}@") for u, e in zip(seen, expected)):
        raise CheckFailed(f"CURRENT_USER() went {' -> '.join(map(str, seen))}, expected {'@… -> '.join(expected)}@…")
    (d,) = one(cnx, "SELECT DATABASE()")
    if d != DB:
        raise CheckFailed(f"after changing back to {APP[0]}, DATABASE() is {d}, expected {DB}")
    return " -> ".join(seen)


# 4. The compressed protocol: several queries, a 5 MiB value, a multi-row result, a write.
#
# Connector/Python's pure-Python reader cannot take a compressed packet that ends within the first three
# bytes of a MySQL packet header (struct.unpack on a short slice: "unpack requires a buffer of 4 bytes").
# MariaDB cuts compressed packets wherever its write buffer fills, so on a direct connection that happens
# for some packet sizes: seen for a default database name of 18 characters, whose session-state OK packets
# shift everything after them (in column definitions too). rwsplit compresses whole packets, so it never
# happens through the proxy. The check therefore keeps its multi-row result within one compressed packet,
# connects without a default database (names are qualified), and the direct run (the comparison) is tried
# up to three times if it still hits exactly that driver bug.
DRIVER_SPLIT_HEADER_BUG = "unpack requires a buffer of 4 bytes"


def compression(ctx):
    for attempt in range(3):
        try:
            return compression_once(ctx, attempt)
        except CheckFailed as e:
            if not (ctx.target.direct or ctx.target.key == "direct") or DRIVER_SPLIT_HEADER_BUG not in str(e) or attempt == 2:
                raise


def compression_once(ctx, attempt):
    # Connector/Python sets CLIENT_COMPRESS and switches to the compressed protocol after authentication
    # whether or not the server offered it; tell which case a failure is.
    probe = ctx.connect()
    offered = bool(probe._handshake["capabilities"] & ClientFlag.COMPRESS)  # noqa: SLF001
    probe.close()
    note = "" if offered else " (the server's handshake did not offer CLIENT_COMPRESS; Connector/Python compresses anyway)"
    try:
        cnx = ctx.connect(compress=True, database=None)
        r1 = one(cnx, "SELECT 1, 'compressed'")
        if tuple(r1) != (1, "compressed"):
            raise CheckFailed(f"SELECT 1 returned {r1!r}")
        n = 5 * MIB
        (r,) = one(cnx, f"SELECT REPEAT('x', {n})")
        if not isinstance(r, str) or len(r) != n or r.strip("x"):
            raise CheckFailed(f"SELECT REPEAT('x', {n}) returned {type(r).__name__} of length {len(r) if r else r}")
        # 400 rows fit in one 16 KiB compressed packet from MariaDB: a larger result runs into the driver bug
        # above on direct connections, depending on the database name's length.
        multi = rows(cnx, f"SELECT seq, CONCAT('row', seq) FROM {DB}.seq_1_to_400")
        if len(multi) != 400:
            raise CheckFailed(f"the 400-row result has {len(multi)} rows")
        for i, row in enumerate(multi, 1):
            if tuple(row) != (i, f"row{i}"):
                raise CheckFailed(f"row {i} of the multi-row result is {row!r}")
        t = f"{DB}.{ctx.name(f'cmp{attempt}')}"
        run(cnx, f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(64))")
        run(cnx, f"INSERT INTO {t} SELECT seq, MD5(seq) FROM {DB}.seq_1_to_200")
        cnt, m = one(cnx, f"SELECT /* rwsplit:master */ COUNT(*), MD5(GROUP_CONCAT(v ORDER BY id)) FROM {t}")
        if cnt != 200:
            raise CheckFailed(f"the compressed INSERT … SELECT left {cnt} rows, expected 200")
    except Exception as e:  # noqa: BLE001
        raise CheckFailed((one_line(e) if isinstance(e, CheckFailed) else describe(e)) + note) from e
    if not offered:
        raise CheckFailed("every query returned correct values" + note)
    return f"{len(r)} x, {len(multi)} rows, {cnt} rows md5 {m}"


# 5. A 33 MiB random blob INSERTed through the text protocol with Connector/Python's own client-side
# escaping (a plain cursor with a bytes parameter), read back.
def blob_33m(ctx):
    data = secrets.token_bytes(BLOB_BYTES)
    want = (len(data), hashlib.md5(data).hexdigest())
    t = ctx.name("blob")
    writer = ctx.connect(read_timeout=120, write_timeout=120)
    run(writer, f"CREATE TABLE {t} (id INT PRIMARY KEY, b LONGBLOB)")
    try:
        run(writer, f"INSERT INTO {t} (id, b) VALUES (%s, %s)", (1, data))
    except Exception as e:  # noqa: BLE001
        raise CheckFailed(f"INSERT of the {BLOB_BYTES // MIB} MiB blob failed: {describe(e)}") from e
    reader = ctx.connect(read_timeout=120)
    n, m = one(reader, f"SELECT /* rwsplit:master */ LENGTH(b), MD5(b) FROM {t} WHERE id = 1")
    if (n, m) != want:
        raise CheckFailed(f"the master holds {n} bytes md5 {m}, sent {want[0]} bytes md5 {want[1]}")
    # The writer reads its own write back (rwsplit's default read-your-writes: a replica that has applied it,
    # or the master).
    (b,) = one(writer, f"SELECT b FROM {t} WHERE id = 1")
    got = (len(b), hashlib.md5(b).hexdigest()) if isinstance(b, (bytes, bytearray)) else type(b).__name__
    if got != want:
        raise CheckFailed(f"read back {got} (server_id {server_id_of(writer)}), sent {want}")
    return "identical"


# 6. LOAD DATA LOCAL INFILE of a small CSV.
def local_infile(ctx):
    with tempfile.TemporaryDirectory(prefix="rwsplit-connector-") as d:
        path = os.path.join(d, "rows.csv")
        with open(path, "w", encoding="ascii") as f:
            f.write("1,alpha\n2,beta\n3,gamma\n")
        t = ctx.name("infile")
        cnx = ctx.connect(allow_local_infile=True)
        run(cnx, f"CREATE TABLE {t} (a INT PRIMARY KEY, b VARCHAR(20))")
        loaded = run(
            cnx,
            f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {t} FIELDS TERMINATED BY ',' LINES TERMINATED BY '\\n' (a, b)",
        )
        if loaded != 3:
            raise CheckFailed(f"LOAD DATA LOCAL INFILE reported {loaded} rows, expected 3")
        n, v = one(cnx, f"SELECT /* rwsplit:master */ COUNT(*), GROUP_CONCAT(b ORDER BY a) FROM {t}")
        if n != 3 or v != "alpha,beta,gamma":
            raise CheckFailed(f"after LOAD DATA LOCAL INFILE the table holds {n} rows ({v})")
        return f"{n} rows: {v}"


# 7. An OUT parameter of a stored procedure: CALL p(@o); SELECT @o, and cursor.callproc.
def create_out_proc(ctx, cnx, what):
    p = ctx.name(what)
    run(cnx, f"CREATE PROCEDURE {p}(OUT o INT) BEGIN SET o = 42; END")
    return p


def out_params(ctx):
    cnx = ctx.connect()
    p = create_out_proc(ctx, cnx, "p_out")
    run(cnx, f"CALL {p}(@o)")
    (o,) = one(cnx, "SELECT @o")
    if o != 42:
        raise CheckFailed(f"CALL {p}(@o); SELECT @o returned {o!r} (SELECT @@server_id now says {server_id_of(cnx)}), expected 42")
    return o


def out_params_callproc(ctx):
    cnx = ctx.connect()
    p = create_out_proc(ctx, cnx, "p_callproc")
    cur = cnx.cursor()
    try:
        # Connector/Python runs SET @_p_arg1 = 0; CALL p(@_p_arg1); SELECT @_p_arg1 on this connection.
        result = cur.callproc(p, (0,))
    finally:
        cur.close()
    if tuple(result) != (42,):
        raise CheckFailed(f"cursor.callproc({p}, (0,)) returned {result!r} (SELECT @@server_id now says {server_id_of(cnx)}), expected (42,)")
    return tuple(result)


# 8. A prepared (binary-protocol) SET time_zone = ?, then a plain read that must run on a replica.
def prepared_set(ctx, read_first):
    cnx = ctx.connect()
    if read_first:
        one(cnx, "SELECT @@server_id")
    cur = cnx.cursor(prepared=True)
    try:
        cur.execute("SET time_zone = %s", ("+05:00",))
    finally:
        cur.close()
    tz, sid = one(cnx, "SELECT @@time_zone, @@server_id")
    if not ctx.target.direct and sid not in (2, 3):
        raise CheckFailed(f"SELECT @@time_zone, @@server_id ran on server_id {sid}, expected a replica (2 or 3); time_zone {tz}")
    if tz != "+05:00":
        raise CheckFailed(f"@@time_zone is {tz} on server_id {sid} after the prepared SET, expected +05:00")
    return tz


def main():
    def watchdog():
        print(f"FAIL watchdog: the checks did not finish within {WATCHDOG} s", flush=True)
        os._exit(1)

    timer = threading.Timer(WATCHDOG, watchdog)
    timer.daemon = True
    timer.start()
    impl = "pure Python (use_pure=True)"
    cext = getattr(mysql.connector, "HAVE_CEXT", False)
    where = ", ".join(f"{t.label} {t.host}:{t.port}" for t in TARGETS)
    print(f"# mysql-connector-python {mysql.connector.__version__}, {impl}, Python {sys.version.split()[0]}, {where}, db {DB}", flush=True)
    if not cext:
        print("# the C extension is not loadable here, so only the pure-Python implementation is checked", flush=True)
    check("handshake_connection_id", handshake_connection_id, compare=False)
    check("kill_query", kill_query, compare=False)
    check("change_user", change_user)
    check("compression", compression, timeout=90)
    check("blob_33m", blob_33m, timeout=180)
    check("local_infile", local_infile)
    check("out_params", out_params)
    check("out_params_callproc", out_params_callproc)
    check("prepared_set_time_zone", lambda ctx: prepared_set(ctx, False))
    check("prepared_set_time_zone_after_read", lambda ctx: prepared_set(ctx, True))
    print("# all checks passed" if FAILURES == 0 else f"# {FAILURES} check(s) failed", flush=True)
    # os._exit: a thread of a timed-out check may still be blocked; do not wait for it.
    os._exit(0 if FAILURES == 0 else 1)


if __name__ == "__main__":
    main()
