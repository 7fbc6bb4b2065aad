//! The lock supervisor: a thread that owns the lock driver and the unlock deadline.
//!
//! The door loop never relocks by itself: after a grant it asks the supervisor to open the lock
//! for `hold`, and the supervisor secures it when `hold` has passed, measured on the monotonic
//! clock from the moment the unlock was requested, whatever the loop is doing (blocked in a
//! camera read, working through bad frames, stuck in inference, or unwinding from a panic). This
//! is the watchdog pattern of embedded firmware: the deadline is owned by time, not by the next
//! frame.
//!
//! Failure behaviour, in every case the door ends up locked or keeps being driven locked:
//! - a failed unlock is followed by a secure, and the error goes back to the caller;
//! - a failed secure (at the deadline, on request, or in an emergency) is retried every
//!   [`SECURE_RETRY`] until it succeeds, and reported as a [`Notice`];
//! - dropping the supervisor (normal exit or unwinding from a panic) secures the lock and joins
//!   the thread; [`EmergencySecure`] lets a panic hook secure it before unwinding starts;
//! - if the supervisor thread itself dies (a driver that panics), the driver is dropped (the GPIO
//!   and command drivers secure on drop) and every later request fails, so no unlock happens.
//!
//! What cannot be handled in software (SIGKILL, power loss, a kernel crash) is handled by the
//! wiring: see `device/deploy/README.md` (fail-secure strike, relay de-energised = locked).

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::lock::{Lock, LockError};

/// How often a failed secure is tried again.
pub const SECURE_RETRY: Duration = Duration::from_millis(100);
/// How long a request waits for the supervisor's answer (a driver call is bounded by its own
/// timeout, at most `lock.command_timeout_ms`, well below this).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

enum Cmd {
    /// Open for `hold`, asked at `Instant`: a request older than `hold` when it is read is refused.
    Unlock(Duration, Instant, SyncSender<Result<(), LockError>>),
    Secure(SyncSender<Result<(), LockError>>),
    Emergency(SyncSender<bool>),
    Shutdown,
}

/// What the supervisor did on its own, for the event log.
#[derive(Debug)]
pub enum Notice {
    /// The unlock period ended and the lock was secured, `open_for` after the unlock request.
    Relocked {
        /// Time from the unlock request to the lock being secured.
        open_for: Duration,
    },
    /// Securing failed; it is being retried every [`SECURE_RETRY`].
    SecureFailed(LockError),
    /// A panic hook asked for the lock to be secured.
    Emergency,
}

/// Secures the lock from anywhere (a panic hook, a signal handler's thread).
#[derive(Clone)]
pub struct EmergencySecure(Sender<Cmd>);

impl EmergencySecure {
    /// Asks the supervisor to secure the lock now and waits up to `wait` for it to be done.
    /// True when the lock reported secured. Called on the supervisor thread itself (a driver
    /// that panics), it does not wait: that thread is the one that would answer.
    pub fn secure_now(&self, wait: Duration) -> bool {
        let (reply, answer) = mpsc::sync_channel(1);
        if self.0.send(Cmd::Emergency(reply)).is_err() {
            return false;
        }
        if std::thread::current().name() == Some(THREAD_NAME) {
            return false;
        }
        answer.recv_timeout(wait).unwrap_or(false)
    }
}

const THREAD_NAME: &str = "lock-supervisor";

/// The handle the door holds; the driver lives on the supervisor thread.
pub struct LockSupervisor {
    tx: Sender<Cmd>,
    notices: Receiver<Notice>,
    thread: Option<JoinHandle<()>>,
    describe: String,
}

impl LockSupervisor {
    /// Starts the supervisor thread, which takes ownership of `lock` and secures it first.
    pub fn start<L: Lock + Send + 'static>(lock: L) -> Self {
        let describe = lock.describe();
        let (tx, rx) = mpsc::channel();
        let (ntx, notices) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || supervise(lock, rx, ntx))
            .expect("spawning the lock supervisor thread");
        Self { tx, notices, thread: Some(thread), describe }
    }

    /// Opens the lock for `hold`; the supervisor secures it when `hold` has passed. An error means
    /// the door is locked (the supervisor secured it, or it cannot be reached).
    pub fn unlock(&self, hold: Duration) -> Result<(), LockError> {
        let asked = Instant::now();
        self.request(|reply| Cmd::Unlock(hold, asked, reply))
    }

    /// Secures the lock now and cancels any unlock deadline.
    pub fn secure(&self) -> Result<(), LockError> {
        self.request(Cmd::Secure)
    }

    /// A handle for a panic hook.
    pub fn emergency(&self) -> EmergencySecure {
        EmergencySecure(self.tx.clone())
    }

    /// Things the supervisor did on its own since the last call.
    pub fn notices(&self) -> Vec<Notice> {
        self.notices.try_iter().collect()
    }

    /// The driver, in words.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    fn request(&self, cmd: impl FnOnce(SyncSender<Result<(), LockError>>) -> Cmd) -> Result<(), LockError> {
        let gone = || LockError::Supervisor("the lock supervisor is not running; the door stays locked".into());
        let (reply, answer) = mpsc::sync_channel(1);
        self.tx.send(cmd(reply)).map_err(|_| gone())?;
        match answer.recv_timeout(REPLY_TIMEOUT) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                Err(LockError::Supervisor(format!("no answer from the lock supervisor within {REPLY_TIMEOUT:?}")))
            }
            Err(RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }
}

impl Drop for LockSupervisor {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn supervise<L: Lock>(mut lock: L, rx: Receiver<Cmd>, notices: Sender<Notice>) {
    // When to secure: the end of an unlock period, or the next retry of a failed secure.
    let mut deadline: Option<Instant> = None;
    let mut opened_at: Option<Instant> = None;
    let secure = |lock: &mut L, deadline: &mut Option<Instant>| match lock.secure() {
        Ok(()) => {
            *deadline = None;
            true
        }
        Err(e) => {
            let _ = notices.send(Notice::SecureFailed(e));
            *deadline = Some(Instant::now() + SECURE_RETRY);
            false
        }
    };
    secure(&mut lock, &mut deadline);
    loop {
        let cmd = match deadline {
            Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Cmd::Shutdown),
            },
            None => Some(rx.recv().unwrap_or(Cmd::Shutdown)),
        };
        match cmd {
            None => {
                if secure(&mut lock, &mut deadline) {
                    if let Some(t) = opened_at.take() {
                        let _ = notices.send(Notice::Relocked { open_for: t.elapsed() });
                    }
                }
            }
            Some(Cmd::Unlock(hold, asked, reply)) => {
                // A request that waited out its own period (the caller has given up on it) is
                // refused rather than opening the door late.
                let left = hold.saturating_sub(asked.elapsed());
                if left.is_zero() {
                    let _ = reply.send(Err(LockError::Supervisor("unlock request expired before it ran".into())));
                    continue;
                }
                let r = lock.unlock(left);
                if r.is_ok() {
                    // The period counts from the request: a slow driver shortens it, never extends it.
                    deadline = Some(asked + hold);
                    opened_at = Some(asked);
                } else {
                    opened_at = None;
                    secure(&mut lock, &mut deadline);
                }
                let _ = reply.send(r);
            }
            Some(Cmd::Secure(reply)) => {
                opened_at = None;
                let r = lock.secure();
                deadline = match &r {
                    Ok(()) => None,
                    Err(_) => Some(Instant::now() + SECURE_RETRY),
                };
                let _ = reply.send(r);
            }
            Some(Cmd::Emergency(reply)) => {
                opened_at = None;
                let _ = notices.send(Notice::Emergency);
                let done = secure(&mut lock, &mut deadline);
                let _ = reply.send(done);
            }
            Some(Cmd::Shutdown) => {
                for _ in 0..3 {
                    if secure(&mut lock, &mut deadline) {
                        break;
                    }
                    std::thread::sleep(SECURE_RETRY);
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{FakeLock, LockAction};

    /// Scheduling noise allowed on a loaded 2-core machine (measured relock delay: < 1 ms idle).
    const TOLERANCE: Duration = Duration::from_millis(150);

    /// Waits (polling, up to 5 s) until the lock is secured; the bound is asserted on the
    /// recorded timestamps, not on how long this waited.
    fn wait_secured(probe: &FakeLock) {
        let t = Instant::now();
        while probe.is_open() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_lock_is_secured_at_the_deadline_without_any_further_call() {
        let probe = FakeLock::default();
        let s = LockSupervisor::start(probe.probe());
        let hold = Duration::from_millis(200);
        let asked = Instant::now();
        s.unlock(hold).unwrap();
        wait_secured(&probe);
        assert!(!probe.is_open(), "secured by the supervisor alone");
        assert_eq!(probe.open_periods().len(), 1);
        // Measured from the request, as the supervisor counts it.
        let secured = probe.with(|st| st.calls.last().map(|c| c.0)).unwrap();
        let o = secured - asked;
        assert!(o >= hold && o <= hold + TOLERANCE, "{o:?}");
        let mut notices = Vec::new();
        let t = Instant::now();
        while notices.is_empty() && t.elapsed() < Duration::from_secs(5) {
            notices = s.notices();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(matches!(notices[..], [Notice::Relocked { open_for }] if open_for >= hold), "{notices:?}");
    }

    #[test]
    fn a_stale_unlock_request_is_refused() {
        let probe = FakeLock::default();
        let s = LockSupervisor::start(probe.probe());
        let r =
            s.request(|reply| Cmd::Unlock(Duration::from_millis(10), Instant::now() - Duration::from_secs(1), reply));
        assert!(r.is_err());
        assert_eq!(probe.unlocks(), 0);
    }

    #[test]
    fn drop_and_emergency_secure_at_once() {
        let probe = FakeLock::default();
        let s = LockSupervisor::start(probe.probe());
        s.unlock(Duration::from_secs(60)).unwrap();
        let t = Instant::now();
        drop(s);
        assert!(!probe.is_open());
        assert!(t.elapsed() < TOLERANCE);

        let probe = FakeLock::default();
        let s = LockSupervisor::start(probe.probe());
        s.unlock(Duration::from_secs(60)).unwrap();
        assert!(s.emergency().secure_now(Duration::from_secs(5)), "secured before secure_now returned");
        assert!(!probe.is_open());
        assert!(matches!(s.notices()[..], [Notice::Emergency]));
    }

    #[test]
    fn a_failed_unlock_is_secured_and_reported() {
        let probe = FakeLock::default();
        probe.set_fail_unlock(true);
        let s = LockSupervisor::start(probe.probe());
        assert!(s.unlock(Duration::from_secs(60)).is_err());
        let calls: Vec<LockAction> = probe.with(|st| st.calls.iter().map(|c| c.1).collect());
        assert_eq!(calls, vec![LockAction::Secured, LockAction::UnlockFailed, LockAction::Secured]);
    }

    /// A driver whose secure fails twice, then works.
    struct Flaky(FakeLock, u32);
    impl Lock for Flaky {
        fn unlock(&mut self, hold: Duration) -> Result<(), LockError> {
            self.0.unlock(hold)
        }
        fn secure(&mut self) -> Result<(), LockError> {
            if self.1 > 0 {
                self.1 -= 1;
                return Err(LockError::Simulated);
            }
            self.0.secure()
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    #[test]
    fn a_failed_secure_is_retried_until_it_works() {
        // Secure fails at start (1st), then at the deadline (2nd): the third try succeeds.
        let probe3 = FakeLock::default();
        let s = LockSupervisor::start(Flaky(probe3.probe(), 2));
        s.unlock(Duration::from_millis(20)).unwrap();
        wait_secured(&probe3);
        assert!(!probe3.is_open(), "retried after {SECURE_RETRY:?}");
        let failures = s.notices().iter().filter(|n| matches!(n, Notice::SecureFailed(_))).count();
        assert_eq!(failures, 2);
    }
}
