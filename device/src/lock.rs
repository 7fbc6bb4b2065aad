//! The lock seam. Fail-secure contract for every implementation:
//! - the door is locked unless `unlock` returned `Ok` and `secure` has not been called since;
//! - drivers only actuate; the unlock period is owned by the [`crate::supervisor::LockSupervisor`],
//!   which runs every driver on its own thread and calls `secure` when `hold` has passed, whatever
//!   the frame loop is doing. The door never drives a lock except through it;
//! - `secure` is also called on every error path and at exit; the GPIO and command drivers also
//!   secure when dropped (normal exit and unwinding from a panic);
//! - an implementation that cannot actuate returns an error, and the caller treats the door as
//!   locked (it logs the failure and never retries an unlock for that decision).
//!
//! Wire the relay so that an unpowered relay means a locked door (fail-secure strike), so a
//! crashed process, a cut cable or a powered-down board also leaves the door locked.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why the lock could not be actuated.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The GPIO line could not be requested or driven.
    #[error("GPIO {chip} line {line}: {reason}")]
    Gpio { chip: String, line: u32, reason: String },
    /// The lock command failed, timed out or could not start.
    #[error("lock command `{command}`: {reason}")]
    Command { command: String, reason: String },
    /// The lock supervisor cannot be reached or did not answer.
    #[error("{0}")]
    Supervisor(String),
    /// A test lock told to fail.
    #[error("lock failure (simulated)")]
    Simulated,
}

/// A door lock driver.
pub trait Lock {
    /// Opens the lock. `hold` is how long it will stay open: the supervisor calls
    /// [`Lock::secure`] when it has passed; a driver may also pass it on (the command driver
    /// gives it to the relay command, which can time the relay itself as a second guard).
    fn unlock(&mut self, hold: Duration) -> Result<(), LockError>;
    /// Locks the door (idempotent).
    fn secure(&mut self) -> Result<(), LockError>;
    /// One line for logs and `check`.
    fn describe(&self) -> String;
}

impl<T: Lock + ?Sized> Lock for Box<T> {
    fn unlock(&mut self, hold: Duration) -> Result<(), LockError> {
        (**self).unlock(hold)
    }
    fn secure(&mut self) -> Result<(), LockError> {
        (**self).secure()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Logs only (bench, demos, laptops). Tracks the state it would have driven.
#[derive(Debug, Default)]
pub struct DryRunLock {
    /// Whether the (imaginary) door is open.
    pub open: bool,
    /// Unlocks performed.
    pub unlocks: u64,
}

impl Lock for DryRunLock {
    fn unlock(&mut self, _hold: Duration) -> Result<(), LockError> {
        self.open = true;
        self.unlocks += 1;
        Ok(())
    }
    fn secure(&mut self) -> Result<(), LockError> {
        self.open = false;
        Ok(())
    }
    fn describe(&self) -> String {
        "dry run (nothing actuated)".into()
    }
}

/// A relay on a GPIO line through the Linux GPIO character device (`gpiocdev`).
/// The line is requested as an output driven inactive (locked) at start, and driven inactive
/// again before it is released.
pub struct GpioLock {
    chip: String,
    line: u32,
    request: gpiocdev::Request,
}

impl GpioLock {
    /// Requests `line` on `chip` as an output, locked.
    pub fn open(chip: &std::path::Path, line: u32, active_low: bool) -> Result<Self, LockError> {
        let chip_s = chip.display().to_string();
        let mut b = gpiocdev::Request::builder();
        b.on_chip(chip).with_consumer("facegate-door").with_line(line).as_output(gpiocdev::line::Value::Inactive);
        if active_low {
            b.as_active_low();
        }
        let request = b.request().map_err(|e| LockError::Gpio { chip: chip_s.clone(), line, reason: e.to_string() })?;
        Ok(Self { chip: chip_s, line, request })
    }

    fn drive(&mut self, v: gpiocdev::line::Value) -> Result<(), LockError> {
        self.request.set_value(self.line, v).map(|_| ()).map_err(|e| LockError::Gpio {
            chip: self.chip.clone(),
            line: self.line,
            reason: e.to_string(),
        })
    }
}

impl Lock for GpioLock {
    /// Drives the relay line active. The line has no timer of its own: the supervisor secures it
    /// when `hold` has passed (see [`crate::supervisor`]); if the process dies without running
    /// any destructor (SIGKILL), the kernel releases the line and its level is then undefined,
    /// which is why the relay must be wired fail-secure (`device/deploy/README.md`).
    fn unlock(&mut self, _hold: Duration) -> Result<(), LockError> {
        self.drive(gpiocdev::line::Value::Active)
    }
    fn secure(&mut self) -> Result<(), LockError> {
        self.drive(gpiocdev::line::Value::Inactive)
    }
    fn describe(&self) -> String {
        format!("GPIO {} line {}", self.chip, self.line)
    }
}

impl Drop for GpioLock {
    fn drop(&mut self) {
        let _ = self.secure();
    }
}

/// An external command: `CMD ARGS... unlock MILLISECONDS` and `CMD ARGS... lock`. Exit status 0
/// means done; anything else, or running past the timeout, is a failure. `unlock` must return as
/// soon as the relay is energised (a relay with its own pulse timer may use MILLISECONDS as a
/// second guard): it is killed, and the door secured, if it is still running after MILLISECONDS.
pub struct CommandLock {
    command: Vec<String>,
    timeout: Duration,
}

impl CommandLock {
    /// A command lock (`command` non-empty).
    pub fn new(command: Vec<String>, timeout: Duration) -> Self {
        assert!(!command.is_empty(), "lock command must not be empty");
        Self { command, timeout }
    }

    fn run(&self, args: &[String], timeout: Duration) -> Result<(), LockError> {
        let shown = format!("{} {}", self.command.join(" "), args.join(" "));
        let err = |reason: String| LockError::Command { command: shown.clone(), reason };
        let mut child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| err(format!("cannot start: {e}")))?;
        let start = Instant::now();
        loop {
            match child.try_wait().map_err(|e| err(e.to_string()))? {
                Some(s) if s.success() => return Ok(()),
                Some(s) => return Err(err(format!("exited with {s}"))),
                None if start.elapsed() > timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(err(format!("did not finish within {timeout:?}")));
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

impl Lock for CommandLock {
    /// Runs `CMD unlock MS`. The command gets at most `hold` (or the configured timeout, if
    /// shorter): a relay command that energises the relay and then hangs cannot keep the door
    /// open past the unlock period, because the supervisor is free to secure it only once the
    /// command has returned or been killed.
    fn unlock(&mut self, hold: Duration) -> Result<(), LockError> {
        self.run(&["unlock".into(), hold.as_millis().to_string()], self.timeout.min(hold))
    }
    fn secure(&mut self) -> Result<(), LockError> {
        self.run(&["lock".into()], self.timeout)
    }
    fn describe(&self) -> String {
        format!("command {}", self.command.join(" "))
    }
}

impl Drop for CommandLock {
    /// Runs `CMD lock` once more (bounded by the timeout): a door never exits with the relay
    /// command's last word being `unlock`.
    fn drop(&mut self) {
        if let Err(e) = self.secure() {
            eprintln!("facegate-door: securing the lock on exit failed: {e}");
        }
    }
}

/// What a [`FakeLock`] was asked to do, with when.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockAction {
    /// `unlock` succeeded.
    Unlocked,
    /// `unlock` was refused (told to fail).
    UnlockFailed,
    /// `secure` was called.
    Secured,
}

/// What a [`FakeLock`] saw; shared with the test through [`FakeLock::probe`].
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct FakeLockState {
    /// Whether the door is open now.
    pub open: bool,
    /// Successful unlocks.
    pub unlocks: u32,
    /// Calls to `secure`.
    pub secures: u32,
    /// Make `unlock` fail.
    pub fail_unlock: bool,
    /// Every call, with the time it was made.
    pub calls: Vec<(Instant, LockAction)>,
}

/// Test lock: records calls with timestamps; can be told to fail unlocks. It is `Send`, so it
/// runs inside the [`LockSupervisor`] like a real driver; the test reads it through a probe.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, Default)]
pub struct FakeLock(pub std::sync::Arc<std::sync::Mutex<FakeLockState>>);

#[cfg(any(test, feature = "testing"))]
impl FakeLock {
    /// A handle on the same state, for assertions.
    pub fn probe(&self) -> FakeLock {
        self.clone()
    }
    /// A snapshot of the state.
    pub fn with<T>(&self, f: impl FnOnce(&mut FakeLockState) -> T) -> T {
        let mut g = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }
    /// Whether the door is open now.
    pub fn is_open(&self) -> bool {
        self.with(|s| s.open)
    }
    /// Successful unlocks so far.
    pub fn unlocks(&self) -> u32 {
        self.with(|s| s.unlocks)
    }
    /// `secure` calls so far.
    pub fn secures(&self) -> u32 {
        self.with(|s| s.secures)
    }
    /// Makes later unlocks fail (or succeed again).
    pub fn set_fail_unlock(&self, fail: bool) {
        self.with(|s| s.fail_unlock = fail)
    }
    /// For each successful unlock, how long until the next `secure` (`None`: still open).
    pub fn open_periods(&self) -> Vec<Option<Duration>> {
        self.with(|s| {
            let mut out = Vec::new();
            for (i, (t, a)) in s.calls.iter().enumerate() {
                if *a == LockAction::Unlocked {
                    let end = s.calls[i + 1..].iter().find(|(_, a)| *a == LockAction::Secured).map(|(e, _)| *e - *t);
                    out.push(end);
                }
            }
            out
        })
    }
}

#[cfg(any(test, feature = "testing"))]
impl Lock for FakeLock {
    fn unlock(&mut self, _hold: Duration) -> Result<(), LockError> {
        self.with(|s| {
            if s.fail_unlock {
                s.calls.push((Instant::now(), LockAction::UnlockFailed));
                return Err(LockError::Simulated);
            }
            s.open = true;
            s.unlocks += 1;
            s.calls.push((Instant::now(), LockAction::Unlocked));
            Ok(())
        })
    }
    fn secure(&mut self) -> Result<(), LockError> {
        self.with(|s| {
            s.open = false;
            s.secures += 1;
            s.calls.push((Instant::now(), LockAction::Secured));
            Ok(())
        })
    }
    fn describe(&self) -> String {
        "fake".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> CommandLock {
        CommandLock::new(vec!["sh".into(), "-c".into(), script.into(), "lock-hook".into()], Duration::from_secs(2))
    }

    #[test]
    fn command_lock_passes_the_action_and_reports_failures() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let mut l = sh(&format!("echo \"$@\" >> {}", log.display()));
        l.unlock(Duration::from_millis(1500)).unwrap();
        l.secure().unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "unlock 1500\nlock\n");

        let mut failing = sh("exit 3");
        let e = failing.unlock(Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("exited"), "{e}");

        let mut slow = sh("sleep 5");
        slow.timeout = Duration::from_millis(100);
        let e = slow.secure().unwrap_err();
        assert!(e.to_string().contains("did not finish"), "{e}");

        // An unlock command that hangs is killed after `hold`, even with a longer timeout.
        let mut hung = sh("sleep 5");
        let t = Instant::now();
        let e = hung.unlock(Duration::from_millis(200)).unwrap_err();
        assert!(e.to_string().contains("did not finish within 200ms"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        std::mem::forget(hung); // its drop would run `sleep 5` again as the lock command

        let mut missing = CommandLock::new(vec!["/nonexistent/relay".into()], Duration::from_secs(1));
        // Natively the spawn fails; under qemu-user the exec fails in the child (exit 127).
        let e = missing.unlock(Duration::from_secs(1)).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/relay") && (e.contains("cannot start") || e.contains("exited")), "{e}");
    }

    #[test]
    fn a_dropped_command_lock_secures_the_door() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let mut l = sh(&format!("echo \"$@\" >> {}", log.display()));
        l.unlock(Duration::from_millis(1500)).unwrap();
        drop(l);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "unlock 1500\nlock\n");
    }

    #[test]
    fn gpio_lock_on_a_missing_chip_is_an_error() {
        let e = GpioLock::open(std::path::Path::new("/dev/gpiochip-missing"), 17, false).err().unwrap();
        assert!(e.to_string().contains("gpiochip-missing"), "{e}");
    }
}
