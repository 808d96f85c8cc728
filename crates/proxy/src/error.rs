//! Errors, by whose fault they are: the client's (close that session), a backend's (suspect the backend,
//! tell the client with a MySQL error), or the proxy's own.

use rwsplit_wire::packet::ErrPacket;

/// A session-level failure.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client sent something invalid or went away: the session ends.
    #[error("client: {0}")]
    Client(#[from] ClientError),
    /// A backend failed in a way that leaves the session unusable (e.g. mid-response).
    #[error("backend {addr}: {source}")]
    Backend {
        /// Which backend.
        addr: String,
        /// What happened.
        source: BackendError,
    },
    /// An invariant of the proxy's own did not hold (a bug): the session ends rather than guess.
    #[error("internal: {0}")]
    Internal(&'static str),
}

/// Client-side failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Socket error or close.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A packet that breaks the protocol.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// A packet larger than max_allowed_packet.
    #[error("packet of {0} bytes exceeds max_allowed_packet")]
    TooLarge(usize),
    /// Login refused.
    #[error("authentication failed for user {0:?}")]
    AuthFailed(String),
}

/// Backend-side failures.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Could not connect (refused, unreachable, timeout).
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// Connected but the login failed; the server's error is passed to the client.
    #[error("login refused: {0}")]
    Login(ErrPacket),
    /// Socket error or close while talking to it.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// `pool.max_backend_connections` connections to the backend are open and none was released in time.
    #[error("{0}")]
    Full(String),
    /// One of the proxy's own commands got no answer within `backend_timeout`.
    #[error("no answer within {0:?} (backend_timeout)")]
    Timeout(std::time::Duration),
    /// The health checker reports the backend unreachable (e.g. hung) while the proxy waited on it.
    #[error("the health checker reports it unreachable")]
    Unreachable,
    /// The server sent something the proxy does not understand.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// The server's response cannot be walked.
    #[error("protocol: {0}")]
    Walk(#[from] rwsplit_wire::walk::WalkError),
    /// The server asks for an authentication plugin the proxy cannot speak.
    #[error("asks for unsupported auth plugin {0}")]
    UnsupportedPlugin(String),
    /// The server closed an idle connection, or sent something on it unasked (MySQL's ERR 4031 on
    /// `wait_timeout`).
    #[error("the server closed the connection while it was idle{}", .0.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    Closed(Option<ErrPacket>),
    /// A new connection refused to take the session's state (a SET or USE replayed on it failed).
    #[error("cannot restore the session's state on a new connection: {0}")]
    StateRefused(ErrPacket),
}

/// Codes of the errors rwsplit itself answers with (in ERR packets, next to a message naming the backend
/// and the reason). MySQL reserves 2000–2999 for errors a *client library* raises; MariaDB Connector/C (the
/// `mariadb` client, sysbench, Python mysqlclient, …) answers a server ERR packet carrying one of 2001–2998
/// with its own 2027 "Received malformed packet", losing the message, so rwsplit only uses server codes.
pub mod code {
    /// A backend the command needs cannot be reached (the master while it is down, no backend at all at
    /// connect, a KILL that cannot reach the server): nothing ran; MariaDB's "Server shutdown in progress"
    /// (SQLSTATE 08S01), what a server answers when it cannot take the work. The session goes on.
    pub const UNAVAILABLE: (u16, &[u8; 5]) = (1053, b"08S01");
    /// The backend connection died under a command, or a connection that held the session's state is gone:
    /// MariaDB's "Connection was killed" (SQLSTATE 70100); the session ends after it, as a direct
    /// connection would.
    pub const LOST: (u16, &[u8; 5]) = (1927, b"70100");
    /// A backend login rwsplit cannot make as configured (TLS to it failed, no key for caching_sha2
    /// full authentication): ER_UNKNOWN_ERROR with the reason.
    pub const BACKEND_LOGIN: (u16, &[u8; 5]) = (1105, b"HY000");
}

#[cfg(test)]
mod tests {
    #[test]
    fn rwsplit_never_answers_with_a_client_library_code() {
        for (code, state) in [super::code::UNAVAILABLE, super::code::LOST, super::code::BACKEND_LOGIN] {
            assert!(!(2000..3000).contains(&code), "{code} is in the client range");
            assert!(state.iter().all(u8::is_ascii_alphanumeric));
        }
    }
}
