#!/usr/bin/env python3
"""Builds the fuzz seed corpus (fuzz/corpus/<target>/) from real protocol captures.

A TCP relay on loopback sits between real clients and a real server (a MariaDB of deploy/sandbox.sh, and an
rwsplit in front of it) and records every byte of each connection. The clients: the `mariadb` command-line
client (libmariadb), MySQL Connector/Python when it is importable, and a small raw client in this file that
drives the commands the others do not send (binary protocol with cursors, COM_FIELD_LIST, COM_CHANGE_USER,
COM_SET_OPTION, LOCAL INFILE, session tracking, CLIENT_DEPRECATE_EOF on and off). The captured byte streams
are then cut into what each fuzz target takes: frames, server responses per command, logins, greetings,
statement texts, compressed streams, OK/ERR packets, GTID positions, admin commands.

Run by fuzz/capture.sh, which starts the sandbox and the proxy and stops them afterwards:
    python3 fuzz/capture.py --master PORT --proxy PORT --admin PORT --out fuzz/corpus [--config-seeds FILE...]

Only the Python standard library is needed (Connector/Python is used when it imports). The output is
deterministic in its set of files for the same server version (names are content hashes), not in bytes:
scrambles, connection ids and timestamps differ between runs.
"""

import argparse
import hashlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

# Capability flags.
LONG_PASSWORD = 1
FOUND_ROWS = 2
LONG_FLAG = 4
CONNECT_WITH_DB = 8
COMPRESS = 0x20
LOCAL_FILES = 0x80
PROTOCOL_41 = 0x200
INTERACTIVE = 0x400
TRANSACTIONS = 0x2000
SECURE_CONNECTION = 0x8000
MULTI_STATEMENTS = 1 << 16
MULTI_RESULTS = 1 << 17
PS_MULTI_RESULTS = 1 << 18
PLUGIN_AUTH = 1 << 19
CONNECT_ATTRS = 1 << 20
PLUGIN_AUTH_LENENC = 1 << 21
SESSION_TRACK = 1 << 23
DEPRECATE_EOF = 1 << 24

# Status flags.
MORE_RESULTS = 0x0008
CURSOR_EXISTS = 0x0040
LAST_ROW_SENT = 0x0080

# Commands and the response kind (the walker's `Expect`, by its index in fuzz_targets/walker.rs) of each.
COM = {
    "QUIT": 0x01, "INIT_DB": 0x02, "QUERY": 0x03, "FIELD_LIST": 0x04, "STATISTICS": 0x09, "PING": 0x0E,
    "CHANGE_USER": 0x11, "STMT_PREPARE": 0x16, "STMT_EXECUTE": 0x17, "STMT_SEND_LONG_DATA": 0x18,
    "STMT_CLOSE": 0x19, "STMT_RESET": 0x1A, "SET_OPTION": 0x1B, "STMT_FETCH": 0x1C, "RESET_CONNECTION": 0x1F,
}
RESULT_SETS, ROWS, PREPARE, FIELD_LIST, SINGLE, ANY_ONE = range(6)
EXPECT = {
    0x03: RESULT_SETS, 0x17: RESULT_SETS, 0x1C: ROWS, 0x16: PREPARE, 0x04: FIELD_LIST, 0x02: SINGLE,
    0x0E: SINGLE, 0x1A: SINGLE, 0x1B: SINGLE, 0x1F: SINGLE, 0x09: ANY_ONE,
}
MAX_SEED = 16 * 1024  # bytes; every seed stays well under the 64 KiB limit

# --------------------------------------------------------------------------------------------------------
# Relay: records each connection as a list of (direction, bytes) in arrival order.


class Relay:
    """Listens on an ephemeral loopback port and forwards to `upstream`, recording every chunk."""

    def __init__(self, upstream_port, label):
        self.upstream_port, self.label = upstream_port, label
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []  # each: {"label", "log": [(dir, bytes)], "done": Event}
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            conn = {"label": self.label, "log": [], "done": threading.Event(), "ends": 0}
            with self.lock:
                self.conns.append(conn)
            for src, dst, d in ((client, server, "c"), (server, client, "s")):
                threading.Thread(target=self._pump, args=(src, dst, d, conn), daemon=True).start()

    def _pump(self, src, dst, direction, conn):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    conn["log"].append((direction, data))
                dst.sendall(data)
        except OSError:
            pass
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.lock:
            conn["ends"] += 1
            if conn["ends"] == 2:
                conn["done"].set()

    def wait(self, timeout=10):
        deadline = time.time() + timeout
        for c in list(self.conns):
            c["done"].wait(max(0.1, deadline - time.time()))


# --------------------------------------------------------------------------------------------------------
# A raw client: just enough of the protocol to send any command and find the end of its response.


def lenenc(n):
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    if n < 1 << 24:
        return b"\xfd" + struct.pack("<I", n)[:3]
    return b"\xfe" + struct.pack("<Q", n)


def read_lenenc(p, i):
    b = p[i]
    if b < 251:
        return b, i + 1
    width = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(b)
    if width is None:
        return None, i + 1  # NULL (0xFB)
    return int.from_bytes(p[i + 1:i + 1 + width], "little"), i + 1 + width


def native_scramble(nonce, password):
    if not password:
        return b""
    h1 = hashlib.sha1(password).digest()
    h2 = hashlib.sha1(nonce + hashlib.sha1(h1).digest()).digest()
    return bytes(a ^ b for a, b in zip(h1, h2))


def status_of(p):
    """Status flags of an OK (0x00 or 0xFE with more than 5 bytes) or EOF packet."""
    if p[0] == 0xFE and len(p) <= 5:
        return struct.unpack_from("<H", p, 3)[0] if len(p) >= 5 else 0
    _, i = read_lenenc(p, 1)
    _, i = read_lenenc(p, i)
    return struct.unpack_from("<H", p, i)[0]


class Raw:
    FULL = (LONG_PASSWORD | FOUND_ROWS | LONG_FLAG | CONNECT_WITH_DB | LOCAL_FILES | PROTOCOL_41 | TRANSACTIONS
            | SECURE_CONNECTION | MULTI_STATEMENTS | MULTI_RESULTS | PS_MULTI_RESULTS | PLUGIN_AUTH | CONNECT_ATTRS
            | PLUGIN_AUTH_LENENC | SESSION_TRACK | DEPRECATE_EOF)

    def __init__(self, port, user=b"app", password=b"apppw", db=b"app", caps=FULL, plugin=b"mysql_native_password",
                 attrs=None, collation=45):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.settimeout(10)
        self.buf = b""
        seq, greeting = self.read()
        self.nonce, server_caps = self.parse_greeting(greeting)
        if db is None:
            caps &= ~CONNECT_WITH_DB
        self.caps = caps & (server_caps | 0xFFFF)
        self.deprecate_eof = bool(self.caps & server_caps & DEPRECATE_EOF)
        self.password = password
        auth = native_scramble(self.nonce, password) if plugin == b"mysql_native_password" else os.urandom(32)
        out = struct.pack("<IIB", self.caps, 16 << 20, collation) + bytes(23) + user + b"\0"
        if self.caps & PLUGIN_AUTH_LENENC:
            out += lenenc(len(auth)) + auth
        elif self.caps & SECURE_CONNECTION:
            out += bytes([len(auth)]) + auth
        else:
            out += auth + b"\0"
        if self.caps & CONNECT_WITH_DB:
            out += db + b"\0"
        if self.caps & PLUGIN_AUTH:
            out += plugin + b"\0"
        if self.caps & CONNECT_ATTRS:
            kv = b"".join(lenenc(len(x)) + x for pair in (attrs or {}).items() for x in pair)
            out += lenenc(len(kv)) + kv
        self.send(out, seq + 1)
        self.ok = self.auth_exchange(seq + 2)

    @staticmethod
    def parse_greeting(p):
        end = p.index(0, 1)
        i = end + 1 + 4
        s1 = p[i:i + 8]
        i += 9
        caps = struct.unpack_from("<H", p, i)[0]
        i += 2 + 1 + 2
        caps |= struct.unpack_from("<H", p, i)[0] << 16
        i += 2 + 1 + 10
        s2 = p[i:i + 12]
        return s1 + s2, caps

    def auth_exchange(self, seq):
        while True:
            seq, p = self.read()
            if p[0] == 0x00:
                return True
            if p[0] == 0xFF:
                return False
            if p[0] == 0xFE:  # auth switch: plugin NUL nonce NUL
                nul = p.index(0, 1)
                nonce = p[nul + 1:].rstrip(b"\0")
                self.nonce = nonce
                self.send(native_scramble(nonce, self.password), seq + 1)
            else:  # more data: nothing this client can add
                return False

    def recv_exact(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self):
        h = self.recv_exact(4)
        n = h[0] | h[1] << 8 | h[2] << 16
        return h[3], self.recv_exact(n)

    def send(self, payload, seq=0):
        self.s.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq & 0xFF]) + payload)

    def command(self, payload, infile=b""):
        """Sends a command and reads its whole response; returns the response's payloads."""
        self.send(payload, 0)
        kind = EXPECT.get(payload[0])
        if kind is None:
            return []
        out = []
        state = {RESULT_SETS: "first", ROWS: "rows", PREPARE: "prepare", FIELD_LIST: "fields"}.get(kind, "one")
        left = 0
        pending = []  # definition blocks of a prepare response: [count, count]
        while True:
            seq, p = self.read()
            out.append(p)
            if state == "one":
                return out
            if state == "first":
                if p[0] == 0x00:
                    if status_of(p) & MORE_RESULTS:
                        continue
                    return out
                if p[0] == 0xFF:
                    return out
                if p[0] == 0xFB:  # LOCAL INFILE: the file's contents, then an empty packet
                    if infile:
                        seq += 1
                        self.send(infile, seq)
                    self.send(b"", seq + 1)
                    continue
                left, _ = read_lenenc(p, 0)
                state = "columns"
            elif state == "columns":
                left -= 1
                if left == 0:
                    state = "rows" if self.deprecate_eof else "columns_eof"
            elif state == "columns_eof":
                if p[0] == 0xFF:
                    return out
                if status_of(p) & CURSOR_EXISTS:
                    return out
                state = "rows"
            elif state == "rows":
                if p[0] == 0xFF:
                    return out
                if p[0] == 0xFE and (self.deprecate_eof or len(p) < 9):
                    if status_of(p) & MORE_RESULTS:
                        state = "first"
                        continue
                    return out
            elif state == "prepare":
                if p[0] == 0xFF:
                    return out
                _, cols, params = struct.unpack_from("<IHH", p, 1)
                pending = [n for n in (params, cols) if n]
                if not pending:
                    return out
                left, state = pending.pop(0), "defs"
            elif state == "defs":
                left -= 1
                if left == 0:
                    if not self.deprecate_eof:
                        state = "defs_eof"
                    elif pending:
                        left = pending.pop(0)
                    else:
                        return out
            elif state == "defs_eof":
                if pending:
                    left, state = pending.pop(0), "defs"
                else:
                    return out
            elif state == "fields":
                if p[0] in (0xFF, 0xFE):
                    return out

    def query(self, sql, infile=b""):
        return self.command(bytes([COM["QUERY"]]) + sql.encode(), infile)

    def close(self):
        try:
            self.send(bytes([COM["QUIT"]]))
            self.s.close()
        except OSError:
            pass


def text_values(payloads):
    """The values of the rows of a text result set (lenenc strings), as bytes; NULL as None."""
    values = []
    i = 0
    if not payloads or payloads[0][0] in (0x00, 0xFF):
        return values
    cols, _ = read_lenenc(payloads[0], 0)
    rows = payloads[1 + cols:]
    for p in rows:
        if p[0] == 0xFE and len(p) < 9:
            continue
        if p[0] == 0xFE and len(p) >= 9 and p is rows[-1]:
            continue  # the OK terminator under DEPRECATE_EOF
        i = 0
        while i < len(p):
            n, i = read_lenenc(p, i)
            if n is None:
                values.append(None)
                continue
            values.append(p[i:i + n])
            i += n
    return values


# Binary protocol parameter types.
T_TINY, T_LONG, T_DOUBLE, T_NULL, T_LONGLONG, T_DATETIME, T_VAR_STRING, T_BLOB = 1, 3, 5, 6, 8, 12, 253, 252


def binary_value(t, v):
    if t == T_TINY:
        return struct.pack("<b", v)
    if t == T_LONG:
        return struct.pack("<i", v)
    if t == T_LONGLONG:
        return struct.pack("<q", v)
    if t == T_DOUBLE:
        return struct.pack("<d", v)
    if t == T_DATETIME:
        return bytes([7]) + struct.pack("<HBBBBB", *v)
    return lenenc(len(v)) + v


def execute_payload(stmt_id, params, flags=0, bind=True):
    """COM_STMT_EXECUTE for (type, value) params; value None is NULL."""
    out = bytes([COM["STMT_EXECUTE"]]) + struct.pack("<IBI", stmt_id, flags, 1)
    if params:
        bitmap = bytearray((len(params) + 7) // 8)
        for i, (_, v) in enumerate(params):
            if v is None:
                bitmap[i // 8] |= 1 << (i % 8)
        out += bytes(bitmap) + bytes([1 if bind else 0])
        if bind:
            out += b"".join(struct.pack("<H", t) for t, _ in params)
        out += b"".join(binary_value(t, v) for t, v in params if v is not None)
    return out


def raw_session(port, caps, infile_path):
    """One session of every command kind; returns nothing (the relay records it)."""
    c = Raw(port, caps=caps, attrs={b"_client_name": b"rwsplit-capture", b"_pid": str(os.getpid()).encode()})
    assert c.ok, "login failed"
    q = c.query
    q("SET session_track_system_variables='*', session_track_state_change=1, session_track_schema=1, "
      "session_track_transaction_info='CHARACTERISTICS'")
    q("DROP TABLE IF EXISTS fz_t")
    q("CREATE TABLE fz_t (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(200), price DECIMAL(10,2), "
      "at DATETIME, data BLOB)")
    q("INSERT INTO fz_t (name, price, at, data) VALUES ('alpha', 1.50, '2024-01-02 03:04:05', 'x'), "
      "('beta', NULL, NULL, NULL), ('gamma', 3.25, NOW(), REPEAT('z', 300))")
    for sql in [
        "SELECT * FROM fz_t ORDER BY id",
        "SELECT id, name FROM fz_t WHERE id = 2 FOR UPDATE",
        "SELECT 1; SELECT 'two', 2.0; SELECT NULL",
        "SELECT * FROM no_such_table",
        "SELEC broken syntax",
        "SET time_zone = '+01:00'",
        "SET @v = 42",
        "SELECT @v, @@session.time_zone, CONNECTION_ID()",
        "USE app",
        "BEGIN",
        "UPDATE fz_t SET price = price + 1 WHERE id = 1",
        "COMMIT",
        "START TRANSACTION READ ONLY",
        "SELECT COUNT(*) FROM fz_t LOCK IN SHARE MODE",
        "ROLLBACK",
        "SHOW VARIABLES LIKE 'version%'",
        "SHOW WARNINGS",
        "DO SLEEP(0)",
        "SELECT @@gtid_binlog_pos, @@gtid_current_pos, @@last_gtid",
        "INSERT INTO fz_t (name) VALUES ('dup'); INSERT INTO fz_t (id, name) VALUES (1, 'dup')",
        "DROP PROCEDURE IF EXISTS fz_p",
        "CREATE PROCEDURE fz_p() BEGIN SELECT 1 AS a; SELECT 2 AS b, 'x' AS c; END",
        "CALL fz_p()",
        "/* rwsplit:replica */ SELECT name FROM fz_t",
        "/*!40101 SET @a = 1 */",
        "SELECT /* rwsplit:min_gtid=0-1-5 */ 1",
        "PREPARE s1 FROM 'SELECT ? + 1'",
        "EXECUTE s1 USING @v",
        "DEALLOCATE PREPARE s1",
        "SET NAMES utf8mb4",
        "SELECT GET_LOCK('fz', 0), RELEASE_LOCK('fz')",
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET STATEMENT max_statement_time=10 FOR SELECT 1",
        "CREATE TEMPORARY TABLE fz_tmp (a INT)",
        "SELECT * FROM fz_tmp",
        "DROP TEMPORARY TABLE fz_tmp",
        "SELECT REPEAT('r', 2000) AS big, 'w' AS small",
    ]:
        q(sql)
    q("LOAD DATA LOCAL INFILE '%s' INTO TABLE fz_t FIELDS TERMINATED BY ',' (name, price)" % infile_path,
      infile=b"delta,4.5\nepsilon,5.75\n")
    c.command(bytes([COM["FIELD_LIST"]]) + b"fz_t\0")
    c.command(bytes([COM["FIELD_LIST"]]) + b"no_such_table\0")
    c.command(bytes([COM["STATISTICS"]]))
    c.command(bytes([COM["PING"]]))
    c.command(bytes([COM["INIT_DB"]]) + b"app")
    c.command(bytes([COM["INIT_DB"]]) + b"no_such_db")
    c.command(bytes([COM["SET_OPTION"]]) + struct.pack("<H", 1))  # multi-statements off
    c.command(bytes([COM["SET_OPTION"]]) + struct.pack("<H", 0))
    # Binary protocol.
    resp = c.command(bytes([COM["STMT_PREPARE"]]) + b"SELECT id, name, price, at FROM fz_t WHERE id > ? AND name <> ?")
    sid = struct.unpack_from("<I", resp[0], 1)[0]
    c.command(execute_payload(sid, [(T_LONGLONG, 0), (T_VAR_STRING, b"zzz")]))
    c.command(execute_payload(sid, [(T_LONGLONG, 1), (T_VAR_STRING, b"beta")], bind=False))
    c.command(execute_payload(sid, [(T_LONG, 0), (T_VAR_STRING, None)]))
    # A cursor, fetched two rows at a time.
    c.command(execute_payload(sid, [(T_LONGLONG, 0), (T_VAR_STRING, b"")], flags=1))
    for _ in range(4):
        rows = c.command(bytes([COM["STMT_FETCH"]]) + struct.pack("<II", sid, 2))
        if rows and rows[-1][0] in (0xFE, 0xFF) and len(rows[-1]) < 9 and status_of(rows[-1]) & LAST_ROW_SENT:
            break
    c.command(bytes([COM["STMT_RESET"]]) + struct.pack("<I", sid))
    c.command(bytes([COM["STMT_CLOSE"]]) + struct.pack("<I", sid))
    resp = c.command(bytes([COM["STMT_PREPARE"]]) + b"INSERT INTO fz_t (name, price, at, data) VALUES (?, ?, ?, ?)")
    sid = struct.unpack_from("<I", resp[0], 1)[0]
    c.command(execute_payload(sid, [(T_VAR_STRING, b"zeta"), (T_DOUBLE, 6.5), (T_DATETIME, (2024, 5, 6, 7, 8, 9)),
                                    (T_BLOB, b"\x00\x01\xfe\xff")]))
    c.command(execute_payload(sid, [(T_VAR_STRING, b"eta"), (T_TINY, 7), (T_DATETIME, None), (T_BLOB, None)]))
    c.send(bytes([COM["STMT_SEND_LONG_DATA"]]) + struct.pack("<IH", sid, 3) + b"long data chunk")
    c.command(execute_payload(sid, [(T_VAR_STRING, b"theta"), (T_NULL, None), (T_NULL, None), (T_BLOB, b"")]))
    c.command(bytes([COM["STMT_CLOSE"]]) + struct.pack("<I", sid))
    c.command(bytes([COM["STMT_PREPARE"]]) + b"SELECT * FROM no_such_table WHERE a = ?")
    c.command(bytes([COM["STMT_PREPARE"]]) + b"SET @w = ?")
    c.command(bytes([COM["STMT_PREPARE"]]) + b"CALL fz_p()")
    # COM_CHANGE_USER: to the same account, with and without a database, then a reset.
    for db in (b"app", b""):
        auth = native_scramble(c.nonce, b"apppw")
        payload = bytes([COM["CHANGE_USER"]]) + b"app\0" + bytes([len(auth)]) + auth + db + b"\0"
        payload += struct.pack("<H", 45) + b"mysql_native_password\0"
        if c.caps & CONNECT_ATTRS:
            kv = lenenc(12) + b"_client_name" + lenenc(7) + b"capture"
            payload += lenenc(len(kv)) + kv
        c.send(payload, 0)
        c.auth_exchange(1)
    c.command(bytes([COM["RESET_CONNECTION"]]))
    c.query("SELECT 1")
    c.close()


def raw_logins(port):
    """Logins of other shapes: an auth switch, a wrong password, old capabilities, no database."""
    for kw in (
        dict(plugin=b"caching_sha2_password"),
        dict(password=b"wrong"),
        dict(caps=LONG_PASSWORD | LONG_FLAG | PROTOCOL_41 | SECURE_CONNECTION | TRANSACTIONS, db=None),
        dict(caps=Raw.FULL & ~(PLUGIN_AUTH_LENENC | CONNECT_ATTRS), db=None),
        dict(user=b"nobody", password=b"x"),
    ):
        try:
            c = Raw(port, **kw)
            if c.ok:
                c.query("SELECT CURRENT_USER()")
            c.close()
        except (OSError, EOFError, ValueError) as e:
            print(f"capture: raw login {kw}: {e}", file=sys.stderr)


def mariadb_cli(port, user, password, sql, *extra, db=None):
    cmd = ["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{port}", f"-u{user}", f"-p{password}", *extra]
    if db:
        cmd.append(db)
    cmd += ["-e", sql]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


CLI_SQL = ("SELECT * FROM fz_t; SHOW TABLES; SELECT @@version, @@version_comment; "
           "SELECT name, COUNT(*) FROM fz_t GROUP BY name; UPDATE fz_t SET price = 1 WHERE id = 0")


def connector_session(port):
    """MySQL Connector/Python (pure Python): prepared cursors, change_user, statistics, auth switch."""
    try:
        import mysql.connector
    except ImportError:
        print("capture: mysql.connector not importable, skipping Connector/Python", file=sys.stderr)
        return
    cnx = mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="apppw", database="app",
                                  use_pure=True, auth_plugin="mysql_native_password")
    cur = cnx.cursor(prepared=True)
    cur.execute("SELECT id, name, price FROM fz_t WHERE id > %s AND name <> %s", (0, "x"))
    cur.fetchall()
    cur.execute("SELECT id, name, price FROM fz_t WHERE id > %s AND name <> %s", (1, "alpha"))
    cur.fetchall()
    cur.execute("INSERT INTO fz_t (name, price, at) VALUES (%s, %s, %s)", ("iota", 9.5, None))
    cur.close()
    plain = cnx.cursor()
    plain.execute("SELECT * FROM fz_t WHERE name LIKE %s", ("%a%",))
    plain.fetchall()
    plain.close()
    cnx.cmd_statistics()
    cnx.cmd_ping()
    cnx.cmd_change_user(username="app", password="apppw", database="app")
    cnx.cmd_reset_connection()
    cnx.close()
    try:  # the server answers caching_sha2_password with an auth switch to mysql_native_password
        cnx = mysql.connector.connect(host="127.0.0.1", port=port, user="app", password="apppw", use_pure=True,
                                      auth_plugin="caching_sha2_password")
        cnx.close()
    except Exception as e:  # noqa: BLE001 - a refused login is a capture too
        print(f"capture: Connector/Python with caching_sha2_password: {e}", file=sys.stderr)


# --------------------------------------------------------------------------------------------------------
# Cutting captures into seeds.


def frames_of(stream):
    """(offset_end, seq, payload, raw) of every complete frame of a byte stream."""
    out, i = [], 0
    while i + 4 <= len(stream):
        n = stream[i] | stream[i + 1] << 8 | stream[i + 2] << 16
        if i + 4 + n > len(stream):
            break
        out.append((i + 4 + n, stream[i + 3], stream[i + 4:i + 4 + n], stream[i:i + 4 + n]))
        i += 4 + n
    return out


class Seeds:
    def __init__(self, out):
        self.out = out
        self.count = {}

    def add(self, target, data):
        data = bytes(data)[:MAX_SEED]
        if not data:
            return
        d = os.path.join(self.out, target)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, hashlib.sha1(data).hexdigest()[:16])
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
            self.count[target] = self.count.get(target, 0) + 1


def analyse(conn, seeds, stmt_params):
    """Cuts one recorded connection into seeds for every target."""
    log = conn["log"]
    streams = {"c": b"", "s": b""}
    ends = {"c": [], "s": []}  # stream length after each chunk, with the chunk's index in the log
    for idx, (d, data) in enumerate(log):
        streams[d] += data
        ends[d].append((len(streams[d]), idx))

    def when(d, offset):
        for length, idx in ends[d]:
            if length >= offset:
                return idx
        return len(log)

    for piece in (0, 7, 255):
        seeds.add("frame", bytes([piece]) + streams["s"][:4096])
    seeds.add("frame", bytes([3]) + streams["c"][:4096])

    server = frames_of(streams["s"])
    client = frames_of(streams["c"])
    if not server or not client:
        return
    greeting, login = server[0][2], client[0][2]
    if greeting[:1] == b"\xff":
        return
    seeds.add("greeting", greeting)
    seeds.add("client_login", login)
    caps = struct.unpack_from("<I", login, 0)[0] if len(login) >= 4 else 0
    _, server_caps = Raw.parse_greeting(greeting)
    negotiated = caps & server_caps
    deprecate_eof = bool(negotiated & DEPRECATE_EOF)
    session_track = bool(negotiated & SESSION_TRACK)

    # Merge both directions' frames in arrival order.
    events = sorted([(when("s", e), 1, "s", seq, p, raw) for e, seq, p, raw in server]
                    + [(when("c", e), 0, "c", seq, p, raw) for e, seq, p, raw in client], key=lambda x: (x[0], x[1]))
    # The auth phase ends at the first server OK or ERR after the login; a 0xFE before it is an auth switch.
    i = None
    for j in range(1, len(events)):
        e = events[j]
        if e[2] == "s" and e[4][:1] == b"\xfe":
            seeds.add("greeting", e[4])
        elif e[2] == "s" and e[4][:1] in (b"\x00", b"\xff"):
            i = j
            break
    if i is None:
        return
    if negotiated & COMPRESS:
        auth_end_s = sum(len(ev[5]) for ev in events[:i + 1] if ev[2] == "s")
        auth_end_c = sum(len(ev[5]) for ev in events[:i + 1] if ev[2] == "c")
        for sel, rest in ((0x31, streams["s"][auth_end_s:]), (0x05, streams["c"][auth_end_c:])):
            seeds.add("compress", bytes([sel]) + rest[:MAX_SEED])
            seeds.add("compress", bytes([sel ^ 0x80]) + rest[:600])
        return
    # Commands: a client frame with seq 0 starts one; the server frames until the next one are its response.
    commands = []
    for e in events[i + 1:]:
        if e[2] == "c" and e[3] == 0:
            commands.append({"payload": e[4], "response": []})
        elif e[2] == "s" and commands:
            commands[-1]["response"].append(e)
    for cmd in commands:
        p, resp = cmd["payload"], cmd["response"]
        if not p:
            continue
        code = p[0]
        kind = EXPECT.get(code)
        if kind is not None and resp:
            sel = kind | (0x80 if deprecate_eof else 0)
            seeds.add("walker", bytes([sel]) + b"".join(ev[5] for ev in resp))
        for ev in resp:
            q = ev[4]
            if q[:1] in (b"\x00", b"\xfe", b"\xff"):
                seeds.add("packet", bytes([(0x55 if session_track else 0x54) | (code & 0x02)]) + q)
        if code in (COM["QUERY"], COM["STMT_PREPARE"]):
            sql = p[1:]
            target = "admin_command" if conn["label"] == "admin" else "classify"
            seeds.add(target, (b"" if target == "admin_command" else b"\x00") + sql)
            if target == "classify":
                # The same statement with other literals: a pair the shape cache must answer alike.
                other = bytes((b"7" if c0 in b"0123456789" else bytes([c0]))[0] for c0 in sql)
                if other != sql:
                    seeds.add("classify", b"\x00" + sql + b"\0" + other)
                if b"'" in sql or b'"' in sql:
                    seeds.add("classify", b"\x03" + sql)  # NO_BACKSLASH_ESCAPES | ANSI_QUOTES
        if code == COM["STMT_PREPARE"] and resp and resp[0][4][:1] == b"\x00" and len(resp[0][4]) >= 9:
            sid, _, params = struct.unpack_from("<IHH", resp[0][4], 1)
            stmt_params[(id(conn), sid)] = params
        if code == COM["STMT_EXECUTE"] and len(p) >= 5:
            params = stmt_params.get((id(conn), struct.unpack_from("<I", p, 1)[0]), 0)
            for mode in (0, 1, 3):
                seeds.add("stmt_execute", struct.pack("<HB", params, mode) + bytes(2 * params if mode else 0) + p)
        if code == COM["CHANGE_USER"]:
            for sel in (0x03, 0x07, 0x00):
                seeds.add("change_user", bytes([sel]) + p)
        if code == COM["QUERY"] and b"gtid" in p.lower():
            values = [v for v in text_values([ev[4] for ev in resp]) if v]
            for v in values:
                seeds.add("position", v)
            if len(values) >= 2:
                seeds.add("position", values[0] + b"\0" + values[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--master", type=int, required=True)
    ap.add_argument("--proxy", type=int)
    ap.add_argument("--admin", type=int)
    ap.add_argument("--admin-user", default="admin")
    ap.add_argument("--admin-password", default="adminpw")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config-seeds", nargs="*", default=[])
    args = ap.parse_args()

    relays = [Relay(args.master, "master")]
    if args.proxy:
        relays.append(Relay(args.proxy, "proxy"))
    admin = Relay(args.admin, "admin") if args.admin else None
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write("delta,4.5\n")
        infile = f.name
    try:
        for relay in relays:
            port = relay.port
            for caps in (Raw.FULL, Raw.FULL & ~(DEPRECATE_EOF | SESSION_TRACK)):
                try:
                    raw_session(port, caps, infile)
                except (OSError, EOFError, AssertionError, struct.error, ValueError) as e:
                    print(f"capture: raw session via {relay.label} (caps {caps:#x}) ended early: {e}", file=sys.stderr)
            raw_logins(port)
            mariadb_cli(port, "app", "apppw", CLI_SQL, db="app")
            mariadb_cli(port, "app", "apppw", CLI_SQL, "--compress", db="app")
            mariadb_cli(port, "app", "apppw", "SELECT REPEAT('c', 3000), 1; SELECT * FROM fz_t", "--compress",
                        db="app")
            mariadb_cli(port, "app", "apppw",
                        f"LOAD DATA LOCAL INFILE '{infile}' INTO TABLE fz_t FIELDS TERMINATED BY ',' (name, price)",
                        "--local-infile=1", db="app")
            mariadb_cli(port, "app", "wrong", "SELECT 1")
            try:
                connector_session(port)
            except Exception as e:  # noqa: BLE001 - what was captured until then is kept
                print(f"capture: Connector/Python via {relay.label}: {e}", file=sys.stderr)
        if admin:
            for sql in ("SHOW BACKENDS", "SHOW POOLS", "SHOW CLIENTS", "SHOW CONFIG",
                        "SET BACKEND '127.0.0.1:1' OFFLINE", "SELECT @@version_comment, 1", "SHOW NONSENSE"):
                mariadb_cli(admin.port, args.admin_user, args.admin_password, sql)
            relays.append(admin)
        time.sleep(0.5)
        for relay in relays:
            relay.wait()
    finally:
        os.unlink(infile)

    seeds = Seeds(args.out)
    stmt_params = {}
    for relay in relays:
        for conn in relay.conns:
            analyse(conn, seeds, stmt_params)
    # MariaDB has no MySQL GTID sets or tags to capture: these are written as MySQL 8.0/8.4 prints them.
    for text in (b"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7",
                 b"3E11FA47-71CA-11E1-9E33-C80AA9429562:1-3,\n4a6d33ef-11ca-11e1-9e33-c80aa9429562:12:14-20",
                 b"3e11fa47-71ca-11e1-9e33-c80aa9429562:tag_1:1-3\x003e11fa47-71ca-11e1-9e33-c80aa9429562:1-9",
                 b"mysql-bin.000012:4711"):
        seeds.add("position", text)
    for path in args.config_seeds:
        with open(path, "rb") as f:
            seeds.add("config", f.read())
    for target in sorted(seeds.count):
        print(f"capture: {target}: {seeds.count[target]} new seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
