//! Authentication: scrambles, the greeting rwsplit sends to clients, verification of client logins, and
//! the client side of a backend handshake.
//!
//! rwsplit knows each account's password (from its config), so it verifies a client's scramble by computing
//! the expected one, and logs in to backends with the same credentials.

use bytes::BytesMut;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use rand::Rng;

/// `mysql_native_password`.
pub const NATIVE: &str = "mysql_native_password";
/// `caching_sha2_password`.
pub const CACHING_SHA2: &str = "caching_sha2_password";

/// caching_sha2_password "more data" sub-packets.
pub mod sha2_msg {
    /// Server → client: the fast-auth scramble matched.
    pub const FAST_AUTH_OK: u8 = 0x03;
    /// Server → client: full authentication needed (password over TLS or RSA).
    pub const PERFORM_FULL_AUTH: u8 = 0x04;
    /// Client → server: please send your RSA public key.
    pub const REQUEST_PUBLIC_KEY: u8 = 0x02;
}

/// What the proxy can walk: capabilities it may offer to clients and pass on to backends. Not offered:
/// compression, TLS, query attributes and optional metadata (they change packet formats the proxy reads).
pub fn supported_capabilities() -> CapabilityFlags {
    use CapabilityFlags as C;
    C::CLIENT_LONG_PASSWORD
        | C::CLIENT_FOUND_ROWS
        | C::CLIENT_LONG_FLAG
        | C::CLIENT_CONNECT_WITH_DB
        | C::CLIENT_NO_SCHEMA
        | C::CLIENT_ODBC
        | C::CLIENT_LOCAL_FILES
        | C::CLIENT_IGNORE_SPACE
        | C::CLIENT_PROTOCOL_41
        | C::CLIENT_INTERACTIVE
        | C::CLIENT_IGNORE_SIGPIPE
        | C::CLIENT_TRANSACTIONS
        | C::CLIENT_RESERVED
        | C::CLIENT_SECURE_CONNECTION
        | C::CLIENT_MULTI_STATEMENTS
        | C::CLIENT_MULTI_RESULTS
        | C::CLIENT_PS_MULTI_RESULTS
        | C::CLIENT_PLUGIN_AUTH
        | C::CLIENT_CONNECT_ATTRS
        | C::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | C::CLIENT_SESSION_TRACK
        | C::CLIENT_DEPRECATE_EOF
}

/// What rwsplit offers a client, given what the backends offer: what it can walk and the backends have (so
/// both legs of a session agree on packet formats), plus compression, which only the client leg uses.
pub fn client_offer(backend_caps: CapabilityFlags) -> CapabilityFlags {
    (supported_capabilities() & (backend_caps | CapabilityFlags::CLIENT_LONG_PASSWORD))
        | CapabilityFlags::CLIENT_COMPRESS
}

/// A fresh 20-byte scramble of printable ASCII (no NUL, so it survives NUL-terminated encodings).
pub fn new_scramble() -> [u8; 20] {
    let mut rng = rand::thread_rng();
    let mut s = [0u8; 20];
    for b in &mut s {
        *b = rng.gen_range(b'0'..=b'z');
    }
    s
}

/// The scramble a client with `password` should send for `plugin` and `nonce`; empty for an empty password.
pub fn expected_scramble(plugin: &str, nonce: &[u8], password: &[u8]) -> Option<Vec<u8>> {
    if password.is_empty() {
        return Some(Vec::new());
    }
    match plugin {
        NATIVE => mysql_common::scramble::scramble_native(nonce, password).map(|s| s.to_vec()),
        CACHING_SHA2 => mysql_common::scramble::scramble_sha256(nonce, password).map(|s| s.to_vec()),
        _ => None,
    }
}

/// Constant-time check of a client's scramble against the expected one.
pub fn verify_scramble(plugin: &str, nonce: &[u8], password: &[u8], response: &[u8]) -> bool {
    let Some(expected) = expected_scramble(plugin, nonce, password) else {
        return false;
    };
    expected.len() == response.len() && expected.iter().zip(response).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The server greeting rwsplit sends. `version` is the backend's real version string; `offered` what rwsplit
/// offers (see [`client_offer`]).
pub fn greeting(
    version: &str,
    connection_id: u32,
    scramble: &[u8; 20],
    collation: u8,
    offered: CapabilityFlags,
) -> BytesMut {
    let mut scramble_2 = scramble[8..].to_vec();
    scramble_2.push(0);
    let pkt = HandshakePacket::new(
        10,
        version.as_bytes(),
        connection_id,
        [scramble[0], scramble[1], scramble[2], scramble[3], scramble[4], scramble[5], scramble[6], scramble[7]],
        Some(scramble_2),
        offered,
        collation,
        StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        Some(NATIVE.as_bytes()),
    );
    let mut buf = Vec::with_capacity(128);
    pkt.serialize(&mut buf);
    BytesMut::from(&buf[..])
}

/// What a client sent in its handshake response, owned.
#[derive(Debug, Clone)]
pub struct ClientLogin {
    /// Capabilities in effect: what the client asked for and rwsplit offered.
    pub capabilities: CapabilityFlags,
    /// Capabilities the client asked for, as sent (some clients set bits the server did not offer).
    pub requested: CapabilityFlags,
    /// Collation id the client chose.
    pub collation: u8,
    /// Account name.
    pub user: String,
    /// Auth response (scramble) for `plugin`.
    pub auth_response: Vec<u8>,
    /// Initial database, if any.
    pub database: Option<String>,
    /// Auth plugin the response was computed with.
    pub plugin: String,
    /// Maximum packet size the client announced.
    pub max_packet_size: u32,
    /// Connection attributes (passed on to backends).
    pub attributes: Vec<(String, String)>,
}

/// Parses a client's HandshakeResponse41, given what rwsplit `offered`. Returns `None` for anything malformed
/// or an SSL request.
pub fn parse_client_login(payload: &[u8], offered: CapabilityFlags) -> Option<ClientLogin> {
    let resp: HandshakeResponse<'_> = ParseBuf(payload).parse(()).ok()?;
    let requested = resp.capabilities();
    let capabilities = requested & offered;
    if !capabilities.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        return None;
    }
    let plugin = match resp.auth_plugin() {
        Some(p) => String::from_utf8_lossy(p.as_bytes()).into_owned(),
        None => NATIVE.to_string(),
    };
    let mut attributes: Vec<(String, String)> = resp.connect_attributes().unwrap_or_default().into_iter().collect();
    attributes.sort();
    Some(ClientLogin {
        capabilities,
        requested,
        collation: resp.collation(),
        user: String::from_utf8_lossy(resp.user()).into_owned(),
        auth_response: resp.scramble_buf().to_vec(),
        database: resp.db_name().filter(|d| !d.is_empty()).map(|d| String::from_utf8_lossy(d).into_owned()),
        plugin,
        max_packet_size: u32::from_le_bytes(payload.get(4..8)?.try_into().ok()?),
        attributes,
    })
}

/// An auth-switch request payload (0xFE, plugin name, NUL, plugin data, NUL).
pub fn auth_switch_request(plugin: &str, nonce: &[u8; 20]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(2 + plugin.len() + 21);
    buf.extend_from_slice(&[0xFE]);
    buf.extend_from_slice(plugin.as_bytes());
    buf.extend_from_slice(&[0]);
    buf.extend_from_slice(nonce);
    buf.extend_from_slice(&[0]);
    buf
}

/// A parsed server greeting (what the proxy needs of it as a client).
#[derive(Debug, Clone)]
pub struct ServerGreeting {
    /// The server's version string, as announced.
    pub version: String,
    /// Server capabilities (lower and upper halves combined).
    pub capabilities: CapabilityFlags,
    /// The server's 20-byte nonce.
    pub nonce: Vec<u8>,
    /// The server's default auth plugin.
    pub plugin: String,
    /// The backend's connection (thread) id.
    pub connection_id: u32,
}

/// Parses a server's initial handshake (protocol 10). `None` when malformed or an ERR packet.
pub fn parse_greeting(payload: &[u8]) -> Option<ServerGreeting> {
    // mysql_common computes `auth_plugin_data_len as i8 - 8`, which overflows (a panic with overflow checks)
    // for a length of 0x80 or more; real servers send 21. Found by fuzzing: refuse such a greeting first.
    // The length sits 20 bytes after the NUL ending the server version (connection id, scramble part 1,
    // filler, capabilities, collation, status, capabilities).
    let version_end = payload.iter().skip(1).position(|&b| b == 0)? + 1;
    if payload.get(version_end + 21).is_some_and(|&len| len >= 0x80) {
        return None;
    }
    let pkt: HandshakePacket<'_> = ParseBuf(payload).parse(()).ok()?;
    let mut nonce = pkt.scramble_1_ref().to_vec();
    if let Some(s2) = pkt.scramble_2_ref() {
        nonce.extend_from_slice(s2);
    }
    nonce.truncate(20);
    let plugin = pkt
        .auth_plugin()
        .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
        .unwrap_or_else(|| NATIVE.to_string());
    Some(ServerGreeting {
        version: String::from_utf8_lossy(pkt.server_version_ref()).into_owned(),
        capabilities: pkt.capabilities(),
        nonce,
        plugin,
        connection_id: pkt.connection_id(),
    })
}

/// Parameters of a backend login.
#[derive(Debug, Clone)]
pub struct BackendLogin<'a> {
    /// Capabilities to request (intersected with the server's by [`handshake_response`]).
    pub capabilities: CapabilityFlags,
    /// Collation id.
    pub collation: u8,
    /// Account name.
    pub user: &'a str,
    /// Password (plain text, never logged).
    pub password: &'a [u8],
    /// Initial database.
    pub database: Option<&'a str>,
    /// Connection attributes.
    pub attributes: &'a [(String, String)],
}

/// The HandshakeResponse41 payload rwsplit sends to a backend, for the server's `greeting`.
/// Returns the payload and the plugin it was computed for.
pub fn handshake_response(greeting: &ServerGreeting, login: &BackendLogin<'_>) -> (Vec<u8>, String) {
    let plugin = match greeting.plugin.as_str() {
        CACHING_SHA2 => CACHING_SHA2,
        _ => NATIVE,
    };
    let scramble = expected_scramble(plugin, &greeting.nonce, login.password).unwrap_or_default();
    let caps = (login.capabilities & greeting.capabilities & supported_capabilities())
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_LONG_PASSWORD;
    let attrs = (!login.attributes.is_empty()).then(|| login.attributes.iter().cloned().collect());
    let resp = HandshakeResponse::new(
        Some(&scramble[..]),
        (0, 0, 0),
        Some(login.user.as_bytes()),
        login.database.map(str::as_bytes),
        Some(AuthPlugin::from_bytes(plugin.as_bytes())),
        caps,
        attrs,
        crate::MAX_PAYLOAD as u32,
    );
    let mut buf = Vec::with_capacity(128);
    resp.serialize(&mut buf);
    // HandshakeResponse::new always writes collation 0x21 (utf8_general_ci) unless told; set the client's.
    if let Some(c) = buf.get_mut(8) {
        *c = login.collation;
    }
    (buf, plugin.to_string())
}

/// Turns a [`handshake_response`] into one sent over TLS: sets `CLIENT_SSL` in it and returns the SSLRequest
/// that goes first in plain (the response's first 32 bytes: capabilities, max packet, collation, filler).
pub fn for_tls(response: &mut [u8]) -> Option<Vec<u8>> {
    let caps = response.get_mut(..4)?;
    let flags = u32::from_le_bytes([caps[0], caps[1], caps[2], caps[3]]) | CapabilityFlags::CLIENT_SSL.bits();
    caps.copy_from_slice(&flags.to_le_bytes());
    Some(response.get(..32)?.to_vec())
}

/// A plugin's answer to an auth-switch or "more data" request, given the password.
/// `data` is the payload after the 0xFE/0x01 header.
pub fn parse_auth_switch(payload: &[u8]) -> Option<(String, Vec<u8>)> {
    let rest = payload.get(1..)?;
    let nul = rest.iter().position(|b| *b == 0)?;
    let plugin = String::from_utf8_lossy(&rest[..nul]).into_owned();
    let mut nonce = rest[nul + 1..].to_vec();
    if nonce.last() == Some(&0) {
        nonce.pop();
    }
    Some((plugin, nonce))
}

/// caching_sha2_password full authentication without TLS: the password, NUL-terminated, XORed with the
/// nonce and RSA-encrypted with the server's public key (PEM).
pub fn sha2_rsa_password(password: &[u8], nonce: &[u8], pem: &[u8]) -> Option<Vec<u8>> {
    if nonce.is_empty() {
        return None;
    }
    let mut plain: Vec<u8> = password.to_vec();
    plain.push(0);
    for (i, b) in plain.iter_mut().enumerate() {
        *b ^= nonce[i % nonce.len()];
    }
    // mysql_common's PEM/DER parser panics on malformed keys; the key comes from a backend, not a client,
    // but a broken backend must not take the proxy down either.
    let pem = pem.to_vec();
    std::panic::catch_unwind(move || mysql_common::crypto::encrypt(&plain, &pem)).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostile_greetings_are_refused_without_panicking() {
        // Found by fuzzing (fuzz/artifacts-found/greeting): an auth-plugin-data length below 8.
        let bad = b"\x10\x00\x81\x81\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x81\x81\x81\x81\x81\x81\x81\x81\x81\x81\x81\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        assert!(parse_greeting(bad).is_none());
    }

    use super::*;

    #[test]
    fn greeting_round_trips_through_parser() {
        let s = new_scramble();
        let g = greeting("5.5.5-10.11.6-MariaDB", 42, &s, 45, supported_capabilities());
        let parsed = parse_greeting(&g).unwrap();
        assert_eq!(parsed.version, "5.5.5-10.11.6-MariaDB");
        assert_eq!(parsed.nonce, s.to_vec());
        assert_eq!(parsed.connection_id, 42);
        assert_eq!(parsed.plugin, NATIVE);
        assert!(!parsed.capabilities.contains(CapabilityFlags::CLIENT_COMPRESS));
        assert!(!parsed.capabilities.contains(CapabilityFlags::CLIENT_SSL));
        let offer = client_offer(supported_capabilities());
        assert!(offer.contains(CapabilityFlags::CLIENT_COMPRESS) && !offer.contains(CapabilityFlags::CLIENT_SSL));
    }

    #[test]
    fn login_round_trip_and_verification() {
        let server = parse_greeting(&greeting("8.0.36", 1, &new_scramble(), 45, supported_capabilities())).unwrap();
        let attrs = vec![("_client_name".to_string(), "t".to_string())];
        let login = BackendLogin {
            capabilities: supported_capabilities(),
            collation: 45,
            user: "app",
            password: b"apppw",
            database: Some("shop"),
            attributes: &attrs,
        };
        let (payload, plugin) = handshake_response(&server, &login);
        let parsed = parse_client_login(&payload, supported_capabilities()).unwrap();
        assert_eq!(parsed.user, "app");
        assert_eq!(parsed.database.as_deref(), Some("shop"));
        assert_eq!(parsed.collation, 45);
        assert_eq!(parsed.attributes, attrs);
        assert!(verify_scramble(&plugin, &server.nonce, b"apppw", &parsed.auth_response));
        assert!(!verify_scramble(&plugin, &server.nonce, b"wrong", &parsed.auth_response));
        assert!(verify_scramble(CACHING_SHA2, b"01234567890123456789", b"", b""));
    }

    #[test]
    fn tls_login_sends_ssl_request_then_the_same_response_with_client_ssl() {
        let server =
            parse_greeting(&greeting("10.11.6-MariaDB", 1, &new_scramble(), 45, supported_capabilities())).unwrap();
        let login = BackendLogin {
            capabilities: supported_capabilities(),
            collation: 45,
            user: "app",
            password: b"apppw",
            database: None,
            attributes: &[],
        };
        let (plain, _) = handshake_response(&server, &login);
        let mut response = plain.clone();
        let request = for_tls(&mut response).unwrap();
        assert_eq!(request.len(), 32);
        assert_eq!(&request[..], &response[..32]);
        let caps = CapabilityFlags::from_bits_retain(u32::from_le_bytes(request[..4].try_into().unwrap()));
        assert!(caps.contains(CapabilityFlags::CLIENT_SSL | CapabilityFlags::CLIENT_PROTOCOL_41));
        // Nothing but the flag changed.
        assert_eq!(response[4..], plain[4..]);
        assert_eq!(parse_client_login(&response, supported_capabilities()).unwrap().user, "app");
        assert!(for_tls(&mut [0u8; 3]).is_none());
    }

    #[test]
    fn sha2_scramble_matches_mysql_definition() {
        // XOR(SHA256(pw), SHA256(SHA256(SHA256(pw)), nonce)), as computed by mysql_common.
        let nonce = b"abcdefghijklmnopqrst";
        let s = expected_scramble(CACHING_SHA2, nonce, b"secret").unwrap();
        assert_eq!(s.len(), 32);
        assert!(verify_scramble(CACHING_SHA2, nonce, b"secret", &s));
    }

    #[test]
    fn malformed_logins_are_rejected() {
        assert!(parse_client_login(&[], supported_capabilities()).is_none());
        assert!(parse_client_login(&[0xff; 40], supported_capabilities()).is_none());
        assert!(parse_greeting(&[10, b'x']).is_none());
        assert_eq!(
            parse_auth_switch(b"\xfemysql_native_password\0abcdefghijklmnopqrst\0"),
            Some((NATIVE.to_string(), b"abcdefghijklmnopqrst".to_vec()))
        );
        assert!(sha2_rsa_password(b"pw", b"nonce", b"not a pem").is_none());
    }
}
