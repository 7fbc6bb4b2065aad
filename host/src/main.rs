//! `facegate`: the host command line for the front desk and servers. Parses and dispatches to
//! `facegate_host::commands`; never links libtorch (`facegate train`/`export` name
//! `facegate-train`, and run it when it is installed beside this binary).
//!
//! Exit codes: 0 success or granted, 1 denied or no match, 2 usage or input error.

use clap::{Parser, Subcommand};
use facegate_host::commands::{self as cmd, bench, db, enrol, eval, gallery, members, pad, query, serve};
use facegate_host::eval::PeopleArgs;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// Facegate front-desk tools: enrol gym members (default encoder: SFace), manage galleries,
/// evaluate and calibrate encoders, and verify, identify, rank or search faces. Training and
/// ONNX export are in `facegate-train`.
#[derive(Parser, Debug)]
#[command(name = "facegate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Training is in `facegate-train` (it links libtorch); run when installed beside this binary.
    #[command(hide = true, disable_help_flag = true)]
    Train {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Export is in `facegate-train`; run when installed beside this binary.
    #[command(hide = true, disable_help_flag = true)]
    Export {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Evaluate an encoder on all genuine and impostor pairs of the given people.
    ///
    /// Reports ROC AUC, EER, TAR at FAR 1e-2 and 1e-3, rank-1 identification, the threshold and
    /// what it means for a door doing 1:N with 20, 500 and 10,000 members.
    Eval {
        #[command(flatten)]
        people: PeopleArgs,
        /// Folder for eval.json, roc.png and distances.png.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create the ed25519 key pair that signs galleries (the secret file is owner-only).
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Enrol a member from one or more photos (each with exactly one face), or from a camera at
    /// the desk (--camera 0), into a signed gallery.
    ///
    /// Creates the gallery if absent; refuses a gallery made with another encoder or signed with
    /// another key; warns when the face already matches another member.
    Enroll(enrol::EnrollArgs),
    /// Check photos against the enrolment quality gate without enrolling anyone: face size,
    /// sharpness, exposure, head pose, detector score, and (taken as one member's photos)
    /// whether they all show the same person. Exit 0 all pass, 1 some fail.
    Quality {
        #[command(flatten)]
        model: cmd::ModelArgs,
        /// Print one JSON object per photo.
        #[arg(long)]
        json: bool,
        /// Photos, each with exactly one face.
        #[arg(required = true)]
        photos: Vec<PathBuf>,
    },
    /// Presentation-attack evaluation of the door's liveness checks (passive 3-D test, head-turn
    /// challenge): print attacks made from ORL photos (a rigid plane, or a print bent on a
    /// cylinder, moved in 3-D on a background, with camera noise), screen replays of a recorded
    /// turn, and genuine head turns, through the real detector; threshold tuned on half the
    /// people, APCER and BPCER with 95 % bounds on the other half. Simulated attacks: not an
    /// ISO/IEC 30107-3 test.
    PadEval(pad::PadArgs),
    /// List, show, remove, renew or rename members. Removal deletes the embeddings from the file.
    Members {
        /// Gallery file.
        #[arg(long)]
        gallery: PathBuf,
        /// Signing key.
        #[arg(long, default_value = cmd::DEFAULT_SECRET_KEY)]
        key: PathBuf,
        /// JSON output (list).
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: members::MembersCmd,
    },
    /// Inspect a gallery file (header, counts, signer).
    Gallery {
        #[command(subcommand)]
        cmd: GalleryCmd,
    },
    /// 1:1: are the faces in two photos the same person? Exit 0 same, 1 different.
    Verify {
        photo_a: PathBuf,
        photo_b: PathBuf,
        #[command(flatten)]
        model: cmd::ModelArgs,
        /// Distance threshold (default: the model card's).
        #[arg(long)]
        threshold: Option<f32>,
        #[arg(long)]
        json: bool,
    },
    /// 1:N: who is this? Exit 0 granted, 1 denied (unknown, expired, ambiguous).
    Identify {
        #[command(flatten)]
        q: query::QueryArgs,
    },
    /// The K members who look most like the face in a photo, best first (also `search`: the
    /// gallery's nearest-neighbour index, exact, scales to 100,000+ members; see `bench search`).
    ///
    /// With --backend postgres://…, the index is PostgreSQL + pgvector loaded by `facegate
    /// gallery sync-db` (no gallery file needed): --mode exact, or hnsw:EF (approximate).
    #[command(visible_alias = "search")]
    Rank {
        /// The photo (exactly one face).
        photo: PathBuf,
        /// Gallery file (not with --backend).
        #[arg(long, required_unless_present = "backend", conflicts_with = "backend")]
        gallery: Option<PathBuf>,
        /// Public key the gallery must be signed with.
        #[arg(long, default_value = cmd::DEFAULT_PUBLIC_KEY)]
        trust: PathBuf,
        #[command(flatten)]
        model: cmd::ModelArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// How many members to list.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// PostgreSQL URL of an index loaded by `facegate gallery sync-db`.
        #[arg(long)]
        backend: Option<String>,
        /// With --backend: exact (sequential scan, the exact answer; the default) or hnsw:EF.
        #[arg(long, requires = "backend")]
        mode: Option<String>,
        /// With --backend: only members admitted today.
        #[arg(long, requires = "backend")]
        active_only: bool,
    },
    /// Matching as a service: HTTP/JSON search, verify, identify and member look-up over a signed
    /// gallery kept in memory and hot-reloaded (see docs/openapi.yaml). Loopback and bearer
    /// tokens by default.
    Serve(serve::ServeArgs),
    /// Benchmarks that print JSON.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
    /// Calibrate the threshold for a target false-accept rate and write it into the model card.
    ///
    /// Uses the smaller of the empirical threshold and a normal fit of the impostor distances,
    /// because a few hundred impostor pairs cannot show a 1e-3 tail on their own.
    Calibrate {
        #[command(flatten)]
        people: PeopleArgs,
        /// Target per-comparison false-accept rate.
        #[arg(long, default_value_t = 1e-3)]
        far: f64,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCmd {
    /// Write a new key pair.
    Init {
        #[arg(long, default_value = cmd::DEFAULT_SECRET_KEY)]
        secret: PathBuf,
        #[arg(long, default_value = cmd::DEFAULT_PUBLIC_KEY)]
        public: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum GalleryCmd {
    /// Print the header and counts.
    Inspect {
        gallery: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check what a door unit checks: checksum, signature by the trusted key (before the payload
    /// is parsed) and, with --model, the encoder binding (ONNX fingerprint and the card's
    /// preprocessing fields). The door's replay guard also needs its own state, so it is not
    /// checked here. Exit 0 valid, 1 invalid.
    Verify {
        gallery: PathBuf,
        /// Public key the door units trust.
        #[arg(long, default_value = cmd::DEFAULT_PUBLIC_KEY)]
        trust: PathBuf,
        /// Encoder the door units run.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Bulk-enrol DIR/<member id>/<photos> in parallel; bad photos and members are skipped and
    /// listed (exit 1 if anything was skipped).
    ImportDir(enrol::ImportArgs),
    /// Load the signed gallery into PostgreSQL + pgvector (binary COPY, HNSW index), replacing an
    /// older revision in one transaction; the file stays the authority. A revision already
    /// loaded is a no-op; an older one is refused.
    SyncDb(db::SyncDbArgs),
    /// Measure the threshold on the gallery's own members (impostors: other members' enrolment
    /// photos) for a target FAR; report it, and with --write store it in the gallery.
    Calibrate(gallery::CalibrateGalleryArgs),
    /// Put a signed gallery where door units pull it (`gallery.url`): DIR/gallery.fgg plus a JSON
    /// manifest (revision, members, fingerprint, SHA-256), each written atomically; any static web
    /// server can serve DIR. Refuses a gallery the trusted key does not verify and an older revision.
    Publish(gallery::PublishArgs),
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Training throughput is in `facegate-train bench train`.
    #[command(hide = true, disable_help_flag = true)]
    Train {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// 1:N search on synthetic unit vectors: build time, median and p99 query latency, memory.
    Search {
        #[arg(long, default_value_t = 100_000)]
        members: usize,
        #[arg(long, default_value_t = 200)]
        queries: usize,
        #[arg(long, default_value_t = 128)]
        dim: usize,
        /// brute, flat, sq8 (default), linfa-linear, linfa-kdtree, linfa-balltree.
        #[arg(long, default_value = "sq8")]
        index: String,
        #[arg(long, default_value_t = 1)]
        k: usize,
    },
}

fn main() -> ExitCode {
    facegate_host::cli::main::<Cli>("facegate", run)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Train { args } => forward_to_trainer("train", &args),
        Command::Export { args } => forward_to_trainer("export", &args),
        Command::Bench { cmd: BenchCmd::Train { args } } => {
            let mut all = vec![OsString::from("train")];
            all.extend(args);
            forward_to_trainer("bench", &all)
        }
        Command::Eval { people, out, json } => eval::eval_model(&people, out.as_ref(), json),
        Command::Calibrate { people, far } => eval::calibrate_model(&people, far),
        Command::Keys { cmd: KeysCmd::Init { secret, public } } => {
            cmd::keys_init(&secret, &public)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Enroll(a) => enrol::enroll(&a),
        Command::Quality { model, json, photos } => enrol::quality(&model, &photos, json),
        Command::PadEval(a) => pad::pad_eval(&a),
        Command::Members { gallery, key, json, cmd } => members::members(&gallery, &key, &cmd, json),
        Command::Gallery { cmd: GalleryCmd::Inspect { gallery: g, json } } => gallery::inspect(&g, json),
        Command::Gallery { cmd: GalleryCmd::Verify { gallery: g, trust, model, json } } => {
            gallery::gallery_verify(&g, &trust, model.as_deref(), json)
        }
        Command::Gallery { cmd: GalleryCmd::ImportDir(a) } => enrol::import_dir(&a),
        Command::Gallery { cmd: GalleryCmd::Calibrate(a) } => gallery::calibrate_gallery(&a),
        Command::Gallery { cmd: GalleryCmd::SyncDb(a) } => db::sync_db(&a),
        Command::Gallery { cmd: GalleryCmd::Publish(a) } => gallery::publish(&a),
        Command::Verify { photo_a, photo_b, model, threshold, json } => {
            query::verify_photos(&model, &photo_a, &photo_b, threshold, json)
        }
        Command::Identify { q } => query::identify(&q),
        Command::Rank { photo, gallery, trust, model, json, top, backend, mode, active_only } => {
            match (gallery, backend) {
                (_, Some(url)) => {
                    db::search_db(&photo, &url, &model, top, mode.as_deref().unwrap_or("exact"), active_only, json)
                }
                (Some(_), None) if mode.is_some() || active_only => {
                    anyhow::bail!("--mode and --active-only are for --backend (a gallery file is searched exactly)")
                }
                (Some(gallery), None) => query::rank(&query::QueryArgs { photo, gallery, trust, model, json }, top),
                (None, None) => anyhow::bail!("give --gallery or --backend"),
            }
        }
        Command::Serve(a) => serve::serve(&a),
        Command::Bench { cmd: BenchCmd::Search { members, queries, dim, index, k } } => {
            bench::bench_search(members, queries, dim, &index, k)
        }
    }
}

/// `facegate train|export|bench train`: these link libtorch, so they live in `facegate-train`.
/// Runs it when it is installed beside this binary; otherwise says where to get it.
fn forward_to_trainer(sub: &str, args: &[OsString]) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe()?;
    let trainer = exe.with_file_name("facegate-train");
    if !trainer.is_file() {
        anyhow::bail!(
            "`facegate {sub}` is part of `facegate-train`, the training tool (it links libtorch, which the \
             front-desk `facegate` never loads); it is not installed beside {}. Build it with \
             `cargo build -p facegate-train` after `make setup` (torch venv), then run `facegate-train {sub} ...`",
            exe.display()
        );
    }
    let status = std::process::Command::new(&trainer).arg(sub).args(args).status()?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(2)),
        None => ExitCode::from(2),
    })
}

#[cfg(test)]
mod cli_tests {
    use super::*;

    #[test]
    fn training_commands_are_forwarded_with_their_flags() {
        let c = Cli::try_parse_from(["facegate", "train", "--data", "d", "-o", "o", "--steps", "3"]).unwrap();
        let Command::Train { args } = c.command else { panic!("train") };
        assert_eq!(args, ["--data", "d", "-o", "o", "--steps", "3"].map(OsString::from));
        let c = Cli::try_parse_from(["facegate", "export", "ck.safetensors", "-o", "m.onnx"]).unwrap();
        assert!(matches!(c.command, Command::Export { args } if args.len() == 3));
        let c = Cli::try_parse_from(["facegate", "bench", "train", "--steps", "2"]).unwrap();
        assert!(matches!(c.command, Command::Bench { cmd: BenchCmd::Train { args } } if args.len() == 2));
    }

    #[test]
    fn front_desk_flags_parse() {
        let c = Cli::try_parse_from([
            "facegate",
            "enroll",
            "--gallery",
            "g",
            "--model",
            "m.onnx",
            "--detector",
            "y.onnx",
            "--id",
            "17",
            "--name",
            "Anna",
            "--valid-from",
            "2026-01-01",
            "--valid-until",
            "2026-12-31",
            "--key",
            "k",
            "a.jpg",
            "b.jpg",
        ])
        .unwrap();
        let Command::Enroll(a) = c.command else { panic!("enroll") };
        assert_eq!((a.id.as_str(), a.photos.len(), a.valid_until.as_deref()), ("17", 2, Some("2026-12-31")));
        assert!(
            Cli::try_parse_from(["facegate", "enroll", "--gallery", "g", "--id", "1", "--name", "x"]).is_err(),
            "photos required"
        );
        let c =
            Cli::try_parse_from(["facegate", "enroll", "--gallery", "g", "--id", "1", "--name", "x", "--camera", "0"])
                .unwrap();
        let Command::Enroll(a) = c.command else { panic!("enroll") };
        assert_eq!((a.camera.as_deref(), a.shots, a.timeout), (Some("0"), 3, 60));
        let bad = ["facegate", "enroll", "--gallery", "g", "--id", "1", "--name", "x", "--source", "usb0"];
        assert!(Cli::try_parse_from(bad).is_err(), "a source URI is checked when parsed");
        let both =
            ["facegate", "enroll", "--gallery", "g", "--id", "1", "--name", "x", "--camera", "0", "--source", "dir:d"];
        assert!(Cli::try_parse_from(both).is_err(), "one capture source");
        let c = Cli::try_parse_from([
            "facegate",
            "members",
            "--gallery",
            "g",
            "renew",
            "17",
            "--valid-until",
            "2027-01-01",
        ])
        .unwrap();
        assert!(matches!(c.command, Command::Members { cmd: members::MembersCmd::Renew { .. }, .. }));
        let c = Cli::try_parse_from(["facegate", "identify", "p.jpg", "--gallery", "g", "--trust", "k.pub", "--json"])
            .unwrap();
        assert!(matches!(c.command, Command::Identify { q } if q.json && q.trust.to_str() == Some("k.pub")));
        let c = Cli::try_parse_from(["facegate", "rank", "p.jpg", "--gallery", "g", "--top", "3"]).unwrap();
        assert!(matches!(c.command, Command::Rank { top: 3, .. }));
        let c = Cli::try_parse_from(["facegate", "verify", "a.jpg", "b.jpg", "--threshold", "0.9"]).unwrap();
        assert!(matches!(c.command, Command::Verify { threshold: Some(t), .. } if t == 0.9));
        let c = Cli::try_parse_from([
            "facegate",
            "bench",
            "search",
            "--members",
            "1000",
            "--queries",
            "5",
            "--index",
            "flat",
        ])
        .unwrap();
        assert!(matches!(c.command, Command::Bench { cmd: BenchCmd::Search { members: 1000, queries: 5, .. } }));
        let c = Cli::try_parse_from(["facegate", "gallery", "inspect", "g", "--json"]).unwrap();
        assert!(matches!(c.command, Command::Gallery { cmd: GalleryCmd::Inspect { json: true, .. } }));
        let c = Cli::try_parse_from(["facegate", "gallery", "verify", "g", "--trust", "k.pub", "--model", "m.onnx"])
            .unwrap();
        assert!(matches!(c.command, Command::Gallery { cmd: GalleryCmd::Verify { model: Some(_), .. } }));
        let c =
            Cli::try_parse_from(["facegate", "gallery", "import-dir", "d", "--gallery", "g", "--jobs", "2"]).unwrap();
        assert!(
            matches!(c.command, Command::Gallery { cmd: GalleryCmd::ImportDir(ref a) } if a.jobs == Some(2) && a.dir == std::path::Path::new("d"))
        );
        assert!(Cli::try_parse_from(["facegate", "gallery", "import-dir", "d"]).is_err(), "--gallery is required");
        let c = Cli::try_parse_from(["facegate", "search", "q.jpg", "--gallery", "g", "--top", "3"]).unwrap();
        assert!(matches!(c.command, Command::Rank { top: 3, .. }));
        let c = Cli::try_parse_from([
            "facegate",
            "search",
            "q.jpg",
            "--backend",
            "postgres://x/db",
            "--mode",
            "hnsw:40",
            "--active-only",
        ])
        .unwrap();
        assert!(matches!(c.command, Command::Rank { backend: Some(_), active_only: true, gallery: None, .. }));
        assert!(Cli::try_parse_from(["facegate", "search", "q.jpg", "--gallery", "g", "--backend", "postgres://x"])
            .is_err());
        assert!(Cli::try_parse_from(["facegate", "search", "q.jpg"]).is_err(), "a gallery or a backend");
        let c = Cli::try_parse_from(["facegate", "gallery", "sync-db", "g", "--db", "postgres://x/db"]).unwrap();
        assert!(matches!(c.command, Command::Gallery { cmd: GalleryCmd::SyncDb(_) }));
        let c = Cli::try_parse_from(["facegate", "keys", "init", "--secret", "s", "--public", "p"]).unwrap();
        assert!(matches!(c.command, Command::Keys { .. }));
        let c = Cli::try_parse_from([
            "facegate",
            "calibrate",
            "--model",
            "m",
            "--data",
            "d",
            "--splits",
            "s.json",
            "--split",
            "val",
            "--far",
            "0.01",
        ])
        .unwrap();
        assert!(matches!(c.command, Command::Calibrate { far, .. } if far == 0.01));
        let c =
            Cli::try_parse_from(["facegate", "eval", "--model", "m", "--data", "d", "--json", "--out", "o"]).unwrap();
        assert!(matches!(c.command, Command::Eval { json: true, .. }));
    }
}
