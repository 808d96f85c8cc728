//! The wire as a client sees it, over raw connections, direct and through rwsplit: status packets with and
//! without session tracking, the compressed protocol (several packets per compressed packet, packets split
//! across compressed packets, payloads over 16 MiB), transports rwsplit does not offer, long data that
//! cannot be delivered, packet limits, and a COMMIT with nothing to commit.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use common::proxy::{config_yaml, Proxy};
use common::raw::{error_of, read_frame, try_login, write_frame, Raw};
use common::{mariadb_cli, unique_name, Topology, APP_PASSWORD, APP_USER};
use mysql_async::prelude::Queryable;
use rwsplit_wire::compress::{Compressor, Decompressor};
use rwsplit_wire::packet::{ErrPacket, OkPacket, StateChange};
use rwsplit_wire::walk::{Expect, Step, Walker};
use rwsplit_wire::{auth, CapabilityFlags, Frame, FrameCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

fn query(sql: &str) -> Vec<u8> {
    [&[0x03][..], sql.as_bytes()].concat()
}

/// What a client learns from a status packet: counts, status, warnings, message, and the session-state
/// entries as a set (servers list them in no defined order). GTIDs are masked (each server has its own).
fn status_view(p: &[u8], session_track: bool) -> String {
    let Some(ok) = OkPacket::parse(p, session_track) else {
        return format!("not OK: {p:?}");
    };
    let mut entries: Vec<String> = ok
        .changes()
        .map(|c| match c {
            StateChange::SystemVariable { name, value } => {
                let value = String::from_utf8_lossy(value);
                let value = if name == b"last_gtid" { "<gtid>".into() } else { value };
                format!("var {}={value}", String::from_utf8_lossy(name))
            }
            other => format!("{other:?}"),
        })
        .collect();
    entries.sort();
    format!(
        "header {} counts {:?} status {:#06x} warnings {} info {:?} state {entries:?}",
        ok.header,
        ok.counts,
        ok.status.bits(),
        ok.warnings,
        String::from_utf8_lossy(ok.info)
    )
}

/// Every OK and EOF packet a client gets is what the server would have sent it: with and without session
/// tracking and DEPRECATE_EOF, for statements that change session state, transactions, and a client that
/// changes its own trackers.
#[tokio::test(flavor = "multi_thread")]
async fn status_packets_are_what_the_server_sends() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = unique_name("st");
    // Not CLIENT_NO_SCHEMA: with it the server refuses `db.table` names.
    let base = auth::supported_capabilities() - CapabilityFlags::CLIENT_NO_SCHEMA;
    let mut setup = Raw::login(topo.master, "root", "rootpw", Some(base)).await;
    for sql in [
        format!("CREATE DATABASE {db}"),
        format!("CREATE TABLE {db}.t_direct (id INT PRIMARY KEY, v INT)"),
        format!("CREATE TABLE {db}.t_proxy (id INT PRIMARY KEY, v INT)"),
        format!("GRANT ALL ON {db}.* TO 'app'@'%'"),
    ] {
        let resp = setup.command(&query(&sql), Expect::ResultSets).await;
        assert!(error_of(&resp).is_none(), "{sql}: {:?}", error_of(&resp));
    }
    topo.wait_replicated().await;
    let stmts = [
        format!("USE {db}"),
        "SET time_zone = '+01:00'".into(),
        "SET @a = 1".into(),
        "SET autocommit = 0".into(),
        "SET autocommit = 1".into(),
        "INSERT INTO {t} VALUES (1, 1), (2, 2)".into(),
        "UPDATE {t} SET v = v + 1".into(),
        "BEGIN".into(),
        "INSERT INTO {t} VALUES (3, 3)".into(),
        "SELECT 1".into(),
        "COMMIT".into(),
        "SET SESSION sql_mode = 'ANSI_QUOTES'".into(),
        "SET SESSION sql_mode = DEFAULT".into(),
        "CREATE TEMPORARY TABLE tmp (a INT)".into(),
        "DROP TEMPORARY TABLE tmp".into(),
        "SET SESSION session_track_state_change = ON".into(),
        "SET @b = 2".into(),
        "SET SESSION session_track_system_variables = 'last_gtid,time_zone'".into(),
        "INSERT INTO {t} VALUES (4, 4)".into(),
        "SET time_zone = '+02:00'".into(),
        "SET wait_timeout = 100".into(),
    ];
    let combos = [
        base,
        base - CapabilityFlags::CLIENT_DEPRECATE_EOF,
        base - CapabilityFlags::CLIENT_SESSION_TRACK,
        base - CapabilityFlags::CLIENT_SESSION_TRACK - CapabilityFlags::CLIENT_DEPRECATE_EOF,
    ];
    for caps in combos {
        for t in ["t_direct", "t_proxy"] {
            assert!(
                error_of(&setup.command(&query(&format!("DELETE FROM {db}.{t}")), Expect::ResultSets).await).is_none()
            );
        }
        topo.wait_replicated().await;
        let session_track = caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK);
        let mut d = Raw::login(topo.master, APP_USER, APP_PASSWORD, Some(caps)).await;
        let mut p = Raw::login(proxy.addr, APP_USER, APP_PASSWORD, Some(caps)).await;
        for (n, sql) in stmts.iter().enumerate() {
            // Each connection writes its own table: the same rows, the same counts.
            let dr = d.command(&query(&sql.replace("{t}", "t_direct")), Expect::ResultSets).await;
            let pr = p.command(&query(&sql.replace("{t}", "t_proxy")), Expect::ResultSets).await;
            let (dl, pl) = (dr.last().unwrap(), pr.last().unwrap());
            assert_eq!(
                status_view(dl, session_track),
                status_view(pl, session_track),
                "{caps:?}: statement {n} `{sql}`: the status packet differs"
            );
            if !session_track && dl.first() != Some(&0xFF) {
                assert_eq!(dl, pl, "without session tracking the packet is byte for byte the server's: `{sql}`");
            }
        }
    }
}

/// A raw client speaking the compressed protocol: logs in with CLIENT_COMPRESS, then sends and reads through
/// the wire crate's codec (whose interop with MariaDB itself is checked below against the master).
struct Compressed {
    stream: TcpStream,
    raw: BytesMut,
    plain: BytesMut,
    decompressor: Decompressor,
    compressor: Compressor,
    /// Next compressed sequence id to send (0 at each new command).
    seq: u8,
    caps: CapabilityFlags,
}

impl Compressed {
    async fn login(addr: SocketAddr) -> Compressed {
        let caps = auth::supported_capabilities() - CapabilityFlags::CLIENT_DEPRECATE_EOF;
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let greeting = read_frame(&mut stream).await.expect("greeting");
        let greeting = auth::parse_greeting(greeting.payload()).expect("greeting parses");
        assert!(greeting.capabilities.contains(CapabilityFlags::CLIENT_COMPRESS), "{addr} offers compression");
        let (mut payload, _) =
            auth::handshake_response(&greeting, &common::raw::login_params(APP_USER, APP_PASSWORD, caps));
        let with = u32::from_le_bytes(payload[..4].try_into().unwrap()) | CapabilityFlags::CLIENT_COMPRESS.bits();
        payload[..4].copy_from_slice(&with.to_le_bytes());
        write_frame(&mut stream, 1, &payload).await.expect("login");
        let ok = read_frame(&mut stream).await.expect("login answer");
        assert_eq!(ok.payload()[0], 0, "login: {:?}", ErrPacket::parse(ok.payload()));
        Compressed {
            stream,
            raw: BytesMut::new(),
            plain: BytesMut::new(),
            decompressor: Decompressor::new(),
            compressor: Compressor::new(),
            seq: 0,
            caps,
        }
    }

    /// Sends `chunks` of the command stream, each as its own compressed packet (ids from 0).
    async fn send_chunks(&mut self, chunks: &[&[u8]]) {
        self.seq = 0;
        let mut out = BytesMut::new();
        for chunk in chunks {
            self.seq = self.compressor.compress(&mut out, self.seq, chunk);
        }
        self.stream.write_all(&out).await.expect("send");
    }

    /// Reads one MySQL frame from the decompressed stream.
    async fn frame(&mut self) -> Frame {
        loop {
            if let Some(f) = FrameCodec.decode(&mut self.plain).expect("frame") {
                return f;
            }
            if self.decompressor.decode(&mut self.raw, &mut self.plain).expect("decompress").is_none() {
                let n = self.stream.read_buf(&mut self.raw).await.expect("read");
                assert!(n > 0, "connection closed");
            }
        }
    }

    /// Reads a whole response, reassembling payloads over 16 MiB; returns the logical packets.
    async fn response(&mut self) -> Vec<Vec<u8>> {
        let mut walker = Walker::new(Expect::ResultSets, self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF));
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut continuing = false;
        loop {
            let frame = self.frame().await;
            let step = walker.feed(&frame).expect("well-formed response");
            if continuing {
                out.last_mut().unwrap().extend_from_slice(frame.payload());
            } else {
                out.push(frame.payload().to_vec());
            }
            continuing = frame.is_continued();
            if matches!(step, Step::Done { .. }) {
                return out;
            }
        }
    }

    /// The first column of the first row of a one-column text result, as a string.
    async fn scalar(&mut self) -> String {
        let resp = self.response().await;
        assert!(error_of(&resp).is_none(), "{:?}", error_of(&resp));
        let row = &resp[3]; // column count, definition, EOF, row
        let (v, _) = rwsplit_wire::packet::lenenc_str(row).expect("a text value");
        String::from_utf8_lossy(v).into_owned()
    }
}

/// Logical packets as the frames that carry them (several for 16 MiB and more).
fn frames_of(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    rwsplit_wire::frame::encode_payload(&mut buf, seq, payload);
    buf.to_vec()
}

/// The compressed protocol on the client leg: commands split across compressed packets (inside a packet
/// header), two commands in one compressed packet, a 20 MB command, a 20 MB result; the same answers as the
/// master gives directly.
#[tokio::test(flavor = "multi_thread")]
async fn compressed_protocol_frames_like_the_server() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    for (label, addr) in [("direct", topo.master), ("rwsplit", proxy.addr)] {
        let mut c = Compressed::login(addr).await;
        c.send_chunks(&[&frames_of(0, &query("SELECT 'compressed'"))]).await;
        assert_eq!(c.scalar().await, "compressed", "{label}");
        // One command cut into three compressed packets, the first cut inside the 4-byte header.
        let cmd = frames_of(0, &query("SELECT CONCAT('split', '-', 'across', '-', 'packets')"));
        c.send_chunks(&[&cmd[..2], &cmd[2..20], &cmd[20..]]).await;
        assert_eq!(c.scalar().await, "split-across-packets", "{label}");
        // A 20 MB command (two MySQL frames), compressed in several chunks.
        let n = 20_000_000;
        let big = frames_of(0, &query(&format!("SELECT LENGTH('{}')", "a".repeat(n))));
        let chunks: Vec<&[u8]> = big.chunks(5_000_000).collect();
        c.send_chunks(&chunks).await;
        assert_eq!(c.scalar().await, n.to_string(), "{label}");
        // A 20 MB result: a logical packet over 16 MiB through compressed packets.
        c.send_chunks(&[&frames_of(0, &query(&format!("SELECT REPEAT('x', {n})")))]).await;
        let value = c.scalar().await;
        assert!(value.len() == n && value.bytes().all(|b| b == b'x'), "{label}: {} bytes", value.len());
    }
    // Two commands in one compressed packet: rwsplit answers both, in order (MariaDB itself refuses the
    // second, so this is rwsplit only).
    let mut c = Compressed::login(proxy.addr).await;
    let both = [frames_of(0, &query("SELECT 'one'")), frames_of(0, &query("SELECT 'two'"))].concat();
    c.send_chunks(&[&both]).await;
    assert_eq!((c.scalar().await, c.scalar().await), ("one".to_string(), "two".to_string()));
    // A command in three compressed packets (ids 0, 1, 2) with the next command pipelined behind it (id 0):
    // the first response is numbered from the packet that ended its command (3), as a server numbers it.
    let mut c = Compressed::login(proxy.addr).await;
    let first = frames_of(0, &query("SELECT 'first'"));
    let mut out = BytesMut::new();
    let seq = [&first[..3], &first[3..10], &first[10..]]
        .iter()
        .fold(0, |seq, chunk| c.compressor.compress(&mut out, seq, chunk));
    assert_eq!(seq, 3);
    c.compressor.compress(&mut out, 0, &frames_of(0, &query("SELECT 'second'")));
    c.stream.write_all(&out).await.unwrap();
    let mut header = [0u8; 7];
    c.stream.read_exact(&mut header).await.unwrap();
    assert_eq!(header[3], 3, "the first response's compressed sequence id");
}

/// The `mariadb` client with `--compress`, including LOCAL INFILE, through rwsplit.
#[tokio::test(flavor = "multi_thread")]
async fn mariadb_client_with_compression() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let db = unique_name("cz");
    let file = std::env::temp_dir().join(format!("{db}.csv"));
    std::fs::write(&file, (1..=500).map(|i| format!("{i},row {i}\n")).collect::<String>()).unwrap();
    // The read goes to the master (a replica may not have the rows yet); --comments keeps the hint.
    let script = format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, v TEXT);\n\
         LOAD DATA LOCAL INFILE '{}' INTO TABLE {db}.t FIELDS TERMINATED BY ',';\n\
         SELECT /* rwsplit:master */ COUNT(*), SUM(id), MAX(LENGTH(REPEAT(v, 10000))) FROM {db}.t;",
        file.display()
    );
    let args = ["--compress", "--local-infile=1", "--comments", "-N"];
    let out = mariadb_cli(proxy.addr, APP_USER, APP_PASSWORD, &args, Some(&script));
    std::fs::remove_file(&file).ok();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "500\t125250\t70000");
}

/// A client that switches to a transport rwsplit does not offer (here TLS: an SSL request) gets error 1043 and
/// a closed connection at once, never a hang.
#[tokio::test(flavor = "multi_thread")]
async fn an_unoffered_transport_gets_an_error_not_a_hang() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let greeting = read_frame(&mut s).await.unwrap();
    let g = auth::parse_greeting(greeting.payload()).unwrap();
    assert!(!g.capabilities.contains(CapabilityFlags::CLIENT_SSL));
    // An SSL request: the first 32 bytes of a handshake response, CLIENT_SSL set.
    let caps = (auth::supported_capabilities() | CapabilityFlags::CLIENT_SSL).bits();
    let mut req = caps.to_le_bytes().to_vec();
    req.extend_from_slice(&(16u32 << 20).to_le_bytes());
    req.push(45);
    req.extend_from_slice(&[0; 23]);
    write_frame(&mut s, 1, &req).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut s)).await.expect("an answer, not a hang");
    let err = ErrPacket::parse(answer.unwrap().payload()).expect("an error");
    assert_eq!(err.code, 1043, "{err}");
    let closed = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut s)).await.expect("closed, not hung");
    assert!(closed.is_err());
}

/// COM_STMT_SEND_LONG_DATA has no answer: when the master cannot take it, nothing is written to the client;
/// the next execute of the statement reports the error, and the protocol stays in step.
#[tokio::test(flavor = "multi_thread")]
async fn long_data_that_cannot_be_delivered_fails_at_execute() {
    let topo = Topology::shared();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let yaml = config_yaml(topo).replace(&format!("address: {}", topo.master), &format!("address: {dead}"));
    let proxy = Proxy::start_yaml(&yaml).await;
    let mut raw = Raw::login(proxy.addr, APP_USER, APP_PASSWORD, None).await;
    let resp = raw.command(&[&[0x16][..], b"SELECT ?"].concat(), Expect::Prepare).await;
    let id = rwsplit_wire::packet::PrepareOk::parse(&resp[0]).expect("prepared on a replica").stmt_id;
    // SEND_LONG_DATA for parameter 0: the master is down.
    let mut long = vec![0x18];
    long.extend_from_slice(&id.to_le_bytes());
    long.extend_from_slice(&0u16.to_le_bytes());
    long.extend_from_slice(b"chunk");
    raw.send(&long).await;
    // The next command's answer is its own (nothing stray came first): a ping.
    let pong = raw.command(&[0x0e], Expect::Single).await;
    assert_eq!(pong[0][0], 0, "COM_PING gets its own OK: {:?}", error_of(&pong));
    // EXECUTE (params bound, type VAR_STRING) gets the long-data failure.
    let mut exec = vec![0x17];
    exec.extend_from_slice(&id.to_le_bytes());
    exec.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, 0xfd, 0]);
    let resp = raw.command(&exec, Expect::ResultSets).await;
    let err = error_of(&resp).expect("the execute reports the failed long data");
    assert_eq!(err.code, 1053, "{err}");
    let one = raw.command(&query("SELECT 1"), Expect::ResultSets).await;
    assert!(error_of(&one).is_none(), "the session goes on");
}

/// `max_allowed_packet` defaults to the master's (256M in the sandbox): a 40 MB statement goes through; a
/// configured limit applies to single frames too (not only to packets of 16 MiB and more).
#[tokio::test(flavor = "multi_thread")]
async fn packet_limits_follow_the_master_unless_configured() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let mut c = proxy.conn().await;
    let n = 40_000_000;
    let len: u64 = c.query_first(format!("SELECT LENGTH('{}')", "b".repeat(n))).await.expect("40 MB").unwrap();
    assert_eq!(len, n as u64);
    let limited = Proxy::start_yaml(&format!("{}max_allowed_packet: 1M\n", config_yaml(topo))).await;
    let mut raw = Raw::login(limited.addr, APP_USER, APP_PASSWORD, None).await;
    write_frame(&mut raw.stream, 0, &query(&format!("SELECT LENGTH('{}')", "c".repeat(2 << 20)))).await.unwrap();
    let err = read_frame(&mut raw.stream).await.unwrap();
    assert_eq!(ErrPacket::parse(err.payload()).map(|e| e.code), Some(1153));
    assert!(read_frame(&mut raw.stream).await.is_err(), "the session is closed after 1153");
}

/// COMMIT and ROLLBACK with nothing to commit and no master connection are answered without opening one.
#[tokio::test(flavor = "multi_thread")]
async fn commit_outside_a_transaction_opens_no_master_connection() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let mut c = proxy.conn().await;
    let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert!(id == 2 || id == 3);
    for sql in ["COMMIT", "ROLLBACK", "COMMIT WORK"] {
        c.query_drop(sql).await.expect(sql);
    }
    let entry = proxy.shared.registry.get(c.id()).expect("registered");
    assert!(entry.backends[0].is_none(), "no master connection was opened: {:?}", entry.backends);
}

/// What the proxy announces in its greeting: the compressed protocol, and never TLS (not offered yet).
#[tokio::test(flavor = "multi_thread")]
async fn the_greeting_offers_compression() {
    let topo = Topology::shared();
    let proxy = Proxy::start(topo).await;
    let (_, answer) = try_login(proxy.addr, APP_USER, APP_PASSWORD, auth::supported_capabilities()).await;
    assert_eq!(answer.payload()[0], 0);
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let g = auth::parse_greeting(read_frame(&mut s).await.unwrap().payload()).unwrap();
    assert!(g.capabilities.contains(CapabilityFlags::CLIENT_COMPRESS));
    assert!(g.connection_id >= 1 << 30, "connection ids start at 2^30: {}", g.connection_id);
}
