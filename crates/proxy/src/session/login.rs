//! Client login: greeting, password check against `users`, and COM_CHANGE_USER.
//!
//! The greeting offers `mysql_native_password`. A client answering with `caching_sha2_password` (MySQL 8
//! clients' default) is verified with the same nonce and told "fast auth success"; a client answering
//! with any other plugin is switched to `mysql_native_password` with an auth-switch request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rwsplit_wire::auth::{self, ClientLogin};
use rwsplit_wire::packet::{self, ok_payload};
use rwsplit_wire::{CapabilityFlags, StatusFlags};

use super::Session;
use crate::backend::{Credentials, LoginKey};
use crate::config::Secret;
use crate::error::{ClientError, SessionError};
use crate::io::Wire;
use crate::Shared;

/// Time a client gets to complete its login.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Version announced when no backend has been reachable yet.
const FALLBACK_VERSION: &str = "8.0.0-rwsplit";
/// utf8mb4_general_ci, announced as the server's default collation.
const DEFAULT_COLLATION: u8 = 45;

/// A logged-in client: the template for its backend logins.
#[derive(Debug, Clone)]
pub struct Login {
    /// Account name.
    pub user: String,
    /// Its password, from the config (used to log in to backends).
    password: Secret,
    /// Initial database.
    database: Option<Arc<str>>,
    /// Collation id.
    collation: u8,
    /// Capabilities negotiated with the client (and passed on to backends).
    pub capabilities: CapabilityFlags,
    /// Connection attributes.
    attributes: Arc<Vec<(String, String)>>,
    /// The scramble sent in the greeting (COM_CHANGE_USER is verified against it).
    nonce: [u8; 20],
}

impl Login {
    /// Credentials for logging in to the backend at `addr` on behalf of this client.
    pub fn credentials(&self, addr: &Arc<str>) -> Credentials {
        Credentials {
            key: LoginKey {
                addr: Arc::clone(addr),
                user: self.user.as_str().into(),
                database: self.database.clone(),
                collation: self.collation,
                capabilities: self.capabilities.bits(),
            },
            password: self.password.clone(),
            attributes: Arc::clone(&self.attributes),
        }
    }
}

/// Runs the server side of the handshake. On failure the client has been sent an ERR packet.
pub async fn handshake(client: &mut Wire, shared: &Shared, id: u32) -> Result<Login, ClientError> {
    match tokio::time::timeout(LOGIN_TIMEOUT, handshake_inner(client, shared, id)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Protocol("login timed out")),
    }
}

async fn handshake_inner(client: &mut Wire, shared: &Shared, id: u32) -> Result<Login, ClientError> {
    let (version, caps) =
        shared.backend_info().await.unwrap_or_else(|| (FALLBACK_VERSION.to_string(), auth::supported_capabilities()));
    let nonce = auth::new_scramble();
    client.send(0, &auth::greeting(&version, id, &nonce, DEFAULT_COLLATION, caps)).await?;
    let frame = client.expect_frame().await?;
    let mut seq = frame.seq().wrapping_add(1);
    let Some(hello) = auth::parse_client_login(frame.payload()) else {
        client.send(seq, &packet::err_payload(1043, b"08S01", "Bad handshake")).await?;
        return Err(ClientError::Protocol("malformed handshake response"));
    };
    let config = shared.config.load();
    let password = config.user(&hello.user).map(|u| u.password.clone());
    let (ok, next_seq) = verify(client, &hello, password.as_ref(), &nonce, seq).await?;
    seq = next_seq;
    let Some(password) = password.filter(|_| ok) else {
        let msg = access_denied(&hello.user, client, !hello.auth_response.is_empty());
        client.send(seq, &packet::err_payload(1045, b"28000", &msg)).await?;
        return Err(ClientError::AuthFailed(hello.user));
    };
    client.send(seq, &ok_payload(0, 0, StatusFlags::SERVER_STATUS_AUTOCOMMIT, 0)).await?;
    Ok(Login {
        user: hello.user,
        password,
        database: hello.database.map(Into::into),
        collation: hello.collation,
        capabilities: hello.capabilities,
        attributes: Arc::new(hello.attributes),
        nonce,
    })
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
            let frame = client.expect_frame().await?;
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
struct ChangeUser {
    user: String,
    auth_response: Vec<u8>,
    database: Option<String>,
    collation: Option<u8>,
    plugin: String,
}

fn parse_change_user(p: &[u8], caps: CapabilityFlags) -> Option<ChangeUser> {
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
    let collation = packet::u16_at(rest, 0).map(|c| c as u8);
    rest = rest.get(2..).unwrap_or_default();
    let plugin = if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) {
        take_cstr(&mut rest).unwrap_or_else(|| auth::NATIVE.to_string())
    } else {
        auth::NATIVE.to_string()
    };
    Some(ChangeUser { user, auth_response, database, collation, plugin })
}

impl Session {
    /// COM_CHANGE_USER: verify the new account, then start over as that user (backends released, state
    /// cleared). A failed change closes the connection, as MySQL does.
    pub(super) async fn com_change_user(&mut self, payload: Bytes) -> Result<(), SessionError> {
        let Some(cu) = parse_change_user(&payload, self.login.capabilities) else {
            self.send_err(1043, b"08S01", "Bad handshake").await?;
            return Err(ClientError::Protocol("malformed COM_CHANGE_USER").into());
        };
        let password = self.shared.config.load().user(&cu.user).map(|u| u.password.clone());
        let hello = ClientLogin {
            capabilities: self.login.capabilities,
            collation: cu.collation.unwrap_or(self.login.collation),
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
        self.login.user = hello.user;
        self.login.password = password;
        self.login.database = hello.database.map(Into::into);
        self.login.collation = hello.collation;
        tracing::Span::current().record("user", self.login.user.as_str());
        Ok(self.send_ok().await?)
    }
}
