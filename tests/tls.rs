//! TLS on the client leg, through real clients: the `mariadb` CLI with `--ssl-verify-server-cert` (CA and
//! hostname checked), `openssl s_client -starttls mysql`, `tls.require`, client certificates
//! (`tls.client_ca`), and a certificate renewed on reload. TLS on the backend leg, to the sandbox's servers
//! (which serve TLS with the sandbox's CA): verified, refused with another CA or name, with a client
//! certificate for an account created `REQUIRE X509`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::proxy::{config_yaml, Proxy};
use common::{mariadb_cli, unique_name, Topology};
use mysql_async::prelude::Queryable;

/// A CA, a server certificate for 127.0.0.1/localhost signed by it, and a client certificate, in a temp dir.
struct Certs {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Certs {
    fn new() -> Certs {
        let dir = std::env::temp_dir().join(unique_name("rwsplit_tls"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, cn) in [("ca", "rwsplit test CA"), ("other-ca", "another CA")] {
            let key = format!("{name}.key");
            let pem = format!("{name}.pem");
            let subj = format!("/CN={cn}");
            openssl(
                &dir,
                &[
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem, "-days", "2",
                    "-subj", &subj,
                ],
            );
        }
        for (name, ext) in [("server", "server.ext"), ("client", "client.ext"), ("renewed", "server.ext")] {
            let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
            let subj = format!("/CN={name}");
            openssl(&dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    ext,
                ],
            );
        }
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn tls_yaml(&self, topo: &Topology, extra: &str) -> String {
        format!(
            "{}tls:\n  cert: {}\n  key: {}\n{extra}",
            config_yaml(topo),
            self.path("server.pem"),
            self.path("server.key")
        )
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cli(proxy: &Proxy, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--batch", "--skip-column-names", "-e", "SELECT @@server_id"]);
    mariadb_cli(proxy.addr, "app", "apppw", &all, None)
}

fn ok(out: &Output) -> bool {
    out.status.success()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_verify_the_proxys_certificate_and_plain_clients_still_work() {
    let topo = Topology::shared();
    let certs = Certs::new();
    let proxy = Proxy::start_yaml(&certs.tls_yaml(topo, "")).await;
    let ca = format!("--ssl-ca={}", certs.path("ca.pem"));
    let out = cli(&proxy, &["--ssl", "--ssl-verify-server-cert", &ca]);
    assert!(ok(&out), "TLS with a verified certificate: {}", stderr(&out));
    let id: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("a server id");
    assert!((1..=3).contains(&id));
    // The same check against another CA fails: the certificate really is verified.
    let other = format!("--ssl-ca={}", certs.path("other-ca.pem"));
    let out = cli(&proxy, &["--ssl", "--ssl-verify-server-cert", &other]);
    assert!(!ok(&out), "a certificate from an unknown CA was accepted");
    // Without TLS (not required): still served.
    let out = cli(&proxy, &["--skip-ssl"]);
    assert!(ok(&out), "{}", stderr(&out));
    // openssl's own MySQL STARTTLS sees the proxy's certificate.
    let s_client = Command::new("openssl")
        .args(["s_client", "-starttls", "mysql", "-connect", &proxy.addr.to_string(), "-CAfile", &certs.path("ca.pem")])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&s_client.stdout);
    assert!(text.contains("CN=server") || text.contains("CN = server"), "{text}\n{}", stderr(&s_client));
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn require_refuses_plain_clients_and_client_ca_demands_a_certificate() {
    let topo = Topology::shared();
    let certs = Certs::new();
    let proxy = Proxy::start_yaml(&certs.tls_yaml(topo, "  require: true\n")).await;
    let out = cli(&proxy, &["--skip-ssl"]);
    assert!(!ok(&out));
    assert!(stderr(&out).contains("3159") && stderr(&out).contains("insecure transport"), "{}", stderr(&out));
    let out = cli(&proxy, &["--ssl"]);
    assert!(ok(&out), "{}", stderr(&out));

    let extra = format!("  require: true\n  client_ca: {}\n", certs.path("ca.pem"));
    let proxy = Proxy::start_yaml(&certs.tls_yaml(topo, &extra)).await;
    let out = cli(&proxy, &["--ssl"]);
    assert!(!ok(&out), "a client without a certificate got in");
    let (cert, key) =
        (format!("--ssl-cert={}", certs.path("client.pem")), format!("--ssl-key={}", certs.path("client.key")));
    let out = cli(&proxy, &["--ssl", &cert, &key]);
    assert!(ok(&out), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_is_served_after_a_reload_and_bad_files_are_rejected() {
    let topo = Topology::shared();
    let certs = Certs::new();
    let yaml = certs.tls_yaml(topo, "");
    let proxy = Proxy::start_yaml(&yaml).await;
    let renewed = yaml
        .replace(&certs.path("server.pem"), &certs.path("renewed.pem"))
        .replace(&certs.path("server.key"), &certs.path("renewed.key"));
    let report = rwsplit::reload::apply(&proxy.shared, rwsplit::Config::parse(&renewed, "t").unwrap());
    assert!(report.restart_needed.is_empty(), "{report}");
    let s_client = Command::new("openssl")
        .args(["s_client", "-starttls", "mysql", "-connect", &proxy.addr.to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&s_client.stdout);
    assert!(text.contains("CN=renewed") || text.contains("CN = renewed"), "{text}");
    // A file that holds no key, or a missing file, is a config problem naming the field.
    let not_a_key = yaml.replace(&certs.path("server.key"), &certs.path("server.ext"));
    let err = rwsplit::Config::parse(&not_a_key, "t").unwrap_err();
    assert!(err.problems.iter().any(|p| p.field == "tls.key"), "{err}");
    let missing = yaml.replace(&certs.path("server.pem"), &certs.path("nope.pem"));
    let err = rwsplit::Config::parse(&missing, "t").unwrap_err();
    assert!(err.problems.iter().any(|p| p.field == "tls.cert" && p.message.contains("cannot read")), "{err}");
}

/// A Python driver of the venv tests/drivers/install.sh makes, connecting to `proxy` with `connect` (a
/// Python expression using `PORT` and `CA`, verifying the certificate and host) and printing @@server_id.
fn python_over_tls(proxy: &Proxy, ca: &str, import: &str, connect: &str) -> Output {
    let python = common::repo_root().join("target/drivers-venv/bin/python");
    assert!(python.exists(), "{} is missing: run tests/drivers/install.sh", python.display());
    let script = format!(
        "import os, {import}\nPORT, CA = int(os.environ['PORT']), os.environ['CA']\nc = {connect}\n\
         cur = c.cursor(); cur.execute('SELECT @@server_id'); print(cur.fetchone()[0])\n"
    );
    Command::new(python)
        .args(["-c", &script])
        .env("PORT", proxy.addr.port().to_string())
        .env("CA", ca)
        .output()
        .expect("run python")
}

/// The driver gets through `tls.require` with the proxy's CA (a server id comes back) and refuses the
/// certificate when it trusts another CA.
async fn python_driver_verifies_the_certificate(driver: &str, import: &str, connect: &str) {
    let topo = Topology::shared();
    let certs = Certs::new();
    let proxy = Proxy::start_yaml(&certs.tls_yaml(topo, "  require: true\n")).await;
    let out = tokio::task::block_in_place(|| python_over_tls(&proxy, &certs.path("ca.pem"), import, connect));
    assert!(ok(&out), "{driver}: {}", stderr(&out));
    let id: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("a server id");
    assert!((1..=3).contains(&id));
    let out = tokio::task::block_in_place(|| python_over_tls(&proxy, &certs.path("other-ca.pem"), import, connect));
    assert!(!ok(&out), "{driver} accepted a certificate of another CA");
}

#[tokio::test(flavor = "multi_thread")]
async fn connector_python_verifies_the_certificate() {
    let connect = "mysql.connector.connect(host='127.0.0.1', port=PORT, user='app', password='apppw', \
                   use_pure=True, ssl_ca=CA, ssl_verify_cert=True, ssl_verify_identity=True)";
    python_driver_verifies_the_certificate("Connector/Python", "mysql.connector", connect).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_endpoint_serves_https_with_metrics_tls() {
    let topo = Topology::shared();
    let certs = Certs::new();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
    let proxy = Proxy::start_yaml(&certs.tls_yaml(topo, &format!("metrics:\n  listen: {addr}\n  tls: true\n"))).await;
    let url = format!("https://127.0.0.1:{}/metrics", addr.port());
    let mut body = String::new();
    for _ in 0..100 {
        // curl is not guaranteed; openssl s_client speaks the request instead.
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-connect",
                &addr.to_string(),
                "-CAfile",
                &certs.path("ca.pem"),
                "-verify_return_error",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().expect("stdin").write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
                child.wait_with_output()
            })
            .expect("openssl s_client");
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        if body.contains("rwsplit_client_connections") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(body.starts_with("HTTP/1.1 200 OK") && body.contains("rwsplit_client_connections"), "{url}: {body}");
    drop(proxy);
    // metrics.tls without a tls: section is a config problem.
    let yaml = format!("{}metrics:\n  listen: {addr}\n  tls: true\n", config_yaml(topo));
    let err = rwsplit::Config::parse(&yaml, "t").unwrap_err();
    assert!(err.problems.iter().any(|p| p.field == "metrics.tls"), "{err}");
}

/// A config whose every backend has `tls` (the lines under a replica's `tls:`, indented by six; empty for
/// none) with the sandbox's files in `{sandbox}`, and the users app and x509.
fn backend_tls_yaml(topo: &Topology, tls: &str) -> String {
    let tls = tls.replace("{sandbox}", &topo.dir.join("tls").to_string_lossy());
    // Empty: no tls: at all.
    let (key, replica_key) = if tls.is_empty() { ("", "") } else { ("  tls:\n", "    tls:\n") };
    let master_tls: String = tls.lines().map(|l| format!("{}\n", &l[2..])).collect();
    let replicas: String = topo.replicas.iter().map(|r| format!("  - address: {r}\n{replica_key}{tls}")).collect();
    format!(
        "listen: 127.0.0.1:0\nusers:\n  - user: app\n    password: apppw\n  - user: x509\n    password: x509pw\n\
         master:\n  address: {}\n{key}{master_tls}replicas:\n{replicas}connect_timeout: 1s\nshutdown_grace: 1s\n",
        topo.master
    )
}

const SSL_VERSION: &str =
    "SELECT @@server_id, (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_version')";

/// The server id and the TLS version (empty without TLS) of the backend connection a statement ran on.
async fn backend_tls_of(conn: &mut mysql_async::Conn, in_transaction: bool) -> (u32, String) {
    if in_transaction {
        conn.query_drop("START TRANSACTION").await.expect("begin");
    }
    let row: (u32, String) = conn.query_first(SSL_VERSION).await.expect("the query runs").expect("a row");
    if in_transaction {
        conn.query_drop("COMMIT").await.expect("commit");
    }
    row
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_legs_use_tls_verified_against_the_servers_ca() {
    let topo = Topology::shared();
    let proxy = Proxy::start_yaml(&backend_tls_yaml(topo, "      ca: {sandbox}/ca.pem\n")).await;
    let mut conn = proxy.conn().await;
    let (replica, version) = backend_tls_of(&mut conn, false).await;
    assert!((2..=3).contains(&replica), "a plain read goes to a replica, got server {replica}");
    assert!(version.starts_with("TLSv1."), "replica leg without TLS: {version:?}");
    let (master, version) = backend_tls_of(&mut conn, true).await;
    assert_eq!(master, 1, "a transaction runs on the master");
    assert!(version.starts_with("TLSv1."), "master leg without TLS: {version:?}");
    conn.query_drop("CREATE TABLE IF NOT EXISTS app.tls_backend (id INT PRIMARY KEY)").await.unwrap();
    conn.query_drop("REPLACE INTO app.tls_backend VALUES (1)").await.expect("a write over TLS");
    drop(conn);
    // The same statement through a proxy without backend TLS: the check can tell.
    let plain = Proxy::start(topo).await;
    let (_, version) = backend_tls_of(&mut plain.conn().await, true).await;
    assert_eq!(version, "", "the servers report no TLS on a plain connection");
}

/// The error a client gets when it connects through `proxy` (which reaches the master at login) or, if
/// that succeeds, for its first statement.
async fn first_error(proxy: &Proxy, user: &str, password: &str) -> mysql_async::ServerError {
    let result = match mysql_async::Conn::new(proxy.opts(user, password)).await {
        Ok(mut conn) => conn.query_first::<(u32, String), _>(SSL_VERSION).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Err(mysql_async::Error::Server(e)) => e,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_certificate_from_another_ca_or_for_another_name_is_refused() {
    let topo = Topology::shared();
    let certs = Certs::new();
    let other_ca = format!("      ca: {}\n", certs.path("other-ca.pem"));
    let proxy = Proxy::start_yaml(&backend_tls_yaml(topo, &other_ca)).await;
    let e = first_error(&proxy, "app", "apppw").await;
    assert_eq!(e.code, 1105, "{e:?}");
    assert!(e.message.contains("TLS to backend") && e.message.contains("UnknownIssuer"), "{}", e.message);
    let wrong_name = "      ca: {sandbox}/ca.pem\n      server_name: db.example.com\n";
    let proxy = Proxy::start_yaml(&backend_tls_yaml(topo, wrong_name)).await;
    let e = first_error(&proxy, "app", "apppw").await;
    assert_eq!(e.code, 1105, "{e:?}");
    assert!(e.message.contains("db.example.com"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_lets_a_require_x509_account_in() {
    let topo = Topology::shared();
    // Without a client certificate the server refuses the account, and the client gets its error.
    let proxy = Proxy::start_yaml(&backend_tls_yaml(topo, "      ca: {sandbox}/ca.pem\n")).await;
    let e = first_error(&proxy, "x509", "x509pw").await;
    assert_eq!(e.code, 1045, "{e:?}");
    let with_cert = "      ca: {sandbox}/ca.pem\n      cert: {sandbox}/client.pem\n      key: {sandbox}/client.key\n";
    let proxy = Proxy::start_yaml(&backend_tls_yaml(topo, with_cert)).await;
    let mut conn = proxy.conn_as("x509", "x509pw", "app").await;
    let (replica, version) = backend_tls_of(&mut conn, false).await;
    assert!((2..=3).contains(&replica) && version.starts_with("TLSv1."), "{replica} {version:?}");
    let (master, _) = backend_tls_of(&mut conn, true).await;
    assert_eq!(master, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_health_checker_uses_the_backends_tls_and_client_certificate() {
    let topo = Topology::shared();
    // A monitoring account the servers admit only over TLS with a certificate (created on the master,
    // replicated to the replicas).
    let mut root = topo.root(topo.master).await;
    root.query_drop(
        "CREATE USER IF NOT EXISTS 'monitor_x509'@'%' IDENTIFIED BY 'monitorpw' REQUIRE X509; \
         GRANT SLAVE MONITOR, REPLICATION CLIENT, PROCESS ON *.* TO 'monitor_x509'@'%'",
    )
    .await
    .unwrap();
    drop(root);
    topo.wait_replicated().await;
    let health = "health:\n  user: monitor_x509\n  password: monitorpw\n  interval: 100ms\n  timeout: 1s\n";
    let all_up = |h: &rwsplit::health::Snapshot| topo.servers().iter().all(|a| h.reachable(&a.to_string()));
    let with_cert = "      ca: {sandbox}/ca.pem\n      cert: {sandbox}/client.pem\n      key: {sandbox}/client.key\n";
    let proxy = Proxy::start_yaml(&format!("{}{health}", backend_tls_yaml(topo, with_cert))).await;
    proxy.wait_health("every backend answers its probes over TLS", std::time::Duration::from_secs(10), all_up).await;
    let replicas = |h: &rwsplit::health::Snapshot| topo.replicas.iter().all(|a| h.serves_reads(&a.to_string()));
    proxy.wait_health("the replicas serve reads", std::time::Duration::from_secs(10), replicas).await;
    // Without the client certificate the servers refuse the account: the probes fail.
    let ca_only = "      ca: {sandbox}/ca.pem\n";
    let proxy = Proxy::start_yaml(&format!("{}{health}", backend_tls_yaml(topo, ca_only))).await;
    let refused = |h: &rwsplit::health::Snapshot| {
        topo.servers().iter().all(|a| {
            h.servers.get(&*a.to_string()).and_then(|s| s.last_error.as_deref()).is_some_and(|e| e.contains("1045"))
        })
    };
    proxy
        .wait_health("every probe is refused without the certificate", std::time::Duration::from_secs(10), refused)
        .await;
}

/// mysql_async (rustls) through the proxy's client-leg TLS, trusting the CA in `ca`.
async fn mysql_async_tls(proxy: &Proxy, ca: &str) -> mysql_async::Result<u32> {
    let ssl = mysql_async::SslOpts::default()
        .with_root_certs(vec![std::path::PathBuf::from(ca).into()])
        .with_disable_built_in_roots(true);
    let opts = mysql_async::OptsBuilder::from_opts(proxy.opts("app", "apppw")).ssl_opts(ssl);
    let mut conn = mysql_async::Conn::new(opts).await?;
    let id: Option<u32> = conn.query_first("SELECT @@server_id").await?;
    conn.disconnect().await?;
    Ok(id.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_async_verifies_the_certificate() {
    let topo = Topology::shared();
    let certs = Certs::new();
    let proxy = Proxy::start_yaml(&certs.tls_yaml(topo, "  require: true\n")).await;
    let id = mysql_async_tls(&proxy, &certs.path("ca.pem")).await.expect("TLS with the proxy's CA");
    assert!((1..=3).contains(&id));
    let refused = mysql_async_tls(&proxy, &certs.path("other-ca.pem")).await;
    assert!(refused.is_err(), "mysql_async accepted a certificate of another CA");
    // Under require, the same client without TLS is refused by the proxy.
    let plain = mysql_async::Conn::new(proxy.opts("app", "apppw")).await;
    assert!(matches!(plain, Err(mysql_async::Error::Server(ref e)) if e.code == 3159), "{plain:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pymysql_verifies_the_certificate() {
    // PyMySQL ignores an ssl= dict when any ssl_* argument is given: the arguments alone, as here.
    let connect = "pymysql.connect(host='127.0.0.1', port=PORT, user='app', password='apppw', ssl_ca=CA, \
                   ssl_verify_cert=True, ssl_verify_identity=True)";
    python_driver_verifies_the_certificate("PyMySQL", "pymysql", connect).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_port_serves_tls_only_with_admin_tls() {
    let topo = Topology::shared();
    let certs = Certs::new();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
    let section = format!("admin:\n  listen: {admin}\n  user: admin\n  password: adminpw\n  tls: true\n");
    let _proxy = Proxy::start_yaml(&certs.tls_yaml(topo, &section)).await;
    let run = |args: Vec<String>| {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["--batch", "-e", "SHOW POOLS"]);
        mariadb_cli(admin, "admin", "adminpw", &all, None)
    };
    let ca = format!("--ssl-ca={}", certs.path("ca.pem"));
    // The port opens once the proxy has started; poll until the CLI gets through.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let out = loop {
        let out =
            tokio::task::block_in_place(|| run(vec!["--ssl".into(), "--ssl-verify-server-cert".into(), ca.clone()]));
        if ok(&out)
            || std::time::Instant::now() > deadline
            || !stderr(&out).contains("2002") && !stderr(&out).contains("2003")
        {
            break out;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(ok(&out), "admin over verified TLS: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("backend\tin_use\tidle"), "{out:?}");
    let other = format!("--ssl-ca={}", certs.path("other-ca.pem"));
    let out = tokio::task::block_in_place(|| run(vec!["--ssl".into(), "--ssl-verify-server-cert".into(), other]));
    assert!(!ok(&out), "a certificate of another CA was accepted");
    let out = tokio::task::block_in_place(|| run(vec!["--skip-ssl".into()]));
    assert!(!ok(&out) && stderr(&out).contains("3159"), "a plain admin client: {}", stderr(&out));
    // A wrong password over TLS is refused as without it.
    let out = tokio::task::block_in_place(|| {
        mariadb_cli(admin, "admin", "wrong", &["--ssl", "--ssl-verify-server-cert", &ca, "-e", "SHOW POOLS"], None)
    });
    assert!(!ok(&out) && stderr(&out).contains("1045"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_reload_turns_backend_tls_on_no_plain_pooled_connection_is_reused() {
    let topo = Topology::shared();
    let proxy = Proxy::start_yaml(&backend_tls_yaml(topo, "")).await;
    let mut conn = proxy.conn().await;
    let (_, version) = backend_tls_of(&mut conn, false).await;
    assert_eq!(version, "");
    let (_, version) = backend_tls_of(&mut conn, true).await;
    assert_eq!(version, "");
    conn.disconnect().await.unwrap();
    // Both legs go back to the pool.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while proxy.shared.pool().idle_count(&topo.master.to_string()) == 0 {
        assert!(std::time::Instant::now() < deadline, "the master connection was never pooled");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let with_tls = rwsplit::Config::parse(&backend_tls_yaml(topo, "      ca: {sandbox}/ca.pem\n"), "t").unwrap();
    let report = rwsplit::reload::apply(&proxy.shared, with_tls);
    assert!(report.restart_needed.is_empty(), "{report}");
    let mut conn = proxy.conn().await;
    let (_, version) = backend_tls_of(&mut conn, true).await;
    assert!(version.starts_with("TLSv1."), "the master leg reused a plain pooled connection: {version:?}");
    let (_, version) = backend_tls_of(&mut conn, false).await;
    assert!(version.starts_with("TLSv1."), "the replica leg reused a plain pooled connection: {version:?}");
}
