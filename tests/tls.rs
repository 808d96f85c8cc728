//! TLS on the client leg, through real clients: the `mariadb` CLI with `--ssl-verify-server-cert` (CA and
//! hostname checked), `openssl s_client -starttls mysql`, `tls.require`, client certificates
//! (`tls.client_ca`), and a certificate renewed on reload.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::proxy::{config_yaml, Proxy};
use common::{mariadb_cli, unique_name, Topology};

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

/// Connector/Python (the venv tests/drivers/install.sh makes) over TLS, verifying the certificate and host.
fn connector_python(proxy: &Proxy, ca: &str) -> Output {
    let python = common::repo_root().join("target/drivers-venv/bin/python");
    assert!(python.exists(), "{} is missing: run tests/drivers/install.sh", python.display());
    let script = "import os, mysql.connector\n\
        c = mysql.connector.connect(host='127.0.0.1', port=int(os.environ['PORT']), user='app', password='apppw',\n\
            use_pure=True, ssl_ca=os.environ['CA'], ssl_verify_cert=True, ssl_verify_identity=True)\n\
        cur = c.cursor(); cur.execute('SELECT @@server_id'); print(cur.fetchone()[0])\n";
    Command::new(python)
        .args(["-c", script])
        .env("PORT", proxy.addr.port().to_string())
        .env("CA", ca)
        .output()
        .expect("run python")
}

#[tokio::test(flavor = "multi_thread")]
async fn connector_python_verifies_the_certificate() {
    let topo = Topology::shared();
    let certs = Certs::new();
    let proxy = Proxy::start_yaml(&certs.tls_yaml(topo, "  require: true\n")).await;
    let out = tokio::task::block_in_place(|| connector_python(&proxy, &certs.path("ca.pem")));
    assert!(ok(&out), "{}", stderr(&out));
    let id: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("a server id");
    assert!((1..=3).contains(&id));
    let out = tokio::task::block_in_place(|| connector_python(&proxy, &certs.path("other-ca.pem")));
    assert!(!ok(&out), "Connector/Python accepted a certificate of another CA");
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
