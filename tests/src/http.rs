//! A small static file server on loopback for the gallery-pull tests: serves the files of one
//! folder with an ETag and Last-Modified, answers conditional GETs with 304, counts what it
//! answered, and can misbehave on request (truncate bodies, answer slowly). Stopping it closes the
//! port (connection refused); [`FileServer::start_on`] brings it back on the same port.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// Whole files, 304 when the ETag matches.
    Normal,
    /// Announces the whole length, sends half the body, closes.
    Truncate,
    /// Waits this long before answering.
    Slow(Duration),
}

/// What the server answered so far.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    /// 200 answers.
    pub ok: u64,
    /// 304 answers.
    pub not_modified: u64,
    /// Other answers (404, …).
    pub other: u64,
    /// Body bytes sent.
    pub body_bytes: u64,
    /// Bytes sent in all (headers included).
    pub bytes: u64,
}

struct Shared {
    behaviour: Behaviour,
    counts: Counts,
}

/// A running server.
pub struct FileServer {
    port: u16,
    dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    /// Serves `dir` on a free loopback port.
    pub fn start(dir: &Path) -> FileServer {
        Self::start_on(dir, 0)
    }

    /// Serves `dir` on `port` (0: any free one); panics when the port cannot be bound.
    pub fn start_on(dir: &Path, port: u16) -> FileServer {
        let listener =
            TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("binding 127.0.0.1:{port}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared { behaviour: Behaviour::Normal, counts: Counts::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, d) = (shared.clone(), stop.clone(), dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = answer(conn, &d, &s);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FileServer { port, dir: dir.to_path_buf(), shared, stop, thread: Some(thread) }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// The folder served.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Changes how it answers from the next request on.
    pub fn set(&self, b: Behaviour) {
        self.shared.lock().unwrap().behaviour = b;
    }

    /// What it answered so far.
    pub fn counts(&self) -> Counts {
        self.shared.lock().unwrap().counts.clone()
    }

    /// Closes the port (after the request in progress).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn etag_of(bytes: &[u8]) -> String {
    // FNV-1a over the content: equal content, equal tag.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}-{}\"", bytes.len())
}

fn answer(conn: TcpStream, dir: &Path, shared: &Mutex<Shared>) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut if_none_match = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("if-none-match") {
                if_none_match = Some(v.trim().to_owned());
            }
        }
    }
    let behaviour = shared.lock().unwrap().behaviour;
    if let Behaviour::Slow(d) = behaviour {
        std::thread::sleep(d);
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_owned();
    let file = (!path.contains("..") && !path.is_empty()).then(|| dir.join(&path));
    let mut out = conn;
    let (head, body): (String, Vec<u8>) = match file.and_then(|f| std::fs::read(f).ok()) {
        None => {
            shared.lock().unwrap().counts.other += 1;
            ("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(), Vec::new())
        }
        Some(bytes) => {
            let tag = etag_of(&bytes);
            if if_none_match.as_deref() == Some(tag.as_str()) {
                shared.lock().unwrap().counts.not_modified += 1;
                (format!("HTTP/1.1 304 Not Modified\r\nETag: {tag}\r\nConnection: close\r\n\r\n"), Vec::new())
            } else {
                shared.lock().unwrap().counts.ok += 1;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nETag: {tag}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                );
                let body = if behaviour == Behaviour::Truncate { bytes[..bytes.len() / 2].to_vec() } else { bytes };
                (head, body)
            }
        }
    };
    {
        let mut s = shared.lock().unwrap();
        s.counts.body_bytes += body.len() as u64;
        s.counts.bytes += (head.len() + body.len()) as u64;
    }
    out.write_all(head.as_bytes())?;
    out.write_all(&body)?;
    out.flush()?;
    out.shutdown(std::net::Shutdown::Both)
}
