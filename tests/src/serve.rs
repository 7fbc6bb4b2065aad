//! A running `facegate serve` for end-to-end tests, and a plain HTTP call.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{bin, root};

/// A running `facegate serve`; killed on drop if a test failed before stopping it.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// `facegate serve ARGS --listen 127.0.0.1:0`; returns once it listens.
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(bin("facegate"))
            .current_dir(root())
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stderr, l) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.to_owned());
                }
                l.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("facegate serve did not start:\n{}", log.lock().unwrap())
        });
        Server { child, base, log }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Stops with SIGTERM and checks the clean exit.
    pub fn stop(mut self) -> String {
        let st = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(st.success());
        let code = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log();
        assert!(code.success(), "exit {code:?}\n{log}");
        assert!(log.contains("facegate serve: stopped"), "{log}");
        log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status and body of a request; `token` None sends no Authorization header.
pub fn call(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut r = ureq::request(method, url).timeout(Duration::from_secs(60));
    if let Some(t) = token {
        r = r.set("Authorization", &format!("Bearer {t}"));
    }
    let res = match body {
        Some(b) => r.set("Content-Type", "application/json").send_string(b),
        None => r.call(),
    };
    match res {
        Ok(resp) => (resp.status(), resp.into_string().unwrap()),
        Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap()),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}
