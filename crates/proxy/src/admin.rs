//! The admin interface: the MySQL protocol on `admin.listen`, for operators and scripts
//! (`mariadb -h 127.0.0.1 -P 6034 -u admin -p`).
//!
//! Commands (case-insensitive; surrounding whitespace, comments and a trailing `;` are ignored):
//!
//! - `SHOW BACKENDS`: one row per configured backend, the master first, then the replicas in config order:
//!   `address`, `role` (`master` for where writes go now, `replica` otherwise), `reachable` (NULL before the
//!   first probe or without a health checker), `serving` (the master: takes writes; a replica: gets reads),
//!   `offline` (taken out by hand), `lag_seconds`, `weight`, `read_only`, `gtid`, `connections_in_use`,
//!   `connections_idle`, `last_error`, `last_change` (RFC 3339, UTC).
//! - `SHOW POOLS`: `backend`, `in_use`, `idle` per backend.
//! - `SHOW CLIENTS`: one row per client session: `id`, `user`, `peer`, `started`, `master_thread`,
//!   `replica`, `replica_thread`.
//! - `SHOW CONFIG`: `key`, `value`: the running config flattened; passwords always `***`.
//! - `RELOAD`: re-reads the config file. OK with what changed, or error 1105 with every problem (the
//!   running config stays).
//! - `SET BACKEND 'host:port' OFFLINE` / `ONLINE`: takes a replica out of the read rotation by hand (its
//!   sessions move at their next read), or puts it back (it still has to pass the health checks).
//! - `SELECT @@version_comment LIMIT 1`, `SELECT @@var, …`, `SELECT 1`: what clients send on connect and
//!   as pings. `COM_PING` works too.
//!
//! Anything else gets error 1064 listing the commands; prepared statements get 1295, `USE` 1049, other
//! protocol commands 1047. Nothing is ever acknowledged with an OK it did not do.
//!
//! Login: `admin.user` / `admin.password` of the config in force at login, `mysql_native_password` against
//! a random nonce per connection. A wrong user or password gets error 1045.
//!
//! How a connection runs: `opensrv-mysql` speaks the protocol and writes the result sets (the data path
//! never uses it) over an in-memory pipe. A small relay between the client socket and the pipe corrects two
//! things opensrv does differently from a MySQL server: it refuses a login with error 1698 (the relay sends
//! 1045) and acknowledges protocol commands it does not know with an OK (the relay answers them itself with
//! an error, before they reach opensrv).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use opensrv_mysql::{
    AsyncMysqlIntermediary, AsyncMysqlShim, Column, ColumnFlags, ColumnType, ErrorKind, InitWriter, OkResponse,
    ParamParser, QueryResultWriter, StatementMetaWriter,
};
use rwsplit_wire::auth::{new_scramble, verify_scramble, NATIVE};
use rwsplit_wire::packet::{com, err_payload, ERR, OK};
use rwsplit_wire::{CapabilityFlags, Frame, FrameCodec, MAX_PAYLOAD};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, Health, LagSource, WhenNoReplica};
use crate::health::Snapshot;
use crate::Shared;

/// The server version announced to admin clients.
const VERSION: &str = concat!("5.7.0-rwsplit-admin-", env!("CARGO_PKG_VERSION"));
/// `@@version_comment`, which the `mariadb` client prints after the version.
const VERSION_COMMENT: &str = "rwsplit admin";
/// What every unknown command's error lists.
const USAGE: &str = "supported: SHOW BACKENDS, SHOW POOLS, SHOW CLIENTS, SHOW CONFIG, RELOAD, \
                     SET BACKEND 'host:port' OFFLINE|ONLINE";
/// How passwords appear in `SHOW CONFIG`.
const MASK: &str = "***";
/// `@@max_allowed_packet` as announced (opensrv answers a lone `SELECT @@max_allowed_packet` with this).
const MAX_PACKET: i64 = 64 << 20;
/// Buffer of each direction of the in-memory pipe between the relay and opensrv.
const PIPE_BUFFER: usize = 64 * 1024;
/// Time a client has to log in before the connection is closed.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the admin interface until `cancel`; open admin connections end with it.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, cancel: CancellationToken) {
    crate::accept_loop(&listener, &cancel, "admin", |stream, peer| {
        let (shared, cancel) = (Arc::clone(&shared), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = connection(shared, stream, peer) => {}
                _ = cancel.cancelled() => {}
            }
        });
    })
    .await;
}

/// Runs one admin connection: opensrv over an in-memory pipe, the relay between the pipe and the client.
async fn connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    static NEXT_ID: AtomicU32 = AtomicU32::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("admin", id, %peer);
    async move {
        let _ = stream.set_nodelay(true);
        let denial = Arc::new(Mutex::new(None));
        let (near, far) = tokio::io::duplex(PIPE_BUFFER);
        let (far_read, far_write) = tokio::io::split(far);
        let shim = Shim { shared, salt: new_scramble(), id, peer, denial: Arc::clone(&denial) };
        // Each side ends when the other does: a finished future drops its end of the pipe.
        let (served, relayed) =
            tokio::join!(AsyncMysqlIntermediary::run_on(shim, far_read, far_write), relay(stream, near, &denial));
        // A refused login was logged when it was checked.
        match (served, relayed) {
            (Ok(()), Ok(())) => tracing::debug!("admin connection closed"),
            (Err(e), _) | (_, Err(e)) => tracing::debug!(error = %e, "admin connection ended"),
        }
    }
    .instrument(span)
    .await
}

/// What the relay does with a command frame from a logged-in client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Pass it to opensrv.
    Forward,
    /// Drop it: the protocol expects no reply (closing or feeding a statement that cannot exist).
    Swallow,
    /// Answer it with this error (code, SQLSTATE, message) instead of opensrv's fake OK.
    Refuse(u16, &'static [u8; 5], &'static str),
}

/// The relay's decision for a command payload (the first frame of a command).
fn command_action(payload: &[u8]) -> Action {
    // opensrv drops the connection on text that is not UTF-8; a frame of MAX_PAYLOAD bytes is continued and
    // may end inside a character.
    let bad_text = payload.len() < MAX_PAYLOAD && std::str::from_utf8(payload.get(1..).unwrap_or_default()).is_err();
    match payload.first().copied() {
        Some(com::QUERY | com::INIT_DB | com::STMT_PREPARE) if bad_text => {
            Action::Refuse(1300, b"HY000", "Invalid utf8 character string in the command")
        }
        Some(com::QUERY | com::INIT_DB | com::PING | com::QUIT | com::STMT_PREPARE) => Action::Forward,
        Some(com::STMT_CLOSE | com::STMT_SEND_LONG_DATA) => Action::Swallow,
        Some(com::STMT_EXECUTE | com::STMT_RESET | com::STMT_FETCH) => {
            Action::Refuse(1243, b"HY000", "Unknown prepared statement handler (the admin interface has none)")
        }
        Some(com::FIELD_LIST) => Action::Refuse(1046, b"3D000", "No database selected"),
        _ => Action::Refuse(1047, b"08S01", "Unknown command"),
    }
}

/// The relay's view of the connection: login done or not, and the rest of a refused long command to drop.
#[derive(Debug, Default)]
struct Gate {
    /// The client's handshake response went through.
    responded: bool,
    /// opensrv sent the OK that ends the login.
    logged_in: bool,
    /// The frames that follow belong to a refused command of 16 MiB or more.
    skipping: bool,
}

impl Gate {
    /// Adds `CLIENT_SESSION_TRACK` to the capabilities in the client's handshake response (the first client
    /// frame). opensrv then writes an OK packet's message as a length-encoded string, as MySQL servers always
    /// do and clients expect; without the flag it writes the bare text, which drivers misread.
    fn handshake_response(&mut self, frame: Frame) -> Frame {
        let payload = frame.payload();
        if std::mem::replace(&mut self.responded, true) || payload.len() < 4 {
            return frame;
        }
        let caps = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
        if caps & CapabilityFlags::CLIENT_PROTOCOL_41.bits() == 0 {
            return frame;
        }
        let mut payload = payload.to_vec();
        payload[..4].copy_from_slice(&(caps | CapabilityFlags::CLIENT_SESSION_TRACK.bits()).to_le_bytes());
        Frame::new(frame.seq(), &payload)
    }

    /// Decides what to do with a frame from the client. Only the first frame of a command, once logged in,
    /// is inspected; login packets and continuation frames pass.
    fn client_frame(&mut self, frame: &Frame) -> Action {
        if self.skipping {
            self.skipping = frame.is_continued();
            return Action::Swallow;
        }
        if !self.logged_in || frame.seq() != 0 {
            return Action::Forward;
        }
        let action = command_action(frame.payload());
        self.skipping = action != Action::Forward && frame.is_continued();
        action
    }

    /// Passes a frame from opensrv, noting the end of the login and replacing a login refusal (error 1698)
    /// with the error a MySQL server sends (1045, message prepared by [`Shim::authenticate`]).
    fn server_frame(&mut self, frame: Frame, denial: &Mutex<Option<String>>) -> Frame {
        if self.logged_in {
            return frame;
        }
        match frame.payload().first().copied() {
            Some(OK) => self.logged_in = true,
            Some(ERR) => {
                if let Some(message) = denial.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    return Frame::new(frame.seq(), &err_payload(1045, b"28000", &message));
                }
            }
            _ => {}
        }
        frame
    }
}

/// Frames from one side of the relay. Cancel-safe: the only await is `read_buf`, which is.
struct FrameReader<R> {
    /// The byte stream.
    inner: R,
    /// Bytes read and not yet decoded.
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a byte stream.
    fn new(inner: R) -> Self {
        FrameReader { inner, buf: BytesMut::with_capacity(4096) }
    }

    /// The next frame, or `None` at the end of the stream.
    async fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = FrameCodec.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

/// Copies frames between the client and opensrv until either side ends (or the client does not log in
/// within [`LOGIN_TIMEOUT`]), applying the [`Gate`].
async fn relay(client: TcpStream, pipe: DuplexStream, denial: &Mutex<Option<String>>) -> io::Result<()> {
    let (client_read, mut client_write) = client.into_split();
    let (pipe_read, mut pipe_write) = tokio::io::split(pipe);
    let (mut from_client, mut from_server) = (FrameReader::new(client_read), FrameReader::new(pipe_read));
    let mut gate = Gate::default();
    let login_deadline = tokio::time::Instant::now() + LOGIN_TIMEOUT;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(login_deadline), if !gate.logged_in => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no login within the login timeout"));
            }
            frame = from_client.next() => {
                let Some(frame) = frame? else { return Ok(()) };
                let frame = gate.handshake_response(frame);
                match gate.client_frame(&frame) {
                    Action::Forward => pipe_write.write_all(frame.as_bytes()).await?,
                    Action::Swallow => {}
                    Action::Refuse(code, state, message) => {
                        let reply = Frame::new(frame.seq().wrapping_add(1), &err_payload(code, state, message));
                        client_write.write_all(reply.as_bytes()).await?;
                    }
                }
            }
            frame = from_server.next() => {
                let Some(frame) = frame? else { return Ok(()) };
                client_write.write_all(gate.server_frame(frame, denial).as_bytes()).await?;
            }
        }
    }
}

/// The opensrv output stream of one connection.
type Out = WriteHalf<DuplexStream>;
/// The future type `#[async_trait]` methods return (the trait is implemented without the macro).
type BoxFuture<'f, T> = Pin<Box<dyn Future<Output = T> + Send + 'f>>;

/// One admin connection's handler, driven by opensrv.
struct Shim {
    /// The proxy's state: config, topology, health, pool, sessions.
    shared: Arc<Shared>,
    /// This connection's login nonce (opensrv's default is a constant).
    salt: [u8; 20],
    /// Connection id announced in the greeting.
    id: u32,
    /// The client's address, for the refusal message.
    peer: SocketAddr,
    /// Set when the login is refused: the message the relay sends with error 1045.
    denial: Arc<Mutex<Option<String>>>,
}

impl Shim {
    /// Checks a login against the admin account of the config in force now.
    fn check_login(&self, plugin: &str, user: &[u8], salt: &[u8], response: &[u8]) -> bool {
        let config = self.shared.config.load();
        let ok = config.admin.as_ref().is_some_and(|admin| {
            plugin == NATIVE
                && admin.user.as_bytes() == user
                && verify_scramble(NATIVE, salt, admin.password.expose(), response)
        });
        if !ok {
            let user = String::from_utf8_lossy(user);
            let with_password = if response.is_empty() { "NO" } else { "YES" };
            let message =
                format!("Access denied for user '{user}'@'{}' (using password: {with_password})", self.peer.ip());
            tracing::warn!(%user, "admin login refused: wrong user or password");
            *self.denial.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
        }
        ok
    }

    /// Parses and runs one query.
    fn run(&self, sql: &str) -> Result<Reply, Failure> {
        let command = parse(sql).map_err(|why| Failure::new(ErrorKind::ER_PARSE_ERROR, format!("{why}; {USAGE}")))?;
        match command {
            Command::Reload | Command::SetBackend { .. } => tracing::info!(?command, "admin command"),
            _ => tracing::debug!(?command, "admin command"),
        }
        execute(&self.shared, &command)
    }
}

// `AsyncMysqlShim` is an `#[async_trait]` trait; the proxy does not depend on the macro crate, so the
// methods are written in the form the macro expands to.
impl AsyncMysqlShim<Out> for Shim {
    type Error = io::Error;

    fn version(&self) -> String {
        VERSION.to_string()
    }

    fn connect_id(&self) -> u32 {
        self.id
    }

    fn salt(&self) -> [u8; 20] {
        self.salt
    }

    fn authenticate<'l0, 'l1, 'l2, 'l3, 'l4, 'f>(
        &'l0 self,
        plugin: &'l1 str,
        user: &'l2 [u8],
        salt: &'l3 [u8],
        response: &'l4 [u8],
    ) -> BoxFuture<'f, bool>
    where
        'l0: 'f,
        'l1: 'f,
        'l2: 'f,
        'l3: 'f,
        'l4: 'f,
        Self: 'f,
    {
        let ok = self.check_login(plugin, user, salt, response);
        Box::pin(async move { ok })
    }

    fn on_prepare<'a, 'f>(&'a mut self, _: &'a str, info: StatementMetaWriter<'a, Out>) -> BoxFuture<'f, io::Result<()>>
    where
        'a: 'f,
        Self: 'f,
    {
        let message = "prepared statements are not supported by the admin interface; send the command as text";
        Box::pin(info.error(ErrorKind::ER_UNSUPPORTED_PS, message.as_bytes()))
    }

    fn on_execute<'a, 'f>(
        &'a mut self,
        _: u32,
        _: ParamParser<'a>,
        results: QueryResultWriter<'a, Out>,
    ) -> BoxFuture<'f, io::Result<()>>
    where
        'a: 'f,
        Self: 'f,
    {
        Box::pin(results.error(ErrorKind::ER_UNKNOWN_STMT_HANDLER, b"Unknown prepared statement handler".as_slice()))
    }

    fn on_close<'a, 'f>(&'a mut self, _: u32) -> BoxFuture<'f, ()>
    where
        Out: 'f,
        'a: 'f,
        Self: 'f,
    {
        Box::pin(async {})
    }

    fn on_query<'a, 'f>(
        &'a mut self,
        sql: &'a str,
        results: QueryResultWriter<'a, Out>,
    ) -> BoxFuture<'f, io::Result<()>>
    where
        'a: 'f,
        Self: 'f,
    {
        let outcome = self.run(sql);
        Box::pin(respond(results, outcome))
    }

    fn on_init<'a, 'f>(&'a mut self, db: &'a str, writer: InitWriter<'a, Out>) -> BoxFuture<'f, io::Result<()>>
    where
        'a: 'f,
        Self: 'f,
    {
        let message = format!("Unknown database '{db}' (the admin interface has no databases)");
        Box::pin(async move { writer.error(ErrorKind::ER_BAD_DB_ERROR, message.as_bytes()).await })
    }
}

/// An admin command, as parsed from the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SHOW BACKENDS`.
    ShowBackends,
    /// `SHOW POOLS`.
    ShowPools,
    /// `SHOW CLIENTS`.
    ShowClients,
    /// `SHOW CONFIG`.
    ShowConfig,
    /// `RELOAD`.
    Reload,
    /// `SET BACKEND 'addr' OFFLINE|ONLINE`.
    SetBackend {
        /// The replica's `host:port`, as configured.
        addr: String,
        /// OFFLINE (true) or ONLINE (false).
        offline: bool,
    },
    /// `SELECT @@var, …` or `SELECT 1`.
    Select(Vec<SelectItem>),
}

/// One item of a `SELECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectItem {
    /// The item as written: the column name.
    pub label: String,
    /// What it asks for.
    pub value: SelectValue,
}

/// What a `SELECT` item asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectValue {
    /// A system variable, lowercased, without `session.`/`global.`.
    Variable(String),
    /// An integer literal.
    Integer(i64),
}

/// Parses one admin command. The error says what was not understood.
pub fn parse(sql: &str) -> Result<Command, String> {
    let text = strip_comments(sql)?;
    let text = text.trim().trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    if text.contains(';') {
        return Err("one command at a time".into());
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
    match upper.as_slice() {
        ["SHOW", "BACKENDS"] => Ok(Command::ShowBackends),
        ["SHOW", "POOLS"] => Ok(Command::ShowPools),
        ["SHOW", "CLIENTS"] => Ok(Command::ShowClients),
        ["SHOW", "CONFIG"] => Ok(Command::ShowConfig),
        ["RELOAD"] | ["RELOAD", "CONFIG"] => Ok(Command::Reload),
        ["SET", "BACKEND", _, state @ ("OFFLINE" | "ONLINE")] => {
            Ok(Command::SetBackend { addr: unquote(words[2])?, offline: *state == "OFFLINE" })
        }
        ["SELECT", ..] => parse_select(&text["SELECT".len()..]),
        [] => Err("empty query".into()),
        _ => Err(format!("unknown command '{}'", text.chars().take(80).collect::<String>())),
    }
}

/// Removes `/* … */`, `-- …` and `# …` comments outside quotes (each becomes a space).
fn strip_comments(sql: &str) -> Result<String, String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let (mut i, mut quote) = (0, None);
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match (quote, c) {
            (Some(q), _) => {
                quote = if c == q { None } else { quote };
                out.push(c);
            }
            (None, '\'' | '"' | '`') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '/') if next == Some('*') => {
                let end = (i + 2..chars.len().saturating_sub(1)).find(|&j| chars[j] == '*' && chars[j + 1] == '/');
                i = end.ok_or("unterminated /* comment")? + 1;
                out.push(' ');
            }
            (None, '#') | (None, '-')
                if c == '#' || (next == Some('-') && chars.get(i + 2).is_none_or(|c| c.is_whitespace())) =>
            {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                out.push(' ');
            }
            (None, _) => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

/// A backend address token: `'host:port'`, `"host:port"`, `` `host:port` `` or bare.
fn unquote(token: &str) -> Result<String, String> {
    let quoted = token.len() >= 2 && token.starts_with(['\'', '"', '`']) && token.ends_with(&token[..1]);
    let inner = if quoted { &token[1..token.len() - 1] } else { token };
    if inner.is_empty() || inner.contains(['\'', '"', '`']) {
        return Err(format!("bad backend address {token}; write it as 'host:port'"));
    }
    Ok(inner.to_string())
}

/// The items of a `SELECT` (after the keyword), with an optional trailing `LIMIT n`.
fn parse_select(rest: &str) -> Result<Command, String> {
    let mut items = rest.trim();
    let upper = items.to_ascii_uppercase();
    if let Some(at) = upper.rfind("LIMIT") {
        let count = items[at + "LIMIT".len()..].trim();
        if at > 0 && items[..at].ends_with(char::is_whitespace) && count.parse::<u64>().is_ok() {
            items = items[..at].trim_end();
        }
    }
    if items.is_empty() {
        return Err("SELECT needs @@variables or a number".into());
    }
    items.split(',').map(|item| select_item(item.trim())).collect::<Result<_, _>>().map(Command::Select)
}

/// One `SELECT` item: `@@[session.|global.]name` or an integer.
fn select_item(item: &str) -> Result<SelectItem, String> {
    let label = item.to_string();
    if let Some(var) = item.strip_prefix("@@") {
        let var = var.to_ascii_lowercase();
        let name = ["session.", "global.", "local."].iter().find_map(|p| var.strip_prefix(p)).unwrap_or(&var);
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Ok(SelectItem { label, value: SelectValue::Variable(name.to_string()) });
        }
    } else if let Ok(n) = item.parse::<i64>() {
        return Ok(SelectItem { label, value: SelectValue::Integer(n) });
    }
    Err(format!("only SELECT @@variable or SELECT <number> is supported, not '{item}'"))
}

/// A value in an admin result set.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    /// SQL NULL.
    Null,
    /// An integer (also 0/1 flags).
    Int(i64),
    /// A double.
    Float(f64),
    /// Text.
    Text(String),
}

impl Cell {
    /// Text from anything displayable.
    fn text(value: impl std::fmt::Display) -> Cell {
        Cell::Text(value.to_string())
    }

    /// A 0/1 flag.
    fn flag(value: bool) -> Cell {
        Cell::Int(value.into())
    }

    /// A 0/1 flag, or NULL when unknown.
    fn opt_flag(value: Option<bool>) -> Cell {
        value.map_or(Cell::Null, Cell::flag)
    }

    /// Text, or NULL.
    fn opt_text(value: Option<impl std::fmt::Display>) -> Cell {
        value.map_or(Cell::Null, Cell::text)
    }

    /// A count.
    fn count(n: usize) -> Cell {
        Cell::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// Column types used in admin result sets.
const TEXT: ColumnType = ColumnType::MYSQL_TYPE_VAR_STRING;
/// A 0/1 flag.
const TINY: ColumnType = ColumnType::MYSQL_TYPE_TINY;
/// A count or id.
const BIGINT: ColumnType = ColumnType::MYSQL_TYPE_LONGLONG;
/// Lag in seconds.
const DOUBLE: ColumnType = ColumnType::MYSQL_TYPE_DOUBLE;

/// A result set: columns, then rows of cells.
#[derive(Debug)]
struct Table {
    /// Column definitions.
    columns: Vec<Column>,
    /// Rows, each with one cell per column.
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with these column names and types.
    fn new(spec: &[(&str, ColumnType)]) -> Table {
        let column = |&(name, coltype): &(&str, ColumnType)| Column {
            table: String::new(),
            column: name.to_string(),
            coltype,
            colflags: ColumnFlags::empty(),
        };
        Table { columns: spec.iter().map(column).collect(), rows: Vec::new() }
    }
}

/// What a command answers.
#[derive(Debug)]
enum Reply {
    /// A result set.
    Rows(Table),
    /// OK, with this message (`info`).
    Done(String),
}

/// A command that failed: the error sent to the client.
#[derive(Debug)]
struct Failure {
    /// Error code (its SQLSTATE comes with it).
    kind: ErrorKind,
    /// Message.
    message: String,
}

impl Failure {
    /// An error of a kind.
    fn new(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure { kind, message: message.into() }
    }

    /// Error 1105 (HY000): the command was understood and could not be done.
    fn failed(message: impl Into<String>) -> Failure {
        Failure::new(ErrorKind::ER_UNKNOWN_ERROR, message)
    }
}

/// Sends a command's outcome.
async fn respond(results: QueryResultWriter<'_, Out>, outcome: Result<Reply, Failure>) -> io::Result<()> {
    match outcome {
        Ok(Reply::Rows(table)) => write_table(results, &table).await,
        Ok(Reply::Done(info)) => results.completed(OkResponse { info, ..OkResponse::default() }).await,
        Err(failure) => results.error(failure.kind, failure.message.as_bytes()).await,
    }
}

/// Writes a result set (text protocol).
async fn write_table<'t>(results: QueryResultWriter<'t, Out>, table: &'t Table) -> io::Result<()> {
    let mut rows = results.start(&table.columns).await?;
    for row in &table.rows {
        for cell in row {
            match cell {
                Cell::Null => rows.write_col(None::<i64>)?,
                Cell::Int(v) => rows.write_col(*v)?,
                Cell::Float(v) => rows.write_col(*v)?,
                Cell::Text(s) => rows.write_col(s)?,
            }
        }
        rows.end_row().await?;
    }
    rows.finish().await
}

/// Runs a parsed command.
fn execute(shared: &Arc<Shared>, command: &Command) -> Result<Reply, Failure> {
    match command {
        Command::ShowBackends => Ok(Reply::Rows(show_backends(shared))),
        Command::ShowPools => Ok(Reply::Rows(show_pools(shared))),
        Command::ShowClients => Ok(Reply::Rows(show_clients(shared))),
        Command::ShowConfig => Ok(Reply::Rows(show_config(&shared.config.load()))),
        Command::Reload => reload(shared),
        Command::SetBackend { addr, offline } => set_backend(shared, addr, *offline),
        Command::Select(items) => select(items).map(Reply::Rows),
    }
}

/// The configured backends: the master, then the replicas in config order, with their weights.
fn backends(config: &Config) -> Vec<(&str, Option<u32>)> {
    let replicas = config.replicas.iter().map(|r| (r.address.as_str(), Some(r.weight)));
    std::iter::once((config.master.address.as_str(), None)).chain(replicas).collect()
}

/// `SHOW BACKENDS`.
fn show_backends(shared: &Shared) -> Table {
    let config = shared.config.load();
    let health = shared.health.load();
    let configured: Arc<str> = config.master.address.as_str().into();
    let writer = health.writer(&configured).ok().map(|w| w.to_string());
    let mut table = Table::new(&[
        ("address", TEXT),
        ("role", TEXT),
        ("reachable", TINY),
        ("serving", TINY),
        ("offline", TINY),
        ("lag_seconds", DOUBLE),
        ("weight", BIGINT),
        ("read_only", TINY),
        ("gtid", TEXT),
        ("connections_in_use", BIGINT),
        ("connections_idle", BIGINT),
        ("last_error", TEXT),
        ("last_change", TEXT),
    ]);
    for (addr, weight) in backends(&config) {
        let is_writer = writer.as_deref() == Some(addr);
        table.rows.push(backend_row(shared, &health, addr, weight, is_writer));
    }
    table
}

/// One row of `SHOW BACKENDS`. `weight` is set for configured replicas only.
fn backend_row(shared: &Shared, health: &Snapshot, addr: &str, weight: Option<u32>, is_writer: bool) -> Vec<Cell> {
    // Probe results, once there is at least one.
    let probed = health.servers.get(addr).filter(|s| health.checked && s.probes > 0);
    let serving = if is_writer { health.reachable(addr) } else { weight.is_some() && health.serves_reads(addr) };
    vec![
        Cell::text(addr),
        Cell::text(if is_writer { "master" } else { "replica" }),
        Cell::opt_flag(probed.map(|s| s.reachable)),
        Cell::flag(serving),
        Cell::flag(health.offline.contains(addr)),
        probed.and_then(|s| s.lag).map_or(Cell::Null, |lag| Cell::Float((lag * 1000.0).round() / 1000.0)),
        weight.map_or(Cell::Null, |w| Cell::Int(w.into())),
        Cell::opt_flag(probed.and_then(|s| s.read_only)),
        Cell::opt_text(probed.and_then(|s| s.gtid.as_deref())),
        Cell::count(shared.in_use_count(addr)),
        Cell::count(shared.pool.idle_count(addr)),
        Cell::opt_text(probed.and_then(|s| s.last_error.as_deref())),
        Cell::opt_text(probed.map(|s| rfc3339(s.changed_at))),
    ]
}

/// `SHOW POOLS`.
fn show_pools(shared: &Shared) -> Table {
    let config = shared.config.load();
    let mut table = Table::new(&[("backend", TEXT), ("in_use", BIGINT), ("idle", BIGINT)]);
    for (addr, _) in backends(&config) {
        table.rows.push(vec![
            Cell::text(addr),
            Cell::count(shared.in_use_count(addr)),
            Cell::count(shared.pool.idle_count(addr)),
        ]);
    }
    table
}

/// `SHOW CLIENTS`.
fn show_clients(shared: &Shared) -> Table {
    let mut table = Table::new(&[
        ("id", BIGINT),
        ("user", TEXT),
        ("peer", TEXT),
        ("started", TEXT),
        ("master_thread", BIGINT),
        ("replica", TEXT),
        ("replica_thread", BIGINT),
    ]);
    for (id, session) in shared.sessions_list() {
        let [master, replica] = &session.backends;
        table.rows.push(vec![
            Cell::Int(id.into()),
            Cell::text(&session.user),
            Cell::text(&session.peer),
            Cell::text(rfc3339(session.started)),
            master.as_ref().map_or(Cell::Null, |(_, thread)| Cell::Int((*thread).into())),
            Cell::opt_text(replica.as_ref().map(|(addr, _)| addr)),
            replica.as_ref().map_or(Cell::Null, |(_, thread)| Cell::Int((*thread).into())),
        ]);
    }
    table
}

/// `SHOW CONFIG`.
fn show_config(config: &Config) -> Table {
    let mut table = Table::new(&[("key", TEXT), ("value", TEXT)]);
    table.rows = config_rows(config).into_iter().map(|(k, v)| vec![Cell::Text(k), Cell::opt_text(v)]).collect();
    table
}

/// A `SHOW CONFIG` row with a value.
fn kv(key: impl Into<String>, value: impl std::fmt::Display) -> (String, Option<String>) {
    (key.into(), Some(value.to_string()))
}

/// The running config flattened into (key, value) pairs; NULL for a section that is off. No passwords.
fn config_rows(c: &Config) -> Vec<(String, Option<String>)> {
    let mut rows = vec![("source".to_string(), c.source.as_ref().map(|p| p.display().to_string()))];
    rows.push(kv("listen", c.listen));
    for (i, u) in c.users.iter().enumerate() {
        rows.extend([kv(format!("users[{i}].user"), &u.name), kv(format!("users[{i}].password"), MASK)]);
    }
    rows.push(kv("master.address", &c.master.address));
    for (i, r) in c.replicas.iter().enumerate() {
        rows.extend([kv(format!("replicas[{i}].address"), &r.address), kv(format!("replicas[{i}].weight"), r.weight)]);
    }
    match &c.health {
        Some(h) => rows.extend(health_rows(h)),
        None => rows.push(("health".into(), None)),
    }
    rows.push(("metrics.listen".into(), c.metrics.as_ref().map(|m| m.listen.to_string())));
    match &c.admin {
        Some(a) => rows.extend([kv("admin.listen", a.listen), kv("admin.user", &a.user), kv("admin.password", MASK)]),
        None => rows.push(("admin.listen".into(), None)),
    }
    rows.extend([
        kv("pool.max_idle", c.pool.max_idle),
        kv("connect_timeout", fmt_duration(c.connect_timeout)),
        kv("max_allowed_packet", fmt_size(c.max_allowed_packet)),
        kv("shutdown_grace", fmt_duration(c.shutdown_grace)),
        kv("workers", c.workers),
    ]);
    rows
}

/// The `health.*` rows of `SHOW CONFIG`.
fn health_rows(h: &Health) -> Vec<(String, Option<String>)> {
    let (lag_source, table) = match &h.lag_source {
        LagSource::Replication => ("replication", None),
        LagSource::Heartbeat { table } => ("heartbeat", Some(table)),
    };
    let when_no_replica = match h.when_no_replica {
        WhenNoReplica::Master => "master",
        WhenNoReplica::Error => "error",
    };
    let mut rows = vec![
        kv("health.user", &h.user),
        kv("health.password", MASK),
        kv("health.interval", fmt_duration(h.interval)),
        kv("health.timeout", fmt_duration(h.timeout)),
        kv("health.max_replica_lag", fmt_duration(h.max_replica_lag)),
        kv("health.rise", h.rise),
        kv("health.lag_source", lag_source),
    ];
    if let Some(table) = table {
        rows.push(kv("health.heartbeat_table", table));
    }
    rows.extend([kv("health.when_no_replica", when_no_replica), kv("health.detect_master", h.detect_master)]);
    rows
}

/// `RELOAD`.
fn reload(shared: &Arc<Shared>) -> Result<Reply, Failure> {
    match shared.reload_from_file() {
        Ok(report) => Ok(Reply::Done(report.to_string())),
        Err(e) => Err(Failure::failed(e.to_string())),
    }
}

/// `SET BACKEND … OFFLINE|ONLINE`.
fn set_backend(shared: &Shared, addr: &str, offline: bool) -> Result<Reply, Failure> {
    if crate::health::set_offline(shared, addr, offline) {
        tracing::info!(
            backend = addr,
            offline,
            "replica set {} by the admin",
            if offline { "offline" } else { "online" }
        );
        return Ok(Reply::Done(if offline {
            format!("{addr} is offline: it gets no new reads; its sessions move at their next read")
        } else {
            format!("{addr} is online: it gets reads again while it passes the health checks")
        }));
    }
    let topology = shared.topology.load();
    if &*topology.master == addr {
        return Err(Failure::failed(format!("{addr} is the master; only replicas can be set offline")));
    }
    let replicas: Vec<&str> = topology.replicas.iter().map(|r| &*r.addr).collect();
    Err(Failure::failed(format!("{addr} is not a configured replica (replicas: {})", replicas.join(", "))))
}

/// `SELECT @@var, …` / `SELECT 1`.
fn select(items: &[SelectItem]) -> Result<Table, Failure> {
    let mut cells = Vec::with_capacity(items.len());
    for item in items {
        cells.push(match &item.value {
            SelectValue::Integer(n) => Cell::Int(*n),
            SelectValue::Variable(name) => variable(name).ok_or_else(|| {
                Failure::new(ErrorKind::ER_UNKNOWN_SYSTEM_VARIABLE, format!("Unknown system variable '{name}'"))
            })?,
        });
    }
    let spec: Vec<(&str, ColumnType)> = items
        .iter()
        .zip(&cells)
        .map(|(item, cell)| (item.label.as_str(), if matches!(cell, Cell::Int(_)) { BIGINT } else { TEXT }))
        .collect();
    let mut table = Table::new(&spec);
    table.rows.push(cells);
    Ok(table)
}

/// The system variables clients read on connect.
fn variable(name: &str) -> Option<Cell> {
    Some(match name {
        "version_comment" => Cell::text(VERSION_COMMENT),
        "version" => Cell::text(VERSION),
        "max_allowed_packet" => Cell::Int(MAX_PACKET),
        "wait_timeout" | "interactive_timeout" => Cell::Int(28800),
        "socket" => Cell::Null,
        _ => return None,
    })
}

/// A duration as the config file writes it: `250ms`, `2s`, `1500us`.
fn fmt_duration(d: Duration) -> String {
    match (d.subsec_nanos(), d.subsec_micros() * 1000 == d.subsec_nanos()) {
        (0, _) => format!("{}s", d.as_secs()),
        (n, _) if n % 1_000_000 == 0 => format!("{}ms", d.as_millis()),
        (_, true) => format!("{}us", d.as_micros()),
        _ => format!("{d:?}"),
    }
}

/// A size as the config file writes it: `64M`, `1G`, `1536K`, `1000`.
fn fmt_size(n: usize) -> String {
    match n {
        n if n > 0 && n % (1 << 30) == 0 => format!("{}G", n >> 30),
        n if n > 0 && n % (1 << 20) == 0 => format!("{}M", n >> 20),
        n if n > 0 && n % (1 << 10) == 0 => format!("{}K", n >> 10),
        n => n.to_string(),
    }
}

/// `t` in RFC 3339 (UTC, milliseconds), e.g. `2024-05-01T12:00:00.250Z`.
fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z", since.subsec_millis())
}

/// The Gregorian date of a day number (days since 1970-01-01), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(addr: &str, offline: bool) -> Command {
        Command::SetBackend { addr: addr.into(), offline }
    }

    fn var(label: &str, name: &str) -> SelectItem {
        SelectItem { label: label.into(), value: SelectValue::Variable(name.into()) }
    }

    #[test]
    fn parses_commands() {
        let table: &[(&str, Command)] = &[
            ("SHOW BACKENDS", Command::ShowBackends),
            ("  show   backends ;  ", Command::ShowBackends),
            ("/* from a script */ Show Pools;;", Command::ShowPools),
            ("SHOW CLIENTS /* trailing */", Command::ShowClients),
            ("show config -- all of it\n", Command::ShowConfig),
            ("# note\nreload", Command::Reload),
            ("RELOAD CONFIG;", Command::Reload),
            ("SET BACKEND '127.0.0.1:3307' OFFLINE", set("127.0.0.1:3307", true)),
            ("set backend \"db2:3306\" online;", set("db2:3306", false)),
            ("SET BACKEND `db2:3306` ONLINE", set("db2:3306", false)),
            ("set backend db2:3306 offline", set("db2:3306", true)),
            ("SELECT @@version_comment LIMIT 1", Command::Select(vec![var("@@version_comment", "version_comment")])),
            (
                "select @@max_allowed_packet,@@SESSION.wait_timeout",
                Command::Select(vec![
                    var("@@max_allowed_packet", "max_allowed_packet"),
                    var("@@SESSION.wait_timeout", "wait_timeout"),
                ]),
            ),
            ("SELECT 1", Command::Select(vec![SelectItem { label: "1".into(), value: SelectValue::Integer(1) }])),
        ];
        for (sql, want) in table {
            assert_eq!(parse(sql).as_ref(), Ok(want), "{sql}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for sql in [
            "",
            ";",
            "SHOW BACKEND",
            "SHOW BACKENDS EXTRA",
            "SHOW DATABASES",
            "SELECT * FROM t",
            "SELECT @@",
            "SELECT @@a-b",
            "SELECT",
            "SHOW POOLS; SHOW CLIENTS",
            "SET BACKEND 'a:1 OFFLINE",
            "SET BACKEND '' OFFLINE",
            "SET BACKEND 'a:1' DOWN",
            "SET BACKEND OFFLINE",
            "/* unterminated SHOW BACKENDS",
            "'SHOW BACKENDS'",
            "DROP TABLE x",
        ] {
            assert!(parse(sql).is_err(), "{sql:?} should not parse: {:?}", parse(sql));
        }
    }

    #[test]
    fn comments_inside_quotes_are_kept() {
        assert_eq!(strip_comments("SET BACKEND '/*x*/' OFFLINE").unwrap(), "SET BACKEND '/*x*/' OFFLINE");
        assert_eq!(strip_comments("a--b").unwrap(), "a--b", "-- needs whitespace after it");
        assert_eq!(strip_comments("a /*x*/b").unwrap(), "a  b");
    }

    #[test]
    fn relay_refuses_unknown_commands_and_rewrites_login_refusal() {
        assert_eq!(command_action(&[com::QUERY, b'x']), Action::Forward);
        assert_eq!(command_action(&[com::PING]), Action::Forward);
        assert_eq!(command_action(&[com::STMT_CLOSE, 1, 0, 0, 0]), Action::Swallow);
        assert!(matches!(command_action(&[com::STATISTICS]), Action::Refuse(1047, ..)));
        assert!(matches!(command_action(&[com::STMT_EXECUTE]), Action::Refuse(1243, ..)));
        assert!(matches!(command_action(&[]), Action::Refuse(1047, ..)));
        assert!(matches!(command_action(&[com::QUERY, 0xff, b'x']), Action::Refuse(1300, ..)));

        let mut gate = Gate::default();
        let response = gate.handshake_response(Frame::new(1, &[0x00, 0x02, 0x00, 0x00, 9, 9]));
        assert_eq!(response.payload(), &[0x00, 0x02, 0x80, 0x00, 9, 9], "CLIENT_SESSION_TRACK added");
        let again = gate.handshake_response(Frame::new(3, &[0x00, 0x02, 0x00, 0x00]));
        assert_eq!(again.payload(), &[0x00, 0x02, 0x00, 0x00], "only the first client frame");
        let denial = Mutex::new(Some("Access denied for user 'x'@'127.0.0.1' (using password: YES)".to_string()));
        assert_eq!(gate.client_frame(&Frame::new(0, &[com::STATISTICS])), Action::Forward, "not logged in yet");
        let refusal = gate.server_frame(Frame::new(2, &err_payload(1698, b"28000", "Authenticate failed")), &denial);
        let err = rwsplit_wire::packet::ErrPacket::parse(refusal.payload()).unwrap();
        assert_eq!((err.code, refusal.seq()), (1045, 2));
        assert!(err.message.starts_with("Access denied for user 'x'"), "{err}");

        let mut gate = Gate::default();
        let ok = rwsplit_wire::packet::ok_payload(0, 0, rwsplit_wire::StatusFlags::empty(), 0);
        gate.server_frame(Frame::new(2, &ok), &Mutex::new(None));
        assert!(gate.logged_in);
        assert!(matches!(gate.client_frame(&Frame::new(0, &[com::STATISTICS])), Action::Refuse(1047, ..)));
        assert_eq!(gate.client_frame(&Frame::new(0, b"\x03SHOW POOLS")), Action::Forward);
    }

    #[test]
    fn config_rows_mask_passwords() {
        let text = "listen: 127.0.0.1:6033\nusers: [{user: app, password: apppw}]\n\
                    master: {address: 'm:1'}\nreplicas: [{address: 'r1:1', weight: 2}]\n\
                    health: {user: monitor, password: monitorpw, lag_source: heartbeat}\n\
                    admin: {listen: 127.0.0.1:6034, user: admin, password: adminpw}\n";
        let config = Config::parse(text, "t").unwrap();
        let rows = config_rows(&config);
        let all = format!("{rows:?}");
        for secret in ["apppw", "monitorpw", "adminpw"] {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
        let get = |k: &str| rows.iter().find(|(key, _)| key == k).and_then(|(_, v)| v.clone());
        assert_eq!(get("users[0].password").as_deref(), Some(MASK));
        assert_eq!(get("replicas[0].weight").as_deref(), Some("2"));
        assert_eq!(get("health.interval").as_deref(), Some("250ms"));
        assert_eq!(get("health.heartbeat_table").as_deref(), Some("rwsplit.heartbeat"));
        assert_eq!(get("max_allowed_packet").as_deref(), Some("64M"));
        assert_eq!(get("metrics.listen"), None);
    }

    #[test]
    fn formats_times_durations_and_sizes() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_250)), "2000-02-29T00:00:00.250Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14T22:13:20.000Z");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_secs(10)), "10s");
        assert_eq!(fmt_duration(Duration::from_micros(1500)), "1500us");
        assert_eq!((fmt_size(64 << 20), fmt_size(1 << 30), fmt_size(1000)), ("64M".into(), "1G".into(), "1000".into()));
    }
}
