//! The active liveness challenge's two seams: which way to ask ([`Coin`]: a random side per
//! appearance) and how to show it ([`ChallengeSignal`]: a command the installer provides, e.g.
//! an LED arrow, a buzzer pattern or a small display). The check itself (the turn seen in the
//! landmarks) is [`facegate_face::liveness::ChallengeCheck`].

use facegate_face::liveness::Turn;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Draws the side to ask for.
pub trait Coin {
    /// One side, unpredictable to whoever is in front of the camera.
    fn flip(&mut self) -> Result<Turn, String>;
}

/// The operating system's random numbers (`getrandom`): what the door uses.
#[derive(Debug, Default)]
pub struct OsCoin;

impl Coin for OsCoin {
    fn flip(&mut self) -> Result<Turn, String> {
        let mut b = [0u8; 1];
        getrandom_02::getrandom(&mut b).map_err(|e| format!("no random numbers from the system: {e}"))?;
        Ok(Turn::from_bit(b[0] & 1 == 1))
    }
}

/// Shows the member which way to turn.
pub trait ChallengeSignal {
    /// Starts showing `turn`; returns at once (the decision loop never waits on it). An error
    /// means the member cannot be told: the door denies the appearance.
    fn show(&mut self, turn: Turn) -> Result<(), String>;
    /// Whether the last `show` has failed since (e.g. the command exited with an error): the
    /// member may not have been told, so the door does not grant on that challenge.
    fn status(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// What it is, for the start-up log line.
    fn describe(&self) -> String;
}

/// Runs `CMD... left|right` (the member's own side), detached: a thread waits for it and kills
/// it after `show_for` (the challenge's timeout: an arrow may stay lit while the member turns),
/// or as soon as the next challenge is shown, so a hung command neither blocks the door nor piles
/// up and an old arrow never stays beside a new one. A non-zero exit is kept for [`status`].
///
/// [`status`]: ChallengeSignal::status
#[derive(Debug)]
pub struct CommandSignal {
    command: Vec<String>,
    show_for: Duration,
    /// The running show: its cancel flag and its outcome (`Some(error)` once it failed).
    current: Option<Show>,
}

/// A running show's cancel flag and its outcome (`Some(error)` once it failed).
type Show = (Arc<AtomicBool>, Arc<Mutex<Option<String>>>);

impl CommandSignal {
    /// A command signal (`command` non-empty; the config refuses an empty one).
    pub fn new(command: Vec<String>, show_for: Duration) -> Self {
        assert!(!command.is_empty(), "challenge command must not be empty");
        Self { command, show_for, current: None }
    }
}

impl Drop for CommandSignal {
    fn drop(&mut self) {
        if let Some((cancel, _)) = &self.current {
            cancel.store(true, Ordering::Relaxed);
        }
    }
}

impl ChallengeSignal for CommandSignal {
    fn show(&mut self, turn: Turn) -> Result<(), String> {
        if let Some((cancel, _)) = self.current.take() {
            cancel.store(true, Ordering::Relaxed); // the previous arrow goes off
        }
        let mut child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .arg(turn.name())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.command[0]))?;
        let (cancel, outcome) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(None)));
        self.current = Some((cancel.clone(), outcome.clone()));
        let (show_for, shown) = (self.show_for, format!("{} {}", self.command.join(" "), turn.name()));
        std::thread::Builder::new()
            .name("challenge-signal".into())
            .spawn(move || {
                let start = Instant::now();
                loop {
                    match child.try_wait() {
                        Ok(Some(s)) if !s.success() => {
                            *outcome.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(format!("{shown} exited with {s}"));
                            return;
                        }
                        Ok(Some(_)) => return,
                        Ok(None) if start.elapsed() > show_for || cancel.load(Ordering::Relaxed) => {
                            let _ = child.kill();
                            let _ = child.wait();
                            return;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                        Err(e) => {
                            *outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{shown}: {e}"));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the challenge thread: {e}"))?;
        Ok(())
    }

    fn status(&mut self) -> Result<(), String> {
        match &self.current {
            Some((_, outcome)) => match outcome.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                Some(e) => Err(e),
                None => Ok(()),
            },
            None => Err("no challenge was shown".into()),
        }
    }

    fn describe(&self) -> String {
        format!("command {}", self.command.join(" "))
    }
}

/// Test coin: the sides it is given, in order, then an error.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, Default)]
pub struct ScriptedCoin(pub std::collections::VecDeque<Turn>);

#[cfg(any(test, feature = "testing"))]
impl Coin for ScriptedCoin {
    fn flip(&mut self) -> Result<Turn, String> {
        self.0.pop_front().ok_or_else(|| "the scripted coin has no more sides".into())
    }
}

/// Test signal: records what it was asked to show (shared through a clone); can be told to fail.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, Default)]
pub struct RecordingSignal {
    /// Turns shown, in order.
    pub shown: std::sync::Arc<std::sync::Mutex<Vec<Turn>>>,
    /// Fail every `show`.
    pub fail: bool,
    /// Report every shown challenge as failed afterwards (a command that exited with an error).
    pub fail_later: bool,
}

#[cfg(any(test, feature = "testing"))]
impl ChallengeSignal for RecordingSignal {
    fn show(&mut self, turn: Turn) -> Result<(), String> {
        if self.fail {
            return Err("the test signal was told to fail".into());
        }
        self.shown.lock().expect("signal log").push(turn);
        Ok(())
    }
    fn status(&mut self) -> Result<(), String> {
        if self.fail_later {
            return Err("the test signal's command failed".into());
        }
        Ok(())
    }
    fn describe(&self) -> String {
        "test signal".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_coin_gives_both_sides() {
        let mut c = OsCoin;
        let flips: Vec<Turn> = (0..64).map(|_| c.flip().unwrap()).collect();
        // 64 fair flips all alike: probability 2^-63
        assert!(flips.contains(&Turn::Left) && flips.contains(&Turn::Right));
    }

    #[test]
    fn the_command_gets_the_side_and_a_hung_one_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("side");
        let script = format!("echo \"$0\" > {}", out.display());
        let mut s = CommandSignal::new(vec!["sh".into(), "-c".into(), script], Duration::from_secs(5));
        let t = Instant::now();
        s.show(Turn::Left).unwrap();
        assert!(t.elapsed() < Duration::from_millis(500), "show waited for the command");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&out).map_or(true, |s| s.trim() != "left") {
            assert!(Instant::now() < deadline, "the command never wrote its argument");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(s.status(), Ok(()));
        // a command that exits with an error is reported by `status`
        let mut bad = CommandSignal::new(vec!["sh".into(), "-c".into(), "exit 3".into()], Duration::from_secs(5));
        bad.show(Turn::Right).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while bad.status().is_ok() {
            assert!(Instant::now() < deadline, "the failed command was never reported");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(bad.status().unwrap_err().contains("exited with"), "{:?}", bad.status());
        // a missing program is an error at once (the door then denies the appearance)
        // (under qemu-user the exec failure comes back as the child's exit status instead: the
        // door then denies at `status`)
        let mut missing = CommandSignal::new(vec!["/nonexistent/arrow".into()], Duration::from_secs(1));
        match missing.show(Turn::Right) {
            Err(e) => assert!(e.contains("cannot start"), "{e}"),
            Ok(()) => {
                let deadline = Instant::now() + Duration::from_secs(5);
                while missing.status().is_ok() {
                    assert!(Instant::now() < deadline, "the missing command was never reported");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        // a command that hangs returns at once too; its thread kills it after `show_for`, or
        // when the next challenge is shown, whichever comes first
        for (show_for, next) in [(Duration::from_millis(200), false), (Duration::from_secs(30), true)] {
            let pidfile = dir.path().join(format!("pid-{next}"));
            let hang = format!("echo $$ > {}; exec sleep 30", pidfile.display());
            let mut hung = CommandSignal::new(vec!["sh".into(), "-c".into(), hang], show_for);
            let t = Instant::now();
            hung.show(Turn::Right).unwrap();
            assert!(t.elapsed() < Duration::from_millis(500));
            let deadline = Instant::now() + Duration::from_secs(5);
            let pid = loop {
                if let Some(p) = std::fs::read_to_string(&pidfile).ok().filter(|p| !p.trim().is_empty()) {
                    break p.trim().to_owned();
                }
                assert!(Instant::now() < deadline, "the hanging command never started");
                std::thread::sleep(Duration::from_millis(10));
            };
            if next {
                std::fs::remove_file(&pidfile).unwrap();
                hung.show(Turn::Left).unwrap();
            }
            let alive = |pid: &str| {
                std::path::Path::new(&format!("/proc/{pid}")).exists()
                    && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z")
            };
            while alive(&pid) {
                assert!(Instant::now() < deadline, "the hung challenge command was not killed (next: {next})");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
