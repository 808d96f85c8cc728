//! Client login: greeting, password check against `users`, the database check, and COM_CHANGE_USER.
//!
//! The greeting announces the connection id clients see everywhere (`CONNECTION_ID()`, KILL), the backends'
//! version string, and what rwsplit offers: what it can walk and the backends have, plus compression. It
//! offers `mysql_native_password`; a client answering with `caching_sha2_password` (MySQL 8 clients'
//! default) is verified with the same nonce and told "fast auth success"; a client answering with any other
//! plugin is switched to `mysql_native_password` with an auth-switch request.
//!
//! A client that switches to a transport rwsplit did not offer (TLS, zstd compression) gets error 1043 and
//! a closed connection instead of a hang. A database named at login is checked on the master (a replica when
//! the master is down) before the login is acknowledged, so an unknown database fails the login as it does
//! on a server.

use std::sync::Arc;
use std::time::Duration;

use rwsplit_classify::lex::Multibyte;
use rwsplit_classify::Dialect;
use rwsplit_wire::auth::{self, ClientLogin};
use rwsplit_wire::packet;
use rwsplit_wire::CapabilityFlags;

use super::attach::Attach;
use super::consistency::ReadNeed;
use super::legs::Side;
use super::Session;
use crate::backend::{Credentials, LoginKey};
use crate::config::{Config, Secret};
use crate::error::{ClientError, SessionError};
use crate::io::Wire;
use crate::Shared;

/// Time a client gets to complete its login.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest packet accepted before login (the handshake response with its connection attributes, an
/// auth-switch answer): a client that has not authenticated cannot make the proxy buffer more. MySQL caps
/// connection attributes at 64 KiB too.
pub const MAX_LOGIN_PACKET: usize = 64 * 1024;
/// utf8mb4_general_ci, announced as the server's default collation.
const DEFAULT_COLLATION: u8 = 45;

/// Capabilities that switch the connection's transport: a client that uses one rwsplit did not offer would
/// otherwise wait forever for an answer in a framing rwsplit does not speak.
const TRANSPORT: CapabilityFlags = CapabilityFlags::from_bits_retain(
    CapabilityFlags::CLIENT_SSL.bits()
        | CapabilityFlags::CLIENT_COMPRESS.bits()
        | CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM.bits(),
);

/// A logged-in client: the template for its backend logins.
#[derive(Debug, Clone)]
pub struct Login {
    /// Account name.
    pub user: String,
    /// Its password at login (backend logins use the config's current one; this is the fallback for an
    /// account removed from the config while the session runs).
    password: Secret,
    /// Initial database.
    database: Option<Arc<str>>,
    /// Collation id.
    pub collation: u16,
    /// Capabilities negotiated with the client (passed on to backends, without compression).
    pub capabilities: CapabilityFlags,
    /// Connection attributes.
    attributes: Arc<Vec<(String, String)>>,
    /// The scramble sent in the greeting (COM_CHANGE_USER is verified against it).
    nonce: [u8; 20],
}

impl Login {
    /// Credentials for logging in to the backend at `addr` on behalf of this client, with the account's
    /// current password (a rotated password takes effect for new backend connections at once).
    pub fn credentials(&self, addr: &Arc<str>, config: &Config) -> Credentials {
        let password = config.user(&self.user).map_or_else(|| self.password.clone(), |u| u.password.clone());
        let tls = config.tls_of(addr);
        Credentials {
            key: LoginKey {
                addr: Arc::clone(addr),
                user: self.user.as_str().into(),
                database: self.database.clone(),
                collation: self.collation,
                // Compression and TLS are the client leg's own (a backend's TLS is its `tls:`).
                capabilities: (self.capabilities - CapabilityFlags::CLIENT_COMPRESS - CapabilityFlags::CLIENT_SSL)
                    .bits(),
                tls: tls.is_some(),
            },
            password,
            attributes: Arc::clone(&self.attributes),
            op_timeout: config.backend_timeout,
            public_key: config.public_key_of(addr),
            tls,
        }
    }
}

/// A client whose password checked out, and the sequence id of the answer it waits for.
#[derive(Debug)]
pub struct Hello {
    /// Who it is.
    pub login: Login,
    /// Sequence id of the login's OK (or ERR).
    pub seq: u8,
}

/// The dialect a session starts with: default quoting rules, the client character set of its collation,
/// the version of the server (`server_version`, as its greeting gave it, if known).
pub fn dialect_of(collation: u16, server_version: Option<&str>) -> Dialect {
    let server = server_version.map(Dialect::for_server).unwrap_or_default();
    Dialect { multibyte: Multibyte::from_collation_id(collation), ..server }
}

/// Runs the server side of the handshake up to the password check. On failure the client has been sent an
/// ERR packet. The login's OK is sent by [`Session::finish_login`], after the database check.
pub async fn handshake(client: &mut Wire, shared: &Shared, id: u32) -> Result<Hello, ClientError> {
    match tokio::time::timeout(LOGIN_TIMEOUT, handshake_inner(client, shared, id)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Protocol("login timed out")),
    }
}

/// Logs and counts a failed login.
pub fn failed(shared: &Shared, e: ClientError) {
    tracing::info!(error = %e, "login failed");
    let kind = match e {
        ClientError::AuthFailed(_) => crate::metrics::ErrorKind::AuthFailure,
        _ => crate::metrics::ErrorKind::ClientProtocol,
    };
    shared.metrics.error(kind);
}

async fn handshake_inner(client: &mut Wire, shared: &Shared, id: u32) -> Result<Hello, ClientError> {
    let Some((version, backend_caps)) = shared.backend_info().await else {
        // Nothing to forward to: say so at once, as a server that cannot take connections does.
        let msg = "rwsplit: no backend is reachable; cannot accept connections now";
        let (code, state) = crate::error::code::UNAVAILABLE;
        client.send(0, &packet::err_payload(code, state, msg)).await?;
        return Err(ClientError::Protocol("no backend reachable"));
    };
    let tls = shared.config.load().tls.clone();
    let mut offered = auth::client_offer(backend_caps);
    if tls.is_some() {
        offered |= CapabilityFlags::CLIENT_SSL;
    }
    let nonce = auth::new_scramble();
    client.send(0, &auth::greeting(&version, id, &nonce, DEFAULT_COLLATION, offered)).await?;
    let mut frame = client.expect_frame_within(MAX_LOGIN_PACKET).await?;
    let asked = CapabilityFlags::from_bits_retain(packet::u32_at(frame.payload(), 0).unwrap_or_default());
    if let (Some(tls), true) = (&tls, asked.contains(CapabilityFlags::CLIENT_SSL)) {
        // An SSLRequest (the first 32 bytes of a handshake response): TLS, then the whole response in it.
        if frame.payload().len() != 32 {
            client.send(frame.seq().wrapping_add(1), &packet::err_payload(1043, b"08S01", "Bad handshake")).await?;
            return Err(ClientError::Protocol("CLIENT_SSL in a full handshake response"));
        }
        client.accept_tls(&tls.acceptor).await.map_err(|e| ClientError::Protocol(tls_failed(&e)))?;
        frame = client.expect_frame_within(MAX_LOGIN_PACKET).await?;
    } else if tls.as_ref().is_some_and(|t| t.require) {
        let msg = "Connections using insecure transport are prohibited while --require_secure_transport=ON \
                   (rwsplit: tls.require)";
        client.send(frame.seq().wrapping_add(1), &packet::err_payload(3159, b"HY000", msg)).await?;
        return Err(ClientError::Protocol("a client without TLS while tls.require is on"));
    }
    let mut seq = frame.seq().wrapping_add(1);
    let requested = CapabilityFlags::from_bits_retain(packet::u32_at(frame.payload(), 0).unwrap_or_default());
    let unoffered = requested & TRANSPORT & !offered;
    if !unoffered.is_empty() {
        let msg = format!("Bad handshake: rwsplit does not offer {unoffered:?}");
        client.send(seq, &packet::err_payload(1043, b"08S01", &msg)).await?;
        return Err(ClientError::Protocol("client asked for a transport rwsplit does not offer"));
    }
    let Some(hello) = auth::parse_client_login(frame.payload(), offered) else {
        client.send(seq, &packet::err_payload(1043, b"08S01", "Bad handshake")).await?;
        return Err(ClientError::Protocol("malformed handshake response"));
    };
    let peer_ip = client.peer().map(|a| a.ip());
    // An account restricted to client networks (users[].allowed_networks) does not exist for other peers.
    let password =
        shared.config.load().user(&hello.user).filter(|u| allowed_from(u, peer_ip)).map(|u| u.password.clone());
    let (ok, next_seq) = verify(client, &hello, password.as_ref(), &nonce, seq).await?;
    seq = next_seq;
    let Some(password) = password.filter(|_| ok) else {
        // Each failure in a row from this address is answered later than the last (online guessing).
        if let Some(ip) = peer_ip {
            tokio::time::sleep(shared.admission.login_failed(ip)).await;
        }
        let known = shared.config.load().user(&hello.user).is_some();
        shared.metrics.login_failed(known.then_some(hello.user.as_str()));
        let msg = access_denied(&hello.user, client, !hello.auth_response.is_empty());
        client.send(seq, &packet::err_payload(1045, b"28000", &msg)).await?;
        return Err(ClientError::AuthFailed(hello.user));
    };
    if let Some(ip) = peer_ip {
        shared.admission.login_ok(ip);
    }
    let login = Login {
        user: hello.user,
        password,
        database: hello.database.map(Into::into),
        collation: u16::from(hello.collation),
        capabilities: hello.capabilities,
        attributes: Arc::new(hello.attributes),
        nonce,
    };
    Ok(Hello { login, seq })
}

/// Why a TLS handshake failed, for the log (a static text: the error's details go to debug).
fn tls_failed(e: &std::io::Error) -> &'static str {
    tracing::debug!(error = %e, "TLS handshake with a client failed");
    "TLS handshake failed"
}

/// Whether `user` may log in from `ip` (an unknown peer address passes only an unrestricted account).
fn allowed_from(user: &crate::config::User, ip: Option<std::net::IpAddr>) -> bool {
    match ip {
        Some(ip) => user.allows(ip),
        None => user.allowed_networks.is_empty(),
    }
}

/// Checks a client's auth response, switching plugins if needed. Returns (password ok, next sequence id).
async fn verify(
    client: &mut Wire,
    hello: &ClientLogin,
    password: Option<&Secret>,
    nonce: &[u8; 20],
    seq: u8,
) -> Result<(bool, u8), ClientError> {
    let pw = password.map_or(&b""[..], Secret::expose);
    match hello.plugin.as_str() {
        auth::NATIVE => {
            Ok((password.is_some() && auth::verify_scramble(auth::NATIVE, nonce, pw, &hello.auth_response), seq))
        }
        auth::CACHING_SHA2 => {
            let ok = password.is_some() && auth::verify_scramble(auth::CACHING_SHA2, nonce, pw, &hello.auth_response);
            if ok && !pw.is_empty() {
                let seq = client.send(seq, &[0x01, auth::sha2_msg::FAST_AUTH_OK]).await?;
                return Ok((true, seq));
            }
            Ok((ok, seq))
        }
        _ => {
            client.send(seq, &auth::auth_switch_request(auth::NATIVE, nonce)).await?;
            let frame = client.expect_frame_within(MAX_LOGIN_PACKET).await?;
            let ok = password.is_some() && auth::verify_scramble(auth::NATIVE, nonce, pw, frame.payload());
            Ok((ok, frame.seq().wrapping_add(1)))
        }
    }
}

fn access_denied(user: &str, client: &Wire, using_password: bool) -> String {
    let host = client.peer().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let yes_no = if using_password { "YES" } else { "NO" };
    format!("Access denied for user '{user}'@'{host}' (using password: {yes_no})")
}

/// Fields of a COM_CHANGE_USER packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeUser {
    /// Account name.
    pub user: String,
    /// Scramble (or cleartext, per plugin).
    pub auth_response: Vec<u8>,
    /// Initial database.
    pub database: Option<String>,
    /// Collation id, when sent.
    pub collation: Option<u16>,
    /// Auth plugin named, if any.
    pub plugin: String,
}

/// Parses a COM_CHANGE_USER packet (command byte included) sent under `caps`; public for the fuzz target.
pub fn parse_change_user(p: &[u8], caps: CapabilityFlags) -> Option<ChangeUser> {
    let mut rest = p.get(1..)?;
    let take_cstr = |rest: &mut &[u8]| -> Option<String> {
        let nul = rest.iter().position(|b| *b == 0)?;
        let s = String::from_utf8_lossy(&rest[..nul]).into_owned();
        *rest = &rest[nul + 1..];
        Some(s)
    };
    let user = take_cstr(&mut rest)?;
    let auth_response = if caps.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
        let len = usize::from(*rest.first()?);
        let a = rest.get(1..1 + len)?.to_vec();
        rest = &rest[1 + len..];
        a
    } else {
        let nul = rest.iter().position(|b| *b == 0)?;
        let a = rest[..nul].to_vec();
        rest = &rest[nul + 1..];
        a
    };
    let database = take_cstr(&mut rest).filter(|d| !d.is_empty());
    let collation = packet::u16_at(rest, 0);
    rest = rest.get(2..).unwrap_or_default();
    let plugin = if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) {
        take_cstr(&mut rest).unwrap_or_else(|| auth::NATIVE.to_string())
    } else {
        auth::NATIVE.to_string()
    };
    Some(ChangeUser { user, auth_response, database, collation, plugin })
}

impl Session {
    /// Completes the login: checks the database the client named (if any) and sends the OK, then switches
    /// to compression if the client negotiated it. Returns false when the login failed (the client was
    /// sent the server's error).
    pub(super) async fn finish_login(&mut self) -> Result<bool, SessionError> {
        if !self.check_database().await? {
            return Ok(false);
        }
        self.send_ok().await?;
        if self.login.capabilities.contains(CapabilityFlags::CLIENT_COMPRESS) {
            self.client.enable_compression();
        }
        tracing::debug!("logged in");
        Ok(true)
    }

    /// Logs in to the master (to a replica if the master cannot be reached) with the client's database: the
    /// server's own answer decides (1049 Unknown database, 1044 Access denied). The connection stays for the
    /// session. Returns false after sending the client the error.
    async fn check_database(&mut self) -> Result<bool, SessionError> {
        if self.login.database.is_none() {
            return Ok(true);
        }
        let refused = match self.attach_side(Side::Master, &ReadNeed::default()).await {
            Attach::Ready(_) => return Ok(true),
            Attach::Refused(e) => e,
            Attach::Lost(lost) => return self.end_lost(lost).await.map(|_| false),
        };
        if refused.code == crate::error::code::UNAVAILABLE.0 {
            if let Attach::Ready(_) = self.attach_side(Side::Replica, &ReadNeed::default()).await {
                return Ok(true);
            }
        }
        self.send_err(refused.code, &refused.state, &refused.message).await?;
        Ok(false)
    }

    /// COM_CHANGE_USER: verify the new account and its database, then start over as that user (backends
    /// released, state cleared). A failed change closes the connection, as MySQL does.
    pub(super) async fn com_change_user(&mut self, payload: bytes::Bytes) -> Result<(), SessionError> {
        let Some(cu) = parse_change_user(&payload, self.login.capabilities) else {
            self.send_err(1043, b"08S01", "Bad handshake").await?;
            return Err(ClientError::Protocol("malformed COM_CHANGE_USER").into());
        };
        let peer_ip = self.client.peer().map(|a| a.ip());
        let password =
            self.shared.config.load().user(&cu.user).filter(|u| allowed_from(u, peer_ip)).map(|u| u.password.clone());
        let hello = ClientLogin {
            capabilities: self.login.capabilities,
            requested: self.login.capabilities,
            collation: u8::try_from(cu.collation.unwrap_or(self.login.collation)).unwrap_or(DEFAULT_COLLATION),
            user: cu.user.clone(),
            auth_response: cu.auth_response,
            database: cu.database,
            plugin: cu.plugin,
            max_packet_size: 0,
            attributes: Vec::new(),
        };
        let nonce = self.login.nonce;
        let (ok, seq) = verify(&mut self.client, &hello, password.as_ref(), &nonce, self.client_seq).await?;
        self.client_seq = seq;
        let Some(password) = password.filter(|_| ok) else {
            let msg = access_denied(&cu.user, &self.client, !hello.auth_response.is_empty());
            self.send_err(1045, b"28000", &msg).await?;
            return Err(ClientError::AuthFailed(cu.user).into());
        };
        self.reset_state();
        self.history = super::history::History::default();
        self.login.user = hello.user;
        self.login.password = password;
        self.login.database = hello.database.map(Into::into);
        self.login.collation = cu.collation.unwrap_or(self.login.collation);
        self.start_view();
        self.shared.registry.publish_user(self.id, &self.login.user);
        tracing::Span::current().record("user", tracing::field::debug(&self.login.user));
        if !self.check_database().await? {
            return Err(ClientError::AuthFailed(self.login.user.clone()).into());
        }
        Ok(self.send_ok().await?)
    }
}
