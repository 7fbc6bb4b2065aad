//! `facegate`: the host command line. A thin layer over the library crates.
//!
//! Exit codes: 0 success or granted, 1 denied or no match, 2 usage or input error.

mod curves;
mod data;
mod eval;
mod export;
mod gallery_cmd;
mod losses;
mod model;
mod net;
mod onnx_export;
mod onnx_import;
mod optim;
mod progress;
mod train;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Facegate host tools: train face encoders, enrol gym members, evaluate encoders, and verify,
/// identify, rank or search faces.
#[derive(Parser, Debug)]
#[command(name = "facegate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train the Siamese encoder on a folder of labelled faces (DATA/<person>/<image>).
    ///
    /// Splits are by person (never by photo) and written to OUT/splits.json. Prints parameter
    /// count, progress, per-epoch validation loss and EER, and a fit diagnosis; writes
    /// OUT/best.safetensors (+ .json), OUT/metrics.csv and OUT/learning_curves.png. Ctrl-C saves
    /// OUT/last; continue with --resume.
    Train(train::TrainArgs),
    /// Export a trained checkpoint to ONNX for the door unit (tract), with its model card.
    ///
    /// Batch-norm is folded, the L2 normalisation is inside the graph, and the same inputs are run
    /// through tch and tract: the export fails (writing nothing) if they differ by more than 1e-4.
    /// Writes OUT, OUT.card.json (with the SHA-256 fingerprint) and OUT.golden.json.
    Export(export::ExportArgs),
    /// Evaluate an encoder on all genuine and impostor pairs of the given people.
    ///
    /// Reports ROC AUC, EER, TAR at FAR 1e-2 and 1e-3, rank-1 identification, the threshold and
    /// what it means for a door doing 1:N with 20, 500 and 10,000 members.
    Eval {
        #[command(flatten)]
        people: eval::PeopleArgs,
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
    /// Enrol a member from one or more photos (each with exactly one face) into a signed gallery.
    ///
    /// Creates the gallery if absent; refuses a gallery made with another encoder or signed with
    /// another key; warns when the face already matches another member.
    Enroll(gallery_cmd::EnrollArgs),
    /// Check photos against the enrolment quality gate without enrolling anyone: face size,
    /// sharpness, exposure, head pose, detector score, and (taken as one member's photos)
    /// whether they all show the same person. Exit 0 all pass, 1 some fail.
    Quality {
        #[command(flatten)]
        model: gallery_cmd::ModelArgs,
        /// Print one JSON object per photo.
        #[arg(long)]
        json: bool,
        /// Photos, each with exactly one face.
        #[arg(required = true)]
        photos: Vec<PathBuf>,
    },
    /// List, show, remove, renew or rename members. Removal deletes the embeddings from the file.
    Members {
        /// Gallery file.
        #[arg(long)]
        gallery: PathBuf,
        /// Signing key.
        #[arg(long, default_value = gallery_cmd::DEFAULT_SECRET_KEY)]
        key: PathBuf,
        /// JSON output (list).
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: gallery_cmd::MembersCmd,
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
        model: gallery_cmd::ModelArgs,
        /// Distance threshold (default: the model card's).
        #[arg(long)]
        threshold: Option<f32>,
        #[arg(long)]
        json: bool,
    },
    /// 1:N: who is this? Exit 0 granted, 1 denied (unknown, expired, ambiguous).
    Identify {
        #[command(flatten)]
        q: gallery_cmd::QueryArgs,
    },
    /// The K members who look most like the face in a photo, best first (also `search`: the
    /// gallery's nearest-neighbour index, exact, scales to 100,000+ members; see `bench search`).
    #[command(visible_alias = "search")]
    Rank {
        #[command(flatten)]
        q: gallery_cmd::QueryArgs,
        /// How many members to list.
        #[arg(long, default_value_t = 5)]
        top: usize,
    },
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
        people: eval::PeopleArgs,
        /// Target per-comparison false-accept rate.
        #[arg(long, default_value_t = 1e-3)]
        far: f64,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCmd {
    /// Write a new key pair.
    Init {
        #[arg(long, default_value = gallery_cmd::DEFAULT_SECRET_KEY)]
        secret: PathBuf,
        #[arg(long, default_value = gallery_cmd::DEFAULT_PUBLIC_KEY)]
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
        #[arg(long, default_value = gallery_cmd::DEFAULT_PUBLIC_KEY)]
        trust: PathBuf,
        /// Encoder the door units run.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Bulk-enrol DIR/<member id>/<photos> in parallel; bad photos and members are skipped and
    /// listed (exit 1 if anything was skipped).
    ImportDir(gallery_cmd::ImportArgs),
    /// Measure the threshold on the gallery's own members (impostors: other members' enrolment
    /// photos) for a target FAR; report it, and with --write store it in the gallery.
    Calibrate(gallery_cmd::CalibrateGalleryArgs),
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Training throughput of the default encoder: forward + backward + Adam step on random
    /// 64×64 batches, images per second as JSON.
    Train {
        #[arg(long, default_value_t = 64)]
        batch: i64,
        #[arg(long, default_value_t = 20)]
        steps: usize,
        #[arg(long, value_enum, default_value = "auto")]
        device: train::DeviceArg,
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
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("facegate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Train(args) => {
            let interrupt = Arc::new(AtomicBool::new(false));
            let flag = interrupt.clone();
            ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
            let summary = train::train(&args, interrupt)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(if summary.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
        }
        Command::Export(args) => {
            let summary = export::export(&args)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval { people, out, json } => {
            let (emb, card) = eval::embed_people(&people)?;
            let report = eval::evaluate(&emb, &card, 1e-3)?;
            let text = serde_json::to_string_pretty(&report)?;
            if let Some(dir) = out {
                std::fs::create_dir_all(&dir)?;
                facegate_shared::gallery_file::write_atomic(&dir.join("eval.json"), text.as_bytes())?;
                let scores = eval::all_pairs(&emb.items)?;
                curves::plot_roc(&dir.join("roc.png"), &scores, report.threshold)?;
                curves::plot_distances(&dir.join("distances.png"), &scores, report.threshold)?;
            }
            if json {
                println!("{text}");
            } else {
                println!("model      {} ({})", report.model, &report.fingerprint[..12]);
                println!("people     {} ({} images, {} skipped)", report.people, report.images, report.skipped);
                println!("pairs      {} genuine, {} impostor", report.genuine_pairs, report.impostor_pairs);
                println!("AUC        {:.5}", report.auc);
                println!("EER        {:.2}% at distance {:.3}", report.eer * 100.0, report.eer_threshold);
                println!(
                    "TAR        {:.2}% at FAR 1e-2, {:.2}% at FAR 1e-3",
                    report.tar_at_far_1e2 * 100.0,
                    report.tar_at_far_1e3 * 100.0
                );
                println!("rank-1     {:.2}%", report.rank1_identification * 100.0);
                println!(
                    "threshold  {:.3} ({}): FAR {:.4}, TAR {:.2}%",
                    report.threshold,
                    report.threshold_source,
                    report.far_at_threshold,
                    report.tar_at_threshold * 100.0
                );
                for (n, p) in &report.open_set_false_accept {
                    println!(
                        "door 1:N   {n:>6} members: a stranger matches someone with probability {:.2}%",
                        p * 100.0
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { cmd: KeysCmd::Init { secret, public } } => {
            gallery_cmd::keys_init(&secret, &public)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Enroll(a) => gallery_cmd::enroll(&a),
        Command::Quality { model, json, photos } => gallery_cmd::quality(&model, &photos, json),
        Command::Members { gallery, key, json, cmd } => gallery_cmd::members(&gallery, &key, &cmd, json),
        Command::Gallery { cmd: GalleryCmd::Inspect { gallery, json } } => gallery_cmd::inspect(&gallery, json),
        Command::Gallery { cmd: GalleryCmd::Verify { gallery, trust, model, json } } => {
            gallery_cmd::gallery_verify(&gallery, &trust, model.as_deref(), json)
        }
        Command::Gallery { cmd: GalleryCmd::ImportDir(a) } => gallery_cmd::import_dir(&a),
        Command::Gallery { cmd: GalleryCmd::Calibrate(a) } => gallery_cmd::calibrate_gallery(&a),
        Command::Verify { photo_a, photo_b, model, threshold, json } => {
            gallery_cmd::verify_photos(&model, &photo_a, &photo_b, threshold, json)
        }
        Command::Identify { q } => gallery_cmd::identify(&q),
        Command::Rank { q, top } => gallery_cmd::rank(&q, top),
        Command::Bench { cmd: BenchCmd::Train { batch, steps, device } } => {
            println!("{}", serde_json::to_string_pretty(&train::bench_throughput(batch, steps, device)?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { cmd: BenchCmd::Search { members, queries, dim, index, k } } => {
            gallery_cmd::bench_search(members, queries, dim, &index, k)
        }
        Command::Calibrate { people, far } => {
            let (emb, _) = eval::embed_people(&people)?;
            let scores = eval::all_pairs(&emb.items)?;
            let t = scores.threshold_for_far_conservative(far)?;
            let what = format!(
                "{} people of {}; the smaller of the empirical and the normal-fit threshold",
                emb.people.len(),
                people.data.display()
            );
            let card = eval::write_threshold(&people.model, t, far, what)?;
            println!(
                "threshold {t:.4} at FAR <= {far} (measured {:.5}, TAR {:.2}%) written to the card of {}",
                scores.far(t),
                scores.tar(t) * 100.0,
                card.name
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod cli_tests {
    use super::*;

    #[test]
    fn train_flags_parse() {
        let cli = Cli::try_parse_from([
            "facegate",
            "train",
            "--data",
            "d",
            "-o",
            "o",
            "--loss",
            "contrastive",
            "--mining",
            "semi-hard",
            "--margin",
            "1.2",
            "--steps",
            "10",
            "--pretrain-steps",
            "0",
            "--epoch-steps",
            "5",
            "--people-per-batch",
            "4",
            "--images-per-person",
            "3",
            "--lr",
            "0.01",
            "--weight-decay",
            "0",
            "--optimizer",
            "sgd",
            "--ema",
            "0",
            "--patience",
            "2",
            "--val-people",
            "2",
            "--test-people",
            "2",
            "--init-from",
            "w.safetensors",
            "--freeze",
            "2",
            "--resume",
            "--no-augment",
            "--device",
            "cpu",
            "--cache",
            "c",
            "--detector",
            "y.onnx",
            "--seed",
            "3",
        ])
        .unwrap();
        let Command::Train(a) = cli.command else { panic!("train") };
        assert_eq!(a.loss, train::LossKind::Contrastive);
        assert_eq!(a.mining, losses::Mining::SemiHard);
        assert_eq!((a.margin(), a.steps, a.freeze, a.seed), (1.2, 10, net::Freeze::Layers(2), 3));
        assert!(a.resume && a.no_augment);
        assert!(a.validate().is_ok());
        let bad = Cli::try_parse_from(["facegate", "train", "--data", "d", "--margin", "2.5"]).unwrap();
        let Command::Train(b) = bad.command else { panic!("train") };
        assert!(b.validate().unwrap_err().to_string().contains("[0, 2]"));
        assert!(Cli::try_parse_from(["facegate", "train"]).is_err(), "--data is required");
        assert!(Cli::try_parse_from(["facegate", "train", "--data", "d", "--loss", "hinge"]).is_err());
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
        assert!(matches!(c.command, Command::Members { cmd: gallery_cmd::MembersCmd::Renew { .. }, .. }));
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
        let c = Cli::try_parse_from(["facegate", "export", "ck.safetensors", "-o", "m.onnx", "--name", "x"]).unwrap();
        assert!(matches!(c.command, Command::Export(_)));
    }
}
