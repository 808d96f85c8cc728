#!/usr/bin/env node
// Node mysql2 against rwsplit (run by tests/drivers.rs; install the driver with tests/drivers/install.sh).
//
// Environment: PROXY_HOST (default 127.0.0.1), PROXY_PORT (required), MASTER_PORT (the master directly, for
// comparisons; optional), DB (required: a database writable by app), DIRECT=1 when PROXY_PORT is the master
// itself (checks the script: replica assertions are skipped and nothing is compared). Accounts app/apppw and
// root/rootpw (APP_USER, APP_PASSWORD, ROOT_USER, ROOT_PASSWORD override them).
//
// Prints one line per check, `ok NAME` or `FAIL NAME: why`, and exits 1 if any check failed. Every check runs
// through rwsplit and then, unless DIRECT=1, directly against the master: a failure direct against the master
// means the check itself (or the sandbox) is wrong; where the observable result is comparable, the two must
// be equal. Each run of a check has its own connections and a time limit: a hang is a failure.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

let mysql;
let mysql2Version = '?';
try {
  mysql = require('mysql2/promise');
  mysql2Version = require('mysql2/package.json').version;
} catch (e) {
  console.log(`FAIL setup: cannot load mysql2 (run tests/drivers/install.sh): ${oneLine(e.message)}`);
  process.exit(1);
}

const env = process.env;
const HOST = env.PROXY_HOST || '127.0.0.1';
const DIRECT = env.DIRECT === '1';
const DB = env.DB;
const APP = { user: env.APP_USER || 'app', password: env.APP_PASSWORD || 'apppw' };
const ROOT = { user: env.ROOT_USER || 'root', password: env.ROOT_PASSWORD || 'rootpw' };
const MIB = 1024 * 1024;
const BLOB_BYTES = 33 * MIB;
const QUERY_TIMEOUT_MS = 20000;
const WATCHDOG_MS = 10 * 60 * 1000;

if (!env.PROXY_PORT || !DB) {
  console.log('FAIL setup: PROXY_PORT and DB must be set');
  process.exit(1);
}

// Where each check runs: through rwsplit, then directly against the master.
const targets = DIRECT
  ? [{ key: 'direct', label: 'direct against the master', host: HOST, port: +env.PROXY_PORT, direct: true }]
  : [{ key: 'proxy', label: 'through rwsplit', host: HOST, port: +env.PROXY_PORT, direct: false }].concat(
      env.MASTER_PORT
        ? [{ key: 'master', label: 'direct against the master', host: env.MASTER_HOST || HOST,
             port: +env.MASTER_PORT, direct: true }]
        : []
    );
// Names of this run's tables and procedures: unique per run and per target (both share DB).
const TAG = `m2_${crypto.randomBytes(3).toString('hex')}`;

function oneLine(s) {
  return String(s).replace(/\s+/g, ' ').trim();
}

function describe(e) {
  if (!(e instanceof Error)) return oneLine(e);
  const parts = [];
  if (e.errno) parts.push(`error ${e.errno}`);
  if (e.code && e.code !== 'ERR' && !String(e.errno).includes(e.code)) parts.push(`(${e.code})`);
  parts.push(e.sqlMessage || e.message);
  return oneLine(parts.join(' '));
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function md5(buf) {
  return crypto.createHash('md5').update(buf).digest('hex');
}

// What one run of a check uses: its target, its connections (all destroyed at the end, so a timed-out run
// cannot linger), and names unique to it.
class Ctx {
  constructor(target) {
    this.target = target;
    this.conns = [];
  }

  name(what) {
    return `${TAG}_${this.target.key}_${what}`;
  }

  async connect(extra = {}) {
    const conn = await mysql.createConnection({
      host: this.target.host,
      port: this.target.port,
      user: APP.user,
      password: APP.password,
      database: DB,
      connectTimeout: 10000,
      ...extra,
    });
    // An error event without a listener would crash the process; errors reach the awaiting code anyway.
    conn.on('error', () => {});
    conn.connection.on('error', () => {});
    this.conns.push(conn);
    return conn;
  }

  destroyAll() {
    for (const c of this.conns) {
      try {
        c.destroy();
      } catch (_) {
        // already gone
      }
    }
    this.conns = [];
  }
}

async function q(conn, sql, values, timeout = QUERY_TIMEOUT_MS) {
  return conn.query({ sql, timeout }, values);
}

async function one(conn, sql, values, timeout) {
  const [rows] = await q(conn, sql, values, timeout);
  if (!Array.isArray(rows) || rows.length !== 1) {
    throw new Error(`${sql.slice(0, 80)}: expected one row, got ${JSON.stringify(rows).slice(0, 200)}`);
  }
  return rows[0];
}

async function serverIdOf(conn) {
  try {
    return (await one(conn, 'SELECT @@server_id AS sid')).sid;
  } catch (e) {
    return `unknown (${describe(e)})`;
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s (hang)`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

let failures = 0;

// Runs `fn(ctx)` on every target; `compare`: the values it returns must be equal on all targets.
async function check(name, fn, { timeoutMs = 60000, compare = true } = {}) {
  const results = [];
  for (const target of targets) {
    const ctx = new Ctx(target);
    const started = Date.now();
    try {
      const value = await withTimeout(fn(ctx), timeoutMs, name);
      results.push({ target, ok: true, value });
    } catch (e) {
      results.push({ target, ok: false, why: `${describe(e)} (after ${((Date.now() - started) / 1000).toFixed(1)} s)` });
    } finally {
      ctx.destroyAll();
    }
  }
  const problems = [];
  for (const r of results) {
    if (!r.ok) {
      const blame = r.target.direct && !DIRECT ? ' (so the check itself or the sandbox is wrong)' : '';
      problems.push(`${r.target.label}${blame}: ${r.why}`);
    }
  }
  if (problems.length === 0 && compare && results.length > 1) {
    const shown = results.map((r) => JSON.stringify(r.value));
    if (shown.some((s) => s !== shown[0])) {
      problems.push(results.map((r, i) => `${r.target.label} gave ${shown[i]}`).join(', '));
    }
  }
  if (problems.length === 0) {
    console.log(`ok ${name}`);
  } else {
    failures += 1;
    console.log(`FAIL ${name}: ${oneLine(problems.join('; '))}`);
  }
}

// 1. The connection id of the handshake is the one SELECT CONNECTION_ID() reports.
async function handshakeConnectionId(ctx) {
  const c = await ctx.connect();
  const announced = c.threadId;
  const { id } = await one(c, 'SELECT CONNECTION_ID() AS id');
  if (Number(id) !== announced) {
    throw new Error(`the handshake announced connection id ${announced}, SELECT CONNECTION_ID() returned ${id}`);
  }
  return 'equal';
}

// 2. KILL QUERY <CONNECTION_ID() of the victim> from a second connection interrupts SELECT SLEEP(10).
async function killQuery(ctx) {
  const victim = await ctx.connect();
  const killer = await ctx.connect();
  const { id } = await one(victim, 'SELECT CONNECTION_ID() AS id');
  const started = Date.now();
  const sleeping = q(victim, 'SELECT SLEEP(10) AS s').then(
    ([rows]) => ({ rows }),
    (err) => ({ err })
  );
  await delay(700);
  try {
    await q(killer, `KILL QUERY ${id}`);
  } catch (e) {
    throw new Error(`KILL QUERY ${id} (the victim's CONNECTION_ID()) failed: ${describe(e)}`);
  }
  const r = await sleeping;
  const elapsed = (Date.now() - started) / 1000;
  let outcome;
  if (r.err) {
    if (r.err.errno !== 1317) {
      throw new Error(`the victim's SELECT SLEEP(10) failed with ${describe(r.err)}, expected error 1317`);
    }
    outcome = 'error 1317';
  } else {
    const s = r.rows[0] && r.rows[0].s;
    if (Number(s) !== 1) {
      throw new Error(`SELECT SLEEP(10) was not interrupted: returned ${s} after ${elapsed.toFixed(1)} s`);
    }
    outcome = 'SLEEP returned 1';
  }
  if (elapsed > 3) {
    throw new Error(`the victim's SELECT SLEEP(10) ended (${outcome}) only after ${elapsed.toFixed(1)} s`);
  }
  let x;
  try {
    x = (await one(victim, 'SELECT 1 + 1 AS x')).x;
  } catch (e) {
    throw new Error(`the victim connection is unusable after the KILL QUERY (${outcome}): ${describe(e)}`);
  }
  if (Number(x) !== 2) throw new Error(`after the KILL QUERY, SELECT 1 + 1 returned ${x}`);
  return outcome;
}

// 3. COM_CHANGE_USER to root and back to app.
async function changeUser(ctx) {
  const c = await ctx.connect();
  const who = async () => (await one(c, 'SELECT CURRENT_USER() AS u')).u;
  const seen = [await who()];
  await c.changeUser({ user: ROOT.user, password: ROOT.password, database: DB });
  seen.push(await who());
  await c.changeUser({ user: APP.user, password: APP.password, database: DB });
  seen.push(await who());
  const expected = [APP.user, ROOT.user, APP.user];
  seen.forEach((u, i) => {
    if (typeof u !== 'string' || !u.startsWith(`${expected[i]}@`)) {
      throw new Error(`CURRENT_USER() went ${seen.join(' -> ')}, expected ${expected.join('@… -> ')}@…`);
    }
  });
  const { d } = await one(c, 'SELECT DATABASE() AS d');
  if (d !== DB) throw new Error(`after changing back to ${APP.user}, DATABASE() is ${d}, expected ${DB}`);
  return seen.join(' -> ');
}

// 4. The compressed protocol: several queries, a 5 MiB value, a multi-row result, a write.
async function compression(ctx) {
  const c = await ctx.connect({ compress: true });
  const r1 = await one(c, "SELECT 1 AS one, 'compressed' AS s");
  if (Number(r1.one) !== 1 || r1.s !== 'compressed') throw new Error(`SELECT 1 returned ${JSON.stringify(r1)}`);
  const n = 5 * MIB;
  const { r } = await one(c, `SELECT REPEAT('x', ${n}) AS r`);
  if (typeof r !== 'string' || r.length !== n || !/^x*$/.test(r)) {
    throw new Error(`SELECT REPEAT('x', ${n}) returned ${typeof r} of length ${r && r.length}`);
  }
  const [rows] = await q(c, "SELECT seq, CONCAT('row', seq) AS v FROM seq_1_to_3000");
  if (rows.length !== 3000) throw new Error(`the 3000-row result has ${rows.length} rows`);
  rows.forEach((row, i) => {
    if (Number(row.seq) !== i + 1 || row.v !== `row${i + 1}`) {
      throw new Error(`row ${i + 1} of the multi-row result is ${JSON.stringify(row)}`);
    }
  });
  const t = ctx.name('cmp');
  await q(c, `CREATE TABLE ${t} (id INT PRIMARY KEY, v VARCHAR(64))`);
  await q(c, `INSERT INTO ${t} SELECT seq, MD5(seq) FROM seq_1_to_200`);
  const agg = await one(c, `SELECT /* rwsplit:master */ COUNT(*) AS n, MD5(GROUP_CONCAT(v ORDER BY id)) AS m FROM ${t}`);
  if (Number(agg.n) !== 200) throw new Error(`the compressed INSERT … SELECT left ${agg.n} rows, expected 200`);
  // mysql2 silently falls back to the plain protocol when the server does not offer CLIENT_COMPRESS.
  if (!c.connection.config.compress) {
    throw new Error(
      'every query returned correct values, but the server did not offer CLIENT_COMPRESS, so mysql2 ' +
        'silently used the uncompressed protocol'
    );
  }
  return `${r.length} x, ${rows.length} rows, ${agg.n} rows md5 ${agg.m}`;
}

// 5. A 33 MiB random blob INSERTed as an escaped _binary'…' literal through the text protocol (as PyMySQL
// and Connector/Python do; mysql2's own escaping sends Buffers as X'hex', twice the size), read back.
function escapeBytes(buf) {
  const out = Buffer.allocUnsafe(buf.length * 2);
  let o = 0;
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    let e = -1;
    switch (b) {
      case 0x00: e = 0x30; break; // \0
      case 0x0a: e = 0x6e; break; // \n
      case 0x0d: e = 0x72; break; // \r
      case 0x1a: e = 0x5a; break; // \Z
      case 0x22: e = 0x22; break; // \"
      case 0x27: e = 0x27; break; // \'
      case 0x5c: e = 0x5c; break; // \\
      default: break;
    }
    if (e >= 0) {
      out[o++] = 0x5c;
      out[o++] = e;
    } else {
      out[o++] = b;
    }
  }
  return out.subarray(0, o);
}

async function largeBlob(ctx) {
  const data = crypto.randomBytes(BLOB_BYTES);
  const want = `${data.length} ${md5(data)}`;
  const t = ctx.name('blob');
  const setup = await ctx.connect();
  await q(setup, `CREATE TABLE ${t} (id INT PRIMARY KEY, b LONGBLOB)`);
  // latin1 is Node's byte-for-byte encoding, so the escaped bytes reach the server unchanged; after the
  // _binary introducer the server takes them as they are, whatever the connection's character set.
  const writer = await ctx.connect({ charset: 'LATIN1_SWEDISH_CI' });
  const sql = `INSERT INTO ${t} (id, b) VALUES (1, _binary'${escapeBytes(data).toString('latin1')}')`;
  try {
    await q(writer, sql, undefined, 120000);
  } catch (e) {
    throw new Error(`INSERT of the ${BLOB_BYTES / MIB} MiB blob (a ${(sql.length / MIB).toFixed(1)} MiB COM_QUERY) failed: ${describe(e)}`);
  }
  const reader = await ctx.connect();
  const onMaster = await one(reader, `SELECT /* rwsplit:master */ LENGTH(b) AS n, MD5(b) AS m FROM ${t} WHERE id = 1`);
  if (`${onMaster.n} ${onMaster.m}` !== want) {
    throw new Error(`the master holds ${onMaster.n} bytes md5 ${onMaster.m}, sent ${want}`);
  }
  // The writer reads its own write back (rwsplit's default read-your-writes: a replica that has applied it,
  // or the master).
  const { b } = await one(writer, `SELECT b FROM ${t} WHERE id = 1`, undefined, 120000);
  const got = Buffer.isBuffer(b) ? `${b.length} ${md5(b)}` : `a ${typeof b}`;
  if (got !== want) {
    throw new Error(`read back ${got} (server_id ${await serverIdOf(writer)}), sent ${want}`);
  }
  return 'identical';
}

// 6. LOAD DATA LOCAL INFILE of a small CSV.
async function localInfile(ctx) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rwsplit-mysql2-'));
  const file = path.join(dir, 'rows.csv');
  fs.writeFileSync(file, '1,alpha\n2,beta\n3,gamma\n');
  try {
    const t = ctx.name('infile');
    const c = await ctx.connect({ infileStreamFactory: (p) => fs.createReadStream(p) });
    await q(c, `CREATE TABLE ${t} (a INT PRIMARY KEY, b VARCHAR(20))`);
    const [res] = await q(
      c,
      `LOAD DATA LOCAL INFILE ${c.escape(file)} INTO TABLE ${t} FIELDS TERMINATED BY ',' LINES TERMINATED BY '\\n' (a, b)`
    );
    if (res.affectedRows !== 3) throw new Error(`LOAD DATA LOCAL INFILE reported ${res.affectedRows} rows, expected 3`);
    const r = await one(c, `SELECT /* rwsplit:master */ COUNT(*) AS n, GROUP_CONCAT(b ORDER BY a) AS v FROM ${t}`);
    if (Number(r.n) !== 3 || r.v !== 'alpha,beta,gamma') {
      throw new Error(`after LOAD DATA LOCAL INFILE the table holds ${r.n} rows (${r.v})`);
    }
    return `${r.n} rows: ${r.v}`;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// 7. An OUT parameter of a stored procedure, read with SELECT @o on the same connection.
async function outParams(ctx) {
  const p = ctx.name('p_out');
  const c = await ctx.connect();
  await q(c, `CREATE PROCEDURE ${p}(OUT o INT) BEGIN SET o = 42; END`);
  await q(c, `CALL ${p}(@o)`);
  const { o } = await one(c, 'SELECT @o AS o');
  if (Number(o) !== 42 || o === null) {
    throw new Error(`CALL ${p}(@o); SELECT @o returned ${o} (SELECT @@server_id now says ${await serverIdOf(c)}), expected 42`);
  }
  return Number(o);
}

// 8. A prepared (binary-protocol) SET time_zone = ?, then a plain read that must run on a replica.
async function preparedSet(ctx, readFirst) {
  const c = await ctx.connect();
  if (readFirst) await one(c, 'SELECT @@server_id AS sid');
  await c.execute({ sql: 'SET time_zone = ?', timeout: QUERY_TIMEOUT_MS }, ['+05:00']);
  const { tz, sid } = await one(c, 'SELECT @@time_zone AS tz, @@server_id AS sid');
  if (!ctx.target.direct && Number(sid) !== 2 && Number(sid) !== 3) {
    throw new Error(`SELECT @@time_zone, @@server_id ran on server_id ${sid}, expected a replica (2 or 3); time_zone ${tz}`);
  }
  if (tz !== '+05:00') throw new Error(`@@time_zone is ${tz} on server_id ${sid} after the prepared SET, expected +05:00`);
  return tz;
}

async function main() {
  const watchdog = setTimeout(() => {
    console.log(`FAIL watchdog: the checks did not finish within ${WATCHDOG_MS / 1000} s`);
    process.exit(1);
  }, WATCHDOG_MS);
  console.log(`# mysql2 ${mysql2Version}, node ${process.version}, ${targets.map((t) => `${t.label} ${t.host}:${t.port}`).join(', ')}, db ${DB}`);
  await check('handshake_connection_id', handshakeConnectionId, { compare: false });
  await check('kill_query', killQuery, { compare: false });
  await check('change_user', changeUser);
  await check('compression', compression, { timeoutMs: 90000 });
  await check('blob_33m', largeBlob, { timeoutMs: 180000 });
  await check('local_infile', localInfile);
  await check('out_params', outParams);
  await check('prepared_set_time_zone', (ctx) => preparedSet(ctx, false));
  await check('prepared_set_time_zone_after_read', (ctx) => preparedSet(ctx, true));
  clearTimeout(watchdog);
  console.log(failures === 0 ? '# all checks passed' : `# ${failures} check(s) failed`);
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((e) => {
  console.log(`FAIL internal: ${describe(e)} ${oneLine(e.stack || '')}`);
  process.exit(1);
});
