//! `facegate serve` end to end: the real binary on a loopback port, a real HTTP client (ureq), a
//! gallery enrolled with the default encoder (SFace) from ORL photos by the real `facegate enroll`.

use base64::Engine;
use facegate_face::{load_image, paths, FacePipeline, TractEncoder, YuNet};
use facegate_shared::{prometheus, Fingerprint};
use facegate_tests::serve::{call, Server};
use facegate_tests::{ok, orl_photo, root, run};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TOKEN: &str = "front-desk-token-0123456789";

/// Keys, a tokens file and a gallery: s1, s2, s3 enrolled from photos 1 and 2; s4 likewise but
/// with a membership that ended on 2020-01-01. Built once per test binary.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn enroll(gallery: &Path, secret: &Path, id: &str) {
    let (a, b) = (orl_photo(id, 1), orl_photo(id, 2));
    let args = ["enroll", "--gallery", &s(gallery), "--key", &s(secret), "--id", id, "--name", &format!("Person {id}")];
    ok(&run("facegate", &[&args[..], &[&s(&a), &s(&b)]].concat()));
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let f = Fixture { dir: tempfile::tempdir().unwrap() };
        let (sk, pk, g) = (f.path("k.secret"), f.path("k.pub"), f.path("g.fgg"));
        ok(&run("facegate", &["keys", "init", "--secret", &s(&sk), "--public", &s(&pk)]));
        for id in ["s1", "s2", "s3", "s4"] {
            enroll(&g, &sk, id);
        }
        ok(&run(
            "facegate",
            &["members", "--gallery", &s(&g), "--key", &s(&sk), "renew", "s4", "--valid-until", "2020-01-01"],
        ));
        std::fs::write(f.path("tokens"), format!("# the front desk\n{TOKEN}\n")).unwrap();
        f
    })
}

fn start(gallery: &Path, extra: &[&str]) -> Server {
    let f = fixture();
    let (g, k, t) = (s(gallery), s(&f.path("k.pub")), s(&f.path("tokens")));
    let args = ["--gallery", g.as_str(), "--trust", k.as_str(), "--tokens", t.as_str()];
    Server::start(&[&args[..], extra].concat())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn post(srv: &Server, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (st, b) = call("POST", &srv.url(path), Some(TOKEN), Some(&body.to_string()));
    (st, json(&b))
}

fn photo(person: &str, n: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(orl_photo(person, n)).unwrap())
}

fn error_code(st: u16, v: &serde_json::Value) -> (u16, &str) {
    (st, v["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code: {v}")))
}

/// The routes docs/openapi.yaml describes: (method, path).
fn openapi_routes() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("docs/openapi.yaml")).unwrap();
    let (mut out, mut in_paths, mut path) = (Vec::new(), false, String::new());
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            path = format!("/{}", p.trim_end_matches(':'));
        } else if let Some(m) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')) {
            if ["get", "post", "put", "delete", "patch"].contains(&m) {
                out.push((m.to_owned(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_answers_and_every_error_is_json_with_a_stable_code() {
    let f = fixture();
    let srv = start(&f.path("g.fgg"), &["--max-body-bytes", "200000"]);

    // the routes the server declares are exactly the documented ones
    let mut documented = openapi_routes();
    let mut served: Vec<_> = facegate_serve::ROUTES.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);

    // health without a token; everything else needs one
    let (st, b) = call("GET", &srv.url("/healthz"), None, None);
    let h = json(&b);
    assert_eq!(
        (st, h["status"].as_str(), h["members"].as_u64(), h["revision"].as_u64()),
        (200, Some("ok"), Some(4), Some(5))
    );
    for (method, path, guarded) in facegate_serve::ROUTES {
        let path = path.replace("{id}", "s1");
        let body = (*method == "post").then_some("{}");
        let (st, b) = call(&method.to_uppercase(), &srv.url(&path), None, body);
        if *guarded {
            assert_eq!(error_code(st, &json(&b)), (401, "missing_token"), "{path}");
            let (st, b) = call(&method.to_uppercase(), &srv.url(&path), Some("not-the-token-0123456789"), body);
            assert_eq!(error_code(st, &json(&b)), (401, "bad_token"), "{path}");
        } else {
            assert_eq!(st, 200, "{path}");
        }
    }

    // search by photo: s2's fifth photo (not enrolled) finds s2 first, within the threshold
    let (st, v) = post(&srv, "/v1/search", serde_json::json!({"photo": photo("s2", 5), "top_k": 3}));
    assert_eq!(st, 200, "{v}");
    let threshold = v["threshold"].as_f64().unwrap();
    let r = v["results"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["member"], "s2");
    let d0 = r[0]["distance"].as_f64().unwrap();
    assert!(d0 < threshold && r[1]["distance"].as_f64().unwrap() > threshold, "{v}");

    // the same face as an embedding made in process with the same pipeline: same answer
    let sface = root().join("models").join(paths::SFACE);
    let p = FacePipeline::new(
        YuNet::load(&root().join("models").join(paths::YUNET)).unwrap(),
        TractEncoder::load(&sface).unwrap(),
    );
    let e = p.embed_one(&load_image(&orl_photo("s2", 5)).unwrap()).unwrap().embedding;
    let fp = Fingerprint::of_bytes(&std::fs::read(&sface).unwrap()).to_string();
    let (st, v) = post(&srv, "/v1/search", serde_json::json!({"embedding": e.as_slice(), "encoder": fp, "top_k": 3}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["results"][0]["member"], "s2");
    assert!((v["results"][0]["distance"].as_f64().unwrap() - d0).abs() < 1e-5, "{v} vs {d0}");
    // another encoder's embedding, a missing fingerprint, a wrong dimension
    let orl_fp =
        Fingerprint::of_bytes(&std::fs::read(root().join("models/facegate-default.onnx")).unwrap()).to_string();
    let (st, v) = post(&srv, "/v1/search", serde_json::json!({"embedding": e.as_slice(), "encoder": orl_fp}));
    assert_eq!(error_code(st, &v), (409, "wrong_encoder"));
    let (st, v) = post(&srv, "/v1/search", serde_json::json!({"embedding": e.as_slice()}));
    assert_eq!(error_code(st, &v), (400, "missing_encoder"));
    let (st, v) = post(&srv, "/v1/search", serde_json::json!({"embedding": [1.0, 0.0], "encoder": fp}));
    assert_eq!(error_code(st, &v), (422, "bad_embedding"));
    let (st, v) = post(&srv, "/v1/search", serde_json::json!({"photo": photo("s2", 5), "top_k": 0}));
    assert_eq!(error_code(st, &v), (400, "bad_top_k"));
    let (st, v) = post(&srv, "/v1/search", serde_json::json!({"photo": photo("s2", 5), "mode": "hnsw:40"}));
    assert_eq!(error_code(st, &v), (400, "bad_mode"), "the in-memory index is exact");

    // active_only leaves out s4, whose membership ended
    let (_, v) = post(&srv, "/v1/search", serde_json::json!({"photo": photo("s4", 6), "top_k": 4}));
    assert_eq!((v["results"][0]["member"].as_str(), v["results"][0]["active"].as_bool()), (Some("s4"), Some(false)));
    let (_, v) =
        post(&srv, "/v1/search", serde_json::json!({"photo": photo("s4", 6), "top_k": 4, "active_only": true}));
    let ids: Vec<_> =
        v["results"].as_array().unwrap().iter().map(|r| r["member"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 3);
    assert!(!ids.contains(&"s4".to_owned()), "{v}");
    // fewer active members among the first top_k than asked for: the search widens
    let (_, v) =
        post(&srv, "/v1/search", serde_json::json!({"photo": photo("s4", 6), "top_k": 2, "active_only": true}));
    let ids: Vec<_> =
        v["results"].as_array().unwrap().iter().map(|r| r["member"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 2, "{v}");
    assert!(!ids.contains(&"s4".to_owned()), "{v}");

    // identify: the door's decisions and reasons
    let (st, v) = post(&srv, "/v1/identify", serde_json::json!({"photo": photo("s2", 5)}));
    assert_eq!(
        (st, v["decision"].as_str(), v["member"].as_str(), v["name"].as_str()),
        (200, Some("granted"), Some("s2"), Some("Person s2"))
    );
    let (_, v) = post(&srv, "/v1/identify", serde_json::json!({"photo": photo("s4", 6)}));
    assert_eq!(
        (v["decision"].as_str(), v["reason"].as_str(), v["detail"]["member"].as_str()),
        (Some("denied"), Some("expired"), Some("s4")),
        "{v}"
    );
    let (_, v) = post(&srv, "/v1/identify", serde_json::json!({"photo": photo("s30", 1)}));
    assert_eq!((v["decision"].as_str(), v["reason"].as_str()), (Some("denied"), Some("unknown")), "{v}");

    // verify: two photos, or a photo and a member
    let (_, v) = post(&srv, "/v1/verify", serde_json::json!({"photo_a": photo("s7", 1), "photo_b": photo("s7", 4)}));
    assert_eq!(v["same_person"], true, "{v}");
    let (_, v) = post(&srv, "/v1/verify", serde_json::json!({"photo_a": photo("s7", 1), "photo_b": photo("s8", 1)}));
    assert_eq!(v["same_person"], false, "{v}");
    let (_, v) = post(&srv, "/v1/verify", serde_json::json!({"photo": photo("s3", 7), "member": "s3"}));
    assert_eq!(v["same_person"], true, "{v}");
    let (_, v) = post(&srv, "/v1/verify", serde_json::json!({"photo": photo("s2", 5), "member": "s1"}));
    assert_eq!(v["same_person"], false, "{v}");
    let (st, v) = post(&srv, "/v1/verify", serde_json::json!({"photo": photo("s2", 5), "member": "nobody"}));
    assert_eq!(error_code(st, &v), (404, "unknown_member"));
    let (st, v) = post(&srv, "/v1/verify", serde_json::json!({"photo": photo("s2", 5)}));
    assert_eq!(error_code(st, &v), (400, "bad_query"));

    // members
    let (st, b) = call("GET", &srv.url("/v1/members/s4"), Some(TOKEN), None);
    let v = json(&b);
    assert_eq!(
        (st, v["valid_until"].as_str(), v["admitted_today"].as_bool(), v["embeddings"].as_u64()),
        (200, Some("2020-01-01"), Some(false), Some(2))
    );
    let (st, b) = call("GET", &srv.url("/v1/members/nobody"), Some(TOKEN), None);
    assert_eq!(error_code(st, &json(&b)), (404, "unknown_member"));
    let (st, b) = call("GET", &srv.url("/v1/members/a%20b"), Some(TOKEN), None);
    assert_eq!(error_code(st, &json(&b)), (400, "bad_member_id"));

    // bad input: each a JSON error with its code
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let blank = {
        let mut png = Vec::new();
        image::RgbImage::from_pixel(200, 200, image::Rgb([128, 128, 128]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    };
    let cases = [
        (serde_json::json!({"photo": b64(b"not an image at all")}).to_string(), 422, "bad_image"),
        (serde_json::json!({"photo": "%%% not base64"}).to_string(), 400, "bad_base64"),
        (serde_json::json!({"photo": b64(&blank)}).to_string(), 422, "no_face"),
        (serde_json::json!({"photo": photo("s1", 1), "colour": "red"}).to_string(), 400, "bad_json"),
        ("{\"photo\": ".to_owned(), 400, "bad_json"),
        (serde_json::json!({"photo": "A".repeat(300_000)}).to_string(), 413, "body_too_large"),
    ];
    for (body, want_st, want_code) in cases {
        let (st, b) = call("POST", &srv.url("/v1/identify"), Some(TOKEN), Some(&body));
        assert_eq!(error_code(st, &json(&b)), (want_st, want_code), "{}", &body[..body.len().min(60)]);
    }
    let (st, b) = call("GET", &srv.url("/v2/nothing"), Some(TOKEN), None);
    assert_eq!(error_code(st, &json(&b)), (404, "no_route"));
    let (st, b) = call("GET", &srv.url("/v1/search"), Some(TOKEN), None);
    assert_eq!(error_code(st, &json(&b)), (405, "method_not_allowed"));

    // metrics: the counters match what this test sent
    let (st, text) = call("GET", &srv.url("/metrics"), Some(TOKEN), None);
    assert_eq!(st, 200);
    let m = prometheus::parse(&text).unwrap();
    let n = |route: &str, status: &str| {
        prometheus::value_of(&m, "facegate_serve_requests_total", &[("route", route), ("status", status)])
            .unwrap_or(0.0)
    };
    assert_eq!(n("/v1/search", "200"), 5.0);
    assert_eq!(n("/v1/identify", "200"), 3.0);
    assert_eq!((n("/v1/identify", "422"), n("/v1/identify", "400"), n("/v1/identify", "413")), (2.0, 3.0, 1.0));
    assert_eq!(n("/v1/search", "401"), 2.0);
    assert_eq!(prometheus::value_of(&m, "facegate_gallery_revision", &[]), Some(5.0));
    assert_eq!(prometheus::value_of(&m, "facegate_gallery_members", &[]), Some(4.0));
    let count = prometheus::value_of(&m, "facegate_serve_request_duration_seconds_count", &[("route", "/v1/search")]);
    let all_search: f64 = m
        .iter()
        .filter(|x| {
            x.name == "facegate_serve_requests_total" && x.labels.iter().any(|(k, v)| k == "route" && v == "/v1/search")
        })
        .map(|x| x.value)
        .sum();
    assert_eq!(count, Some(all_search));
    assert_eq!(all_search, 13.0, "5 found, 2 unauthorised, 3 bad query, 1 wrong encoder, 1 bad embedding, 1 GET");

    let log = srv.stop();
    assert!(!log.contains(TOKEN) && !log.contains("not-the-token-0123456789"), "a token was logged");
}

#[test]
fn refuses_to_start_without_tokens_or_with_weak_ones() {
    let f = fixture();
    let g = s(&f.path("g.fgg"));
    let pk = s(&f.path("k.pub"));
    let o = run("facegate", &["serve", "--gallery", &g, "--trust", &pk]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tokens"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run("facegate", &["serve", "--gallery", &g, "--trust", &pk, "--no-auth", "--listen", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("loopback"));
    let weak = f.dir.path().join("weak-tokens");
    std::fs::write(&weak, "secret\n").unwrap();
    let o = run("facegate", &["serve", "--gallery", &g, "--trust", &pk, "--tokens", &s(&weak)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("at least 16") && !err.contains("secret\n"), "{err}");
}

/// Opens a request whose body never finishes arriving: it holds one of the service's slots.
fn slow_request(base: &str) -> std::net::TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(c, "POST /v1/search HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n{{\"pho").unwrap();
    c.flush().unwrap();
    c
}

#[test]
fn a_saturated_service_answers_503_keeps_health_up_times_out_slow_bodies_and_recovers() {
    let f = fixture();
    let srv = start(&f.path("g.fgg"), &["--max-concurrent", "1", "--timeout-ms", "1500"]);
    let mut slow = slow_request(&srv.base);
    // wait until the slow request holds the slot (metrics answer while saturated; it counts itself)
    let t = Instant::now();
    loop {
        let (_, text) = call("GET", &srv.url("/metrics"), Some(TOKEN), None);
        let m = prometheus::parse(&text).unwrap();
        if prometheus::value_of(&m, "facegate_serve_in_flight_requests", &[]).unwrap() >= 2.0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "the slow request never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    // a small body: the 503 comes before the server reads any of it
    let (st, v) = post(&srv, "/v1/identify", serde_json::json!({"photo": "AAAA"}));
    assert_eq!(error_code(st, &v), (503, "saturated"));
    assert!(t.elapsed() < Duration::from_millis(1000), "503 at once, not after the slow request");
    let (st, _) = call("GET", &srv.url("/healthz"), None, None);
    assert_eq!(st, 200, "health answers while saturated");
    // the slow request itself ends in 408 after the timeout
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; 64];
    let n = slow.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    drop(slow);
    let (st, v) = post(&srv, "/v1/identify", serde_json::json!({"photo": photo("s2", 5)}));
    assert_eq!((st, v["decision"].as_str()), (200, Some("granted")), "{v}");
    srv.stop();
}

fn wait_for(what: &str, srv: &Server, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {what}\n{}", srv.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn revision(srv: &Server) -> u64 {
    json(&call("GET", &srv.url("/healthz"), None, None).1)["revision"].as_u64().unwrap()
}

#[test]
fn a_newer_gallery_is_hot_reloaded_and_a_tampered_or_older_one_is_refused_while_the_old_keeps_serving() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("g.fgg");
    std::fs::copy(f.path("g.fgg"), &g).unwrap();
    let old = std::fs::read(&g).unwrap();
    let state = dir.path().join("served.floor");
    let srv = start(&g, &["--reload-ms", "100", "--state", &s(&state)]);
    let (_, v) = post(&srv, "/v1/identify", serde_json::json!({"photo": photo("s5", 5)}));
    assert_eq!(v["reason"], "unknown", "{v}");

    // the front desk enrols s5 into the served file (written atomically): installed, no restart
    enroll(&g, &f.path("k.secret"), "s5");
    wait_for("revision 6", &srv, || revision(&srv) == 6);
    let (_, v) = post(&srv, "/v1/identify", serde_json::json!({"photo": photo("s5", 5)}));
    assert_eq!((v["decision"].as_str(), v["member"].as_str()), (Some("granted"), Some("s5")), "{v}");

    // a tampered copy (one byte flipped), then the older revision: both refused, revision 6 serves
    let mut bad = std::fs::read(&g).unwrap();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    for (n, bytes) in [(1, bad), (2, old)] {
        let tmp = dir.path().join("incoming.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &g).unwrap();
        wait_for("the refusal", &srv, || srv.log().matches("gallery file refused").count() == n);
        assert_eq!(revision(&srv), 6);
        let (_, v) = post(&srv, "/v1/identify", serde_json::json!({"photo": photo("s5", 5)}));
        assert_eq!(v["member"], "s5", "{v}");
    }
    let log = srv.log();
    assert!(log.contains("older than the installed revision 6"), "{log}");
    let (_, text) = call("GET", &srv.url("/metrics"), Some(TOKEN), None);
    let m = prometheus::parse(&text).unwrap();
    let reloads = |o: &str| prometheus::value_of(&m, "facegate_serve_gallery_reloads_total", &[("outcome", o)]);
    assert_eq!((reloads("installed"), reloads("refused")), (Some(1.0), Some(2.0)));
    srv.stop();
    // restarted on the older file (revision 5, left there above): the recorded floor refuses it
    let f = fixture();
    let o = run(
        "facegate",
        &[
            "serve",
            "--gallery",
            &s(&g),
            "--trust",
            &s(&f.path("k.pub")),
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--state",
            &s(&state),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("older than the installed revision 6"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
