//! `pipe:COMMAND ARGS...`: frames from a child process writing a Motion-JPEG stream (JPEG images
//! back to back) on its standard output: `rpicam-vid -t 0 --codec mjpeg -o -` (the Raspberry Pi
//! camera through libcamera), `ffmpeg -rtsp_transport tcp -i rtsp://… -f mjpeg -` (IP cameras),
//! `gst-launch-1.0 … ! jpegenc ! fdsink`.
//!
//! The command line is split into words like a shell would (single and double quotes, backslash),
//! but no shell runs it. A reader thread cuts the stream into JPEG images by walking the JPEG
//! markers (so an EXIF thumbnail's end marker does not end the frame), with a byte cap per image:
//! a longer image is a bad frame and its bytes are skipped, never buffered. At most two cut images
//! wait for the door (back-pressure on the child bounds memory and staleness).
//!
//! A live camera never ends, so the child exiting (with any status: ffmpeg exits 0 when an RTSP
//! server closes the stream), a signal, or no frame for the stall timeout is an outage: the door
//! locks, backs off and calls [`FrameSource::reconnect`], which kills what is left of the child
//! and starts the command again. The child is killed when the source is dropped (the door
//! stopping).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Frame, FrameSource, SourceError};

/// Largest JPEG image accepted from a pipe (bytes).
pub const MAX_JPEG_BYTES: usize = 8 << 20;
/// No frame for this long is an outage.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Splits a command line into words: whitespace separates, '…' is literal, "…" allows \" and
/// \\, a backslash outside quotes escapes the next character. `None` for an unterminated quote.
pub fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = cur.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\') => w.push(c),
                            c => {
                                w.push('\\');
                                w.push(c);
                            }
                        },
                        c => w.push(c),
                    }
                }
            }
            '\\' => cur.get_or_insert_with(String::new).push(chars.next()?),
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(cur);
    Some(words)
}

/// What the JPEG cutter found at the start of a buffer that begins with SOI.
#[derive(Debug, PartialEq, Eq)]
enum Cut {
    /// More bytes are needed.
    Incomplete,
    /// A whole image: `buf[..n]`.
    Complete(usize),
    /// A new image starts at `n` before this one ended (truncated image).
    Truncated(usize),
    /// Not JPEG structure at `n`.
    Corrupt(usize),
}

/// Walks the JPEG markers of `buf` (which starts with FF D8).
fn cut(buf: &[u8]) -> Cut {
    let mut i = 2;
    loop {
        if i + 1 >= buf.len() {
            return Cut::Incomplete;
        }
        if buf[i] != 0xFF {
            return Cut::Corrupt(i);
        }
        let m = buf[i + 1];
        match m {
            0xFF => i += 1, // fill byte
            0xD8 => return Cut::Truncated(i),
            0xD9 => return Cut::Complete(i + 2),
            0x01 | 0xD0..=0xD7 => i += 2,
            0x00 => return Cut::Corrupt(i),
            _ => {
                if i + 3 >= buf.len() {
                    return Cut::Incomplete;
                }
                let len = usize::from(u16::from_be_bytes([buf[i + 2], buf[i + 3]]));
                if len < 2 {
                    return Cut::Corrupt(i);
                }
                i += 2 + len;
                if m == 0xDA {
                    // entropy-coded data: runs to the next marker that is not a stuffed FF 00
                    // or a restart marker
                    loop {
                        if i + 1 >= buf.len() {
                            return Cut::Incomplete;
                        }
                        if buf[i] == 0xFF && !matches!(buf[i + 1], 0x00 | 0xD0..=0xD7 | 0xFF) {
                            break;
                        }
                        i += 1;
                    }
                }
            }
        }
    }
}

/// What the reader thread hands over.
enum Msg {
    Jpeg(Vec<u8>),
    Bad(String),
    /// The stream ended: `Ok(true)` exit status 0, `Ok(false)` anything else (described).
    End(Result<(), String>),
}

/// Cuts `r` into JPEG images, `max` bytes at most each, and sends them (blocking).
fn read_stream(mut r: impl Read, max: usize, tx: std::sync::mpsc::SyncSender<Msg>) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(256 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    let mut skipping = false; // an oversize image: drop bytes until the next SOI
    loop {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            if !buf.is_empty() && !skipping && buf.starts_with(&[0xFF, 0xD8]) {
                let _ = tx.send(Msg::Bad(format!("stream ended inside an image ({} bytes)", buf.len())));
            }
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        loop {
            // find the start of an image (keep a trailing FF: it may be half of FF D8)
            match buf.windows(2).position(|w| w == [0xFF, 0xD8]) {
                Some(0) => {}
                Some(p) => {
                    buf.drain(..p);
                }
                None => {
                    let keep = usize::from(buf.last() == Some(&0xFF));
                    buf.drain(..buf.len() - keep);
                    break;
                }
            }
            skipping = false;
            match cut(&buf) {
                Cut::Complete(end) => {
                    let jpeg = buf[..end].to_vec();
                    buf.drain(..end);
                    if tx.send(Msg::Jpeg(jpeg)).is_err() {
                        return Ok(());
                    }
                }
                Cut::Truncated(at) => {
                    buf.drain(..at);
                    if tx.send(Msg::Bad(format!("truncated JPEG ({at} bytes, then a new image)"))).is_err() {
                        return Ok(());
                    }
                }
                Cut::Corrupt(at) => {
                    // resynchronise just past this image's start: a truncated image's last
                    // segment length may point past the start of the next one
                    buf.drain(..2);
                    if tx.send(Msg::Bad(format!("corrupt JPEG structure at byte {at}"))).is_err() {
                        return Ok(());
                    }
                }
                Cut::Incomplete if buf.len() > max => {
                    // drop it all but a possible half marker; do not buffer an oversize image
                    buf.drain(..buf.len() - 1);
                    skipping = true;
                    if tx.send(Msg::Bad(format!("JPEG image over {max} bytes, skipped"))).is_err() {
                        return Ok(());
                    }
                }
                Cut::Incomplete => break,
            }
        }
        if skipping {
            // bytes of the oversize image: keep only a possible half marker
            if let Some(p) = buf.windows(2).position(|w| w == [0xFF, 0xD8]) {
                buf.drain(..p);
                skipping = false;
            } else {
                let keep = usize::from(buf.last() == Some(&0xFF));
                buf.drain(..buf.len() - keep);
            }
        }
    }
}

/// A running command and the thread reading it.
struct Running {
    child: Child,
    rx: Receiver<Msg>,
    stderr_tail: Arc<Mutex<String>>,
}

/// SIGKILL to the child's whole process group: `sh -c 'a | b'` and whatever the command started.
fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        kill_group(&self.child);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `scheme://user:password@host` → `scheme://***@host` in every URL of `s` (RTSP camera URLs
/// carry credentials; logs must not).
pub fn redact_credentials(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest.find(|c: char| c == '/' || c.is_whitespace()).unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            out.push_str("***");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

/// Frames from a command's Motion-JPEG output.
pub struct PipeSource {
    argv: Vec<String>,
    max_bytes: usize,
    stall: Duration,
    running: Option<Running>,
    started: Option<Instant>,
    frames: u64,
}

impl PipeSource {
    /// A source for `argv` (not started until the first frame is asked for). The program must
    /// exist: a typo is a fatal configuration error, not an outage.
    pub fn new(argv: Vec<String>) -> Result<Self, SourceError> {
        let Some(program) = argv.first() else {
            return Err(SourceError::Fatal("pipe: needs a command".into()));
        };
        if !program.contains('/') && find_in_path(program).is_none() {
            return Err(SourceError::Fatal(format!("pipe: command {program:?} not found in PATH")));
        }
        Ok(Self { argv, max_bytes: MAX_JPEG_BYTES, stall: STALL_TIMEOUT, running: None, started: None, frames: 0 })
    }

    /// Overrides the byte cap per image and the stall timeout (tests).
    pub fn with_limits(mut self, max_bytes: usize, stall: Duration) -> Self {
        self.max_bytes = max_bytes;
        self.stall = stall;
        self
    }

    fn spawn(&mut self) -> Result<(), SourceError> {
        self.running = None; // kills a previous child
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .process_group(0) // its own group, killed as a whole
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SourceError::Unavailable(format!("cannot start {:?}: {e}", self.argv[0])))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr_tail = Arc::new(Mutex::new(String::new()));
        let tail = stderr_tail.clone();
        std::thread::spawn(move || {
            // fixed-size reads, lines split on \n or \r (ffmpeg's progress line never ends):
            // only the last 300 bytes of the last non-empty line are kept
            let mut r = stderr;
            let mut chunk = [0u8; 4096];
            let mut line: Vec<u8> = Vec::with_capacity(300);
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                for &b in &chunk[..n] {
                    if b == b'\n' || b == b'\r' {
                        if !line.is_empty() {
                            *tail.lock().unwrap_or_else(|p| p.into_inner()) =
                                redact_credentials(&String::from_utf8_lossy(&line));
                            line.clear();
                        }
                    } else if line.len() < 300 {
                        line.push(b);
                    }
                }
            }
        });
        let (tx, rx) = sync_channel(2);
        let max = self.max_bytes;
        std::thread::spawn(move || {
            let end = match read_stream(stdout, max, tx.clone()) {
                Ok(()) => Ok(()),
                Err(e) => Err(format!("reading its output: {e}")),
            };
            let _ = tx.send(Msg::End(end));
        });
        self.running = Some(Running { child, rx, stderr_tail });
        self.started.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Why the child stopped, once its output ended: always an outage.
    fn exit(&mut self, read: Result<(), String>) -> Result<Option<Frame>, SourceError> {
        let Some(mut r) = self.running.take() else {
            return Err(SourceError::Unavailable("pipe command not running".into()));
        };
        // its output ended: give it a moment to exit, then kill its group (a child that closed
        // stdout and kept running must not block the door in wait)
        let deadline = Instant::now() + Duration::from_millis(500);
        let status = loop {
            match r.child.try_wait() {
                Ok(Some(s)) => break Ok(s),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => {
                    kill_group(&r.child);
                    break r.child.wait();
                }
                Err(e) => break Err(e),
            }
        };
        let tail = r.stderr_tail.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let said = if tail.is_empty() { String::new() } else { format!(" (it said: {tail})") };
        match (read, status) {
            (Ok(()), Ok(s)) => {
                Err(SourceError::Unavailable(format!("pipe command {:?} exited: {s}{said}", self.argv[0])))
            }
            (Err(e), _) => Err(SourceError::Unavailable(format!("pipe command {:?}: {e}{said}", self.argv[0]))),
            (_, Err(e)) => Err(SourceError::Unavailable(format!("pipe command {:?}: {e}{said}", self.argv[0]))),
        }
    }
}

fn find_in_path(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(program)).find(|f| f.is_file()))
}

impl FrameSource for PipeSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.running.is_none() {
            self.spawn()?;
        }
        let r = self.running.as_ref().expect("spawned");
        match r.rx.recv_timeout(self.stall) {
            Ok(Msg::Jpeg(bytes)) => {
                self.frames += 1;
                let label = format!("pipe#{}", self.frames);
                let at = self.started.map_or(Duration::ZERO, |s| s.elapsed());
                let image = facegate_face::decode_image(&bytes)
                    .map_err(|e| SourceError::BadFrame { label: label.clone(), reason: e.to_string() })?;
                Ok(Some(Frame { image, at, label }))
            }
            Ok(Msg::Bad(reason)) => Err(SourceError::BadFrame { label: format!("pipe#{}", self.frames + 1), reason }),
            Ok(Msg::End(read)) => self.exit(read),
            Err(RecvTimeoutError::Timeout) => {
                self.running = None; // kill it; reconnect starts it again
                Err(SourceError::Unavailable(format!(
                    "pipe command {:?} sent no frame for {} s",
                    self.argv[0],
                    self.stall.as_secs_f32()
                )))
            }
            Err(RecvTimeoutError::Disconnected) => self.exit(Err("its reader stopped".into())),
        }
    }

    fn reconnect(&mut self) -> Result<(), SourceError> {
        self.spawn()
    }

    fn describe(&self) -> String {
        let pid = self.running.as_ref().map(|r| format!(" (pid {})", r.child.id())).unwrap_or_default();
        format!("pipe:{}{pid}", redact_credentials(&self.argv.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell_without_one() {
        assert_eq!(
            split_words(r#"ffmpeg -i 'rtsp://a b' -f mjpeg "x\"y" z\ w -"#).unwrap(),
            ["ffmpeg", "-i", "rtsp://a b", "-f", "mjpeg", "x\"y", "z w", "-"]
        );
        assert_eq!(split_words("  a   ''  ").unwrap(), ["a", ""]);
        assert!(split_words("a 'b").is_none());
        let uri: crate::SourceUri = "pipe:rpicam-vid -t 0 --codec mjpeg -o -".parse().unwrap();
        assert_eq!(uri.to_string(), "pipe:rpicam-vid -t 0 --codec mjpeg -o -");
        for bad in ["pipe:", "pipe:   ", "pipe:ffmpeg -i 'x"] {
            assert!(bad.parse::<crate::SourceUri>().is_err(), "{bad}");
        }
        assert!(matches!(PipeSource::new(vec!["no-such-program-xyz".into()]), Err(SourceError::Fatal(_))));
        assert_eq!(
            redact_credentials("ffmpeg -i rtsp://admin:s3cret@10.0.0.5:554/s1 -f mjpeg - (x://a@b c://d)"),
            "ffmpeg -i rtsp://***@10.0.0.5:554/s1 -f mjpeg - (x://***@b c://d)"
        );
        assert_eq!(redact_credentials("no urls here"), "no urls here");
    }

    fn jpeg(w: u32, h: u32, v: u8) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::from_pixel(w, h, image::Rgb([v, 200 - v, 7]))
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg)
            .unwrap();
        out
    }

    fn cut_all(stream: &[u8], max: usize, chunk: usize) -> Vec<Result<Vec<u8>, String>> {
        struct Chunked<'a>(&'a [u8], usize);
        impl Read for Chunked<'_> {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(b.len());
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let (tx, rx) = sync_channel(1000);
        read_stream(Chunked(stream, chunk), max, tx).unwrap();
        rx.try_iter()
            .map(|m| match m {
                Msg::Jpeg(j) => Ok(j),
                Msg::Bad(r) => Err(r),
                Msg::End(_) => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn cuts_back_to_back_images_whatever_the_read_sizes() {
        let (a, b) = (jpeg(64, 48, 10), jpeg(32, 32, 90));
        let mut s = b"junk before".to_vec();
        s.extend(&a);
        s.extend(&b);
        s.extend(&a);
        for chunk in [1, 7, 4096, 1 << 20] {
            let got = cut_all(&s, MAX_JPEG_BYTES, chunk);
            assert_eq!(got, vec![Ok(a.clone()), Ok(b.clone()), Ok(a.clone())], "chunk {chunk}");
        }
    }

    #[test]
    fn truncated_corrupt_and_oversize_images_are_bad_frames_and_the_next_one_is_found() {
        let good = jpeg(64, 48, 10);
        // truncated: half an image, then a whole one
        let mut s = good[..good.len() / 2].to_vec();
        s.extend(&good);
        let got = cut_all(&s, MAX_JPEG_BYTES, 4096);
        assert_eq!(got.len(), 2, "{got:?}");
        let why = got[0].as_ref().unwrap_err();
        assert!(why.contains("truncated") || why.contains("corrupt"), "{why}");
        assert_eq!(got[1], Ok(good.clone()));
        // cut inside the entropy-coded data: recognised as truncated when the next image starts
        let mut s = good[..good.len() - 20].to_vec();
        s.extend(&good);
        let got = cut_all(&s, MAX_JPEG_BYTES, 4096);
        assert!(got[0].as_ref().unwrap_err().contains("truncated"), "{got:?}");
        assert_eq!(got[1], Ok(good.clone()));
        // oversize: an image header, a 3 MB entropy-coded segment that never ends, then a good image
        let mut s = vec![0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02];
        s.extend(std::iter::repeat_n(0x11u8, 3 << 20));
        s.extend(&good);
        let got = cut_all(&s, 1 << 20, 64 << 10);
        assert_eq!(got.len(), 2, "{:?}", got.iter().map(|g| g.as_ref().map(Vec::len)).collect::<Vec<_>>());
        assert!(got[0].as_ref().unwrap_err().contains("over 1048576 bytes"));
        assert_eq!(got[1], Ok(good.clone()));
        // structure broken right after the start marker
        let mut s = vec![0xFF, 0xD8, 0x12, 0x34];
        s.extend(&good);
        let got = cut_all(&s, MAX_JPEG_BYTES, 4096);
        assert!(got[0].as_ref().unwrap_err().contains("corrupt"), "{got:?}");
        assert_eq!(got.last().unwrap(), &Ok(good));
    }

    #[test]
    fn an_exif_thumbnail_does_not_end_the_image() {
        let outer = jpeg(64, 48, 10);
        let thumb = jpeg(8, 8, 50);
        // an APP1 segment holding a whole JPEG (its FF D9 inside the segment)
        let mut app1 = vec![0xFF, 0xE1];
        app1.extend(((thumb.len() + 2) as u16).to_be_bytes());
        app1.extend(&thumb);
        let mut img = outer[..2].to_vec();
        img.extend(&app1);
        img.extend(&outer[2..]);
        let got = cut_all(&img, MAX_JPEG_BYTES, 4096);
        assert_eq!(got, vec![Ok(img.clone())]);
        assert!(facegate_face::decode_image(&img).is_ok());
    }
}
