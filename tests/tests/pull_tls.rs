//! Gallery pulling over HTTPS with a pinned CA (`gallery.ca_file`): a real TLS server (Python's
//! `http.server` wrapped in `ssl`, certificates made with `openssl` for this test) serves a
//! published gallery. A door pinning the server's CA installs it, and its later polls are answered
//! 304 (Last-Modified); a door pinning another CA refuses the connection, logs the failure once
//! and stays locked without a gallery.

use facegate_tests::door::{events, set_up_people};
use facegate_tests::pg::free_port;
use facegate_tests::{ok, orl_photo, run, split};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn openssl(args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("openssl could not be started ({e}); `make setup` installs it"));
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A CA (`NAME.pem`, `NAME.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let (pem, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        pem.to_str().unwrap(),
    ]);
}

/// A server certificate for 127.0.0.1 signed by the CA `ca` (`server.pem`, `server.key`).
fn make_server_cert(dir: &Path, ca: &str) {
    let p = |f: &str| dir.join(f).display().to_string();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p(&format!("{ca}.pem")),
        "-CAkey",
        &p(&format!("{ca}.key")),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("server.pem"),
    ]);
}

const SERVER: &str = r#"
import functools, http.server, ssl, sys
port, folder, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn door(dir: &Path, url: &str, public: &str, ca: &Path, face: &Path) -> Killed {
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    let config = format!(
        "[model]\nencoder = \"models/facegate-default.onnx\"\n\
         [gallery]\ninbox = {:?}\nstate_dir = {:?}\ntrusted_keys = [{public:?}]\nreload_interval_ms = 200\n\
         url = {url:?}\nfetch_interval_ms = 1000\nfetch_timeout_ms = 5000\nca_file = {:?}\n\
         [source]\nuri = \"image:{}\"\nfps = 10\nrepeat = 100000\n\
         [lock]\nkind = \"dry-run\"\n[log]\npath = {:?}\n[metrics]\npath = {:?}\ninterval_ms = 500\n",
        p("inbox/gallery.fgg"),
        p("state"),
        ca.display(),
        face.display(),
        p("events.jsonl"),
        p("door.prom"),
    );
    std::fs::write(dir.join("door.toml"), config).unwrap();
    Killed(
        Command::new(facegate_tests::bin("facegate-door"))
            .current_dir(facegate_tests::root())
            .args(["run", "--config", &p("door.toml")])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("facegate-door starts"),
    )
}

fn gallery_events(dir: &Path) -> Vec<(String, String)> {
    let p = dir.join("events.jsonl");
    if !p.exists() {
        return Vec::new();
    }
    events(&p)
        .iter()
        .filter(|e| e["event"] == "gallery")
        .map(|e| (e["reason"].as_str().unwrap_or("-").to_owned(), e["detail"].as_str().unwrap_or("").to_owned()))
        .collect()
}

fn metric(dir: &Path, name: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("door.prom")).ok()?;
    let m = facegate_shared::prometheus::parse(&text).ok()?;
    facegate_shared::prometheus::value_of(&m, name, &[])
}

#[test]
fn a_door_pinning_the_servers_ca_installs_over_https_and_one_pinning_another_ca_refuses() {
    let people = split("test");
    let u = set_up_people(&people[..2], &people[2..3]);
    let tls = tempfile::tempdir().unwrap();
    make_ca(tls.path(), "gym-ca");
    make_ca(tls.path(), "other-ca");
    make_server_cert(tls.path(), "gym-ca");
    let site = tempfile::tempdir().unwrap();
    ok(&run(
        "facegate",
        &["gallery", "publish", &u.path("inbox/gym.fgg"), site.path().to_str().unwrap(), "--trust", &u.path("k.pub")],
    ));
    let port = free_port();
    let _server = Killed(
        Command::new("python3")
            .args(["-c", SERVER, &port.to_string(), site.path().to_str().unwrap()])
            .arg(tls.path().join("server.pem"))
            .arg(tls.path().join("server.key"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 starts"),
    );
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "the TLS server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("https://127.0.0.1:{port}/gallery.fgg");
    let face = orl_photo(&people[0], 4);
    let (good, bad) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _a = door(good.path(), &url, &u.path("k.pub"), &tls.path().join("gym-ca.pem"), &face);
    let _b = door(bad.path(), &url, &u.path("k.pub"), &tls.path().join("other-ca.pem"), &face);

    let t = Instant::now();
    loop {
        let installed = gallery_events(good.path()).iter().any(|(_, d)| d.starts_with("installed revision"));
        let refused = gallery_events(bad.path()).iter().any(|(r, _)| r == "fetch_failed");
        if installed && refused && metric(good.path(), "facegate_door_gallery_fetch_not_modified_total") >= Some(1.0) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "good CA: {:?}\nother CA: {:?}",
            gallery_events(good.path()),
            gallery_events(bad.path())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The door pinning another CA: the handshake is refused (the certificate's issuer), logged
    // once over several attempts, and it stays locked without a gallery.
    std::thread::sleep(Duration::from_millis(2500));
    let b = gallery_events(bad.path());
    let failures: Vec<&(String, String)> = b.iter().filter(|(r, _)| r == "fetch_failed").collect();
    assert_eq!(failures.len(), 1, "{b:?}");
    let lower = failures[0].1.to_lowercase();
    assert!(lower.contains("certificate") || lower.contains("issuer"), "{b:?}");
    assert!(!b.iter().any(|(_, d)| d.starts_with("installed revision")), "{b:?}");
    assert!(metric(bad.path(), "facegate_door_gallery_fetch_failures_total") >= Some(2.0), "retried");
    assert_eq!(metric(bad.path(), "facegate_door_gallery_revision"), Some(0.0));
    let decided = events(&bad.path().join("events.jsonl")).iter().any(|e| e["event"] == "decision");
    assert!(!decided, "no decision without a gallery");
}
