//! Backend login paths MariaDB cannot exercise (it has no caching_sha2_password), against a scripted server
//! speaking the MySQL 8 handshake as documented: fast auth, full auth with the server's RSA public key,
//! auth switch, and a refused login.

use std::sync::Arc;
use std::time::Duration;

use rwsplit::backend::{BackendConn, Connected, Credentials, LoginKey};
use rwsplit::config::Secret;
use rwsplit_wire::auth;
use rwsplit_wire::packet::{err_payload, ok_payload};
use rwsplit_wire::{CapabilityFlags, Frame, StatusFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PEM: &[u8] = include_bytes!("data/rsa_public_key.pem");

async fn read<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Frame {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await.unwrap();
    let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    let mut p = vec![0; len];
    s.read_exact(&mut p).await.unwrap();
    Frame::new(h[3], &p)
}

async fn write<S: tokio::io::AsyncWrite + Unpin>(s: &mut S, seq: u8, p: &[u8]) {
    s.write_all(Frame::new(seq, p).as_bytes()).await.unwrap();
}

/// What the scripted server does after the client's handshake response.
#[derive(Clone, Copy)]
enum Script {
    FastAuth,
    /// Fast auth, then the server never answers again (a hung server), holding the socket open.
    FastAuthThenHang,
    FullAuth,
    SwitchToNative,
    Refuse,
    /// Full authentication asked of a proxy that has no pinned key for the server.
    FullAuthUnpinned,
}

/// Serves one login; returns what the server received from the client after the greeting.
async fn serve(listener: TcpListener, script: Script) -> Vec<Vec<u8>> {
    let (mut s, _) = listener.accept().await.unwrap();
    let nonce = auth::new_scramble();
    // No session tracking offered: the proxy then runs no setup statements after login (the script ends there).
    let caps = auth::supported_capabilities() - CapabilityFlags::CLIENT_SESSION_TRACK;
    let mut greeting = auth::greeting("8.0.36", 7, &nonce, 255, caps).to_vec();
    // Announce caching_sha2_password as the default plugin (the last NUL-terminated string).
    let native = greeting.windows(21).position(|w| w == auth::NATIVE.as_bytes()).unwrap();
    greeting.truncate(native);
    greeting.extend_from_slice(auth::CACHING_SHA2.as_bytes());
    greeting.push(0);
    write(&mut s, 0, &greeting).await;
    let mut got = Vec::new();
    let resp = read(&mut s).await;
    let login = auth::parse_client_login(resp.payload(), auth::supported_capabilities()).unwrap();
    assert_eq!(login.plugin, auth::CACHING_SHA2);
    assert!(auth::verify_scramble(auth::CACHING_SHA2, &nonce, b"secret", &login.auth_response));
    got.push(resp.payload().to_vec());
    got.push(Vec::new()); // placeholder for the encrypted password (full auth)
    got.push(nonce.to_vec());
    let ok = ok_payload(0, 0, StatusFlags::SERVER_STATUS_AUTOCOMMIT, 0);
    match script {
        Script::FastAuth => {
            write(&mut s, 2, &[0x01, auth::sha2_msg::FAST_AUTH_OK]).await;
            write(&mut s, 3, &ok).await;
        }
        Script::FastAuthThenHang => {
            write(&mut s, 2, &[0x01, auth::sha2_msg::FAST_AUTH_OK]).await;
            write(&mut s, 3, &ok).await;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(s);
            });
        }
        Script::FullAuth => {
            // The proxy has the key pinned: it never asks for it, it sends the encrypted password at once.
            write(&mut s, 2, &[0x01, auth::sha2_msg::PERFORM_FULL_AUTH]).await;
            let encrypted = read(&mut s).await;
            assert_eq!(encrypted.seq(), 3);
            assert_ne!(encrypted.payload(), [auth::sha2_msg::REQUEST_PUBLIC_KEY], "asked for the server's key");
            got[1] = encrypted.payload().to_vec();
            write(&mut s, 4, &ok).await;
        }
        Script::FullAuthUnpinned => {
            write(&mut s, 2, &[0x01, auth::sha2_msg::PERFORM_FULL_AUTH]).await;
            // Whatever comes (nothing, or a close), it is not a request for the key.
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
            got[1] = rest;
        }
        Script::SwitchToNative => {
            let new_nonce = auth::new_scramble();
            write(&mut s, 2, &auth::auth_switch_request(auth::NATIVE, &new_nonce)).await;
            let answer = read(&mut s).await;
            assert!(auth::verify_scramble(auth::NATIVE, &new_nonce, b"secret", answer.payload()));
            write(&mut s, answer.seq() + 1, &ok).await;
        }
        Script::Refuse => {
            write(&mut s, 2, &err_payload(1045, b"28000", "Access denied for user 'app'")).await;
        }
    }
    got
}

type Login = Result<Connected, rwsplit::error::BackendError>;

/// The proxy's login as `app`/`secret` to the scripted server at `addr`.
fn credentials(
    addr: Arc<str>,
    public_key: Option<Arc<Vec<u8>>>,
    tls: Option<rwsplit::config::BackendTls>,
) -> Credentials {
    Credentials {
        key: LoginKey {
            addr,
            user: "app".into(),
            database: None,
            collation: 45,
            capabilities: auth::supported_capabilities().bits(),
            tls: tls.is_some(),
        },
        password: Secret::new("secret"),
        op_timeout: Duration::from_secs(5),
        public_key,
        attributes: Arc::new(Vec::new()),
        tls,
    }
}

async fn login(script: Script) -> (Login, Vec<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: Arc<str> = listener.local_addr().unwrap().to_string().into();
    let server = tokio::spawn(serve(listener, script));
    let public_key = (!matches!(script, Script::FullAuthUnpinned)).then(|| Arc::new(PEM.to_vec()));
    let creds = credentials(addr, public_key, None);
    let result = BackendConn::connect(&creds, Duration::from_secs(5)).await;
    (result, server.await.unwrap())
}

#[tokio::test]
async fn caching_sha2_fast_auth() {
    let (result, _) = login(Script::FastAuth).await;
    let Connected { conn, version, defaults, .. } = result.expect("fast auth logs in");
    assert_eq!(version, "8.0.36");
    assert_eq!(conn.thread_id, 7);
    assert!(conn.caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41));
    assert!(!conn.tracking && defaults.is_none(), "no session tracking without the capability");
}

#[tokio::test]
async fn caching_sha2_full_auth_sends_the_rsa_encrypted_password() {
    let (result, got) = login(Script::FullAuth).await;
    result.expect("full auth logs in");
    assert_eq!(got[1].len(), 256, "RSA-2048 ciphertext");
    // Decrypt with the test key's private half (RSA-OAEP, as MySQL 8 uses): password + NUL, XOR the nonce.
    let dir = std::env::temp_dir().join(format!("rwsplit-rsa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("c.bin"), &got[1]).unwrap();
    let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rsa_private_key.pem");
    let out = std::process::Command::new("openssl")
        .args(["pkeyutl", "-decrypt", "-inkey", key, "-pkeyopt", "rsa_padding_mode:oaep", "-in"])
        .arg(dir.join("c.bin"))
        .output()
        .expect("openssl is installed");
    std::fs::remove_dir_all(&dir).ok();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let nonce = &got[2];
    let plain: Vec<u8> = out.stdout.iter().zip(nonce.iter().cycle()).map(|(b, n)| b ^ n).collect();
    assert_eq!(plain, b"secret\0");
}

#[tokio::test]
async fn the_proxys_own_commands_on_a_hung_server_are_bounded_by_backend_timeout() {
    let (result, _) = login(Script::FastAuthThenHang).await;
    let Connected { mut conn, .. } = result.expect("fast auth logs in");
    conn.op_timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let outcome = conn.run(b"\x03SET @a = 1", rwsplit_wire::walk::Expect::ResultSets).await;
    assert!(matches!(outcome, Err(rwsplit::error::BackendError::Timeout(_))), "{:?}", outcome.map(|_| ()));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(conn.mid_response, "a timed-out connection is marked mid-response, so it is never reused");
}

#[tokio::test]
async fn without_a_pinned_key_full_authentication_is_refused_and_no_key_is_requested() {
    let (result, got) = login(Script::FullAuthUnpinned).await;
    match result {
        Err(rwsplit::error::BackendError::Login(e)) => {
            assert_eq!(e.code, 1105);
            assert!(e.message.contains("public_key"), "{}", e.message);
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    assert!(got[1].is_empty(), "the proxy sent {:?} after PERFORM_FULL_AUTH", got[1]);
}

#[tokio::test]
async fn auth_switch_to_native() {
    let (result, _) = login(Script::SwitchToNative).await;
    result.expect("auth switch logs in");
}

#[tokio::test]
async fn refused_login_is_reported_with_the_server_error() {
    let (result, _) = login(Script::Refuse).await;
    match result {
        Err(rwsplit::error::BackendError::Login(e)) => assert_eq!(e.code, 1045),
        other => panic!("expected a login error, got {:?}", other.map(|_| ())),
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, and a second CA, made with openssl in a
/// temporary directory.
struct Certs(std::path::PathBuf);

impl Certs {
    fn new() -> Certs {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rwsplit-backend-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl").args(args).current_dir(&dir).output().expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        for ca in ["ca", "other-ca"] {
            let (key, pem, subj) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN={ca}"));
            openssl(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem, "-subj", &subj]);
        }
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=s",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Certs(dir)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.0.join(name)).unwrap()
    }

    /// The proxy's TLS settings for a backend at `addr`, trusting `ca`.
    fn backend_tls(&self, addr: &str, ca: &str, server_name: Option<&str>) -> rwsplit::config::BackendTls {
        let mut yaml =
            format!("listen: 127.0.0.1:0\nmaster:\n  address: {addr}\n  tls:\n    ca: {}\n", self.0.join(ca).display());
        if let Some(name) = server_name {
            yaml.push_str(&format!("    server_name: {name}\n"));
        }
        yaml.push_str("users:\n  - user: app\n    password: secret\nhealth:\n  user: monitor\n  password: monitorpw\n");
        let config = rwsplit::config::Config::parse(&yaml, "test.yaml").expect("the config parses");
        config.tls_of(addr).expect("the master has tls")
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// How the scripted TLS server behaves.
#[derive(Clone, Copy, PartialEq)]
enum TlsScript {
    /// Offers TLS, then asks for caching_sha2_password full authentication over it.
    FullAuth,
    /// Does not offer TLS in its greeting.
    NoTls,
}

/// Serves one login that starts TLS; returns what the server got after full auth was asked for (or, when
/// the proxy refused, whatever it sent after the greeting).
async fn serve_tls(listener: TcpListener, certs: Arc<Certs>, script: TlsScript) -> Vec<u8> {
    let (mut s, _) = listener.accept().await.unwrap();
    let nonce = auth::new_scramble();
    let mut caps = auth::supported_capabilities() - CapabilityFlags::CLIENT_SESSION_TRACK;
    if script == TlsScript::FullAuth {
        caps |= CapabilityFlags::CLIENT_SSL;
    }
    let mut greeting = auth::greeting("8.0.36", 7, &nonce, 255, caps).to_vec();
    let native = greeting.windows(21).position(|w| w == auth::NATIVE.as_bytes()).unwrap();
    greeting.truncate(native);
    greeting.extend_from_slice(auth::CACHING_SHA2.as_bytes());
    greeting.push(0);
    write(&mut s, 0, &greeting).await;
    if script == TlsScript::NoTls {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
        return rest;
    }
    let request = read(&mut s).await;
    assert_eq!((request.seq(), request.payload().len()), (1, 32), "an SSLRequest");
    let flags = u32::from_le_bytes(request.payload()[..4].try_into().unwrap());
    assert!(CapabilityFlags::from_bits_retain(flags).contains(CapabilityFlags::CLIENT_SSL));
    use rustls_pki_types::pem::PemObject;
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(&certs.read("server.pem"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&certs.read("server.key")).unwrap();
    let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap();
    let Ok(mut s) = tokio_rustls::TlsAcceptor::from(Arc::new(config)).accept(s).await else {
        return Vec::new(); // the proxy rejected the certificate
    };
    let resp = read(&mut s).await;
    assert_eq!(resp.seq(), 2);
    let login = auth::parse_client_login(resp.payload(), auth::supported_capabilities()).unwrap();
    assert_eq!(login.user, "app");
    assert!(auth::verify_scramble(auth::CACHING_SHA2, &nonce, b"secret", &login.auth_response));
    write(&mut s, 3, &[0x01, auth::sha2_msg::PERFORM_FULL_AUTH]).await;
    let password = read(&mut s).await;
    assert_eq!(password.seq(), 4);
    write(&mut s, 5, &ok_payload(0, 0, StatusFlags::SERVER_STATUS_AUTOCOMMIT, 0)).await;
    password.payload().to_vec()
}

async fn login_tls(script: TlsScript, ca: &str, server_name: Option<&str>) -> (Login, Vec<u8>) {
    let certs = Arc::new(Certs::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: Arc<str> = listener.local_addr().unwrap().to_string().into();
    let tls = certs.backend_tls(&addr, ca, server_name);
    let server = tokio::spawn(serve_tls(listener, Arc::clone(&certs), script));
    let creds = credentials(addr, None, Some(tls));
    let result = BackendConn::connect(&creds, Duration::from_secs(5)).await;
    (result, server.await.unwrap())
}

fn expect_tls_refusal(result: Login, needle: &str) {
    match result {
        Err(rwsplit::error::BackendError::Login(e)) => {
            assert_eq!(e.code, 1105, "{}", e.message);
            assert!(e.message.contains(needle), "{}", e.message);
        }
        other => panic!("expected a TLS refusal, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn over_verified_tls_full_authentication_sends_the_password_in_the_clear() {
    let (result, password) = login_tls(TlsScript::FullAuth, "ca.pem", None).await;
    let Connected { conn, .. } = result.expect("logs in over TLS");
    assert!(conn.wire.is_tls());
    assert_eq!(password, b"secret\0", "inside TLS, no key is needed");
}

#[tokio::test]
async fn a_certificate_from_another_ca_or_for_another_name_is_refused() {
    let (result, password) = login_tls(TlsScript::FullAuth, "other-ca.pem", None).await;
    expect_tls_refusal(result, "handshake");
    assert!(password.is_empty());
    let (result, password) = login_tls(TlsScript::FullAuth, "ca.pem", Some("db.example.com")).await;
    expect_tls_refusal(result, "db.example.com");
    assert!(password.is_empty());
}

#[tokio::test]
async fn a_backend_that_does_not_offer_tls_is_never_used_in_plain() {
    let (result, sent) = login_tls(TlsScript::NoTls, "ca.pem", None).await;
    expect_tls_refusal(result, "does not offer TLS");
    assert!(sent.is_empty(), "the proxy sent {} bytes (its login) in plain", sent.len());
}
