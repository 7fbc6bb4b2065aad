//! `facegate-train`: the training tool. Trains the encoder with tch, exports it to ONNX, and
//! measures training throughput. Needs libtorch (the torch venv of `make setup`); the front-desk
//! `facegate` does not.
//!
//! Exit codes: 0 success, 2 usage or input error, 130 interrupted (state saved for --resume).

use clap::{Parser, Subcommand};
use facegate_train::{export, trainer};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Facegate training tool: train the Siamese face encoder (tch), export it to ONNX for the door
/// unit, and import ONNX encoders for fine-tuning.
#[derive(Parser, Debug)]
#[command(name = "facegate-train", version, about, long_about = None)]
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
    /// OUT/last; continue with --resume. `--init-from X.onnx` fine-tunes an ONNX encoder.
    Train(trainer::TrainArgs),
    /// Person-k-fold cross-validation: one training run per fold (each person a test person
    /// exactly once; --val-people of the other folds validate), then per fold and mean ± sd the
    /// test EER, AUC, TAR at FAR 1e-2 and the chance that a stranger matches someone among 20 or
    /// 500 members. Writes OUT/fold-N/ (each run), OUT/cv.json and OUT/cv.md.
    Cv {
        /// Number of person-disjoint folds.
        #[arg(long, default_value_t = 5)]
        k: usize,
        #[command(flatten)]
        train: trainer::TrainArgs,
    },
    /// Compares `cv` runs of several recipes on the same folds: test EER per fold, mean ± sd,
    /// the gain over the first (reference) run fold by fold, and whether it exceeds the
    /// reference's fold-to-fold sd. Writes OUT.md, OUT.json and OUT.png (EER per fold, per recipe).
    CvCompare {
        /// NAME=DIR of each `cv` output folder (DIR/cv.json); the first is the reference.
        #[arg(required = true, num_args = 2..)]
        runs: Vec<String>,
        /// Output path without extension.
        #[arg(long, short = 'o', default_value = "runs/cv-compare")]
        out: std::path::PathBuf,
    },
    /// Export a trained checkpoint to ONNX for the door unit (tract), with its model card.
    ///
    /// Batch-norm is folded, the L2 normalisation is inside the graph, and the same inputs are run
    /// through tch and tract: the export fails (writing nothing) if they differ by more than 1e-4.
    /// Writes OUT, OUT.card.json (with the SHA-256 fingerprint) and OUT.golden.json. Calibrate
    /// its threshold with `facegate calibrate`.
    Export(export::ExportArgs),
    /// Transfer learning onto a smaller network: keep a pretrained ONNX encoder's layers up to a
    /// cut (e.g. SFace to its 14×14 stage) and append a fresh head (`--head dw2,pw256,gdc`) ending
    /// in a fully connected embedding layer. Writes OUT and OUT.card.json; prints the number of
    /// trunk layers, to train the head with `--init-from OUT --freeze N`.
    Graft(facegate_train::onnx::graft::GraftArgs),
    /// Benchmarks that print JSON.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Training throughput of the built-in encoder: forward + backward + Adam step on random
    /// 64×64 batches, images per second as JSON.
    Train {
        #[arg(long, default_value_t = 64)]
        batch: i64,
        #[arg(long, default_value_t = 20)]
        steps: usize,
        #[arg(long, value_enum, default_value = "auto")]
        device: trainer::DeviceArg,
    },
}

fn main() -> ExitCode {
    facegate_hostkit::cli::main::<Cli>("facegate-train", run)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Train(args) => {
            let interrupt = Arc::new(AtomicBool::new(false));
            let flag = interrupt.clone();
            ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
            let summary = trainer::train(&args, interrupt)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(if summary.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
        }
        Command::Cv { k, train } => {
            if train.folds.is_some() || train.fold.is_some() {
                anyhow::bail!("cv sets --folds and --fold itself: give the number of folds with --k");
            }
            let interrupt = Arc::new(AtomicBool::new(false));
            let flag = interrupt.clone();
            ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
            let report = facegate_train::cv::cross_validate(&train, k, interrupt)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
        }
        Command::CvCompare { runs, out } => {
            let runs = runs
                .iter()
                .map(|r| match r.split_once('=') {
                    Some((n, d)) if !n.is_empty() && !d.is_empty() => Ok((n.to_string(), std::path::PathBuf::from(d))),
                    _ => Err(anyhow::anyhow!("'{r}': give each run as NAME=DIR")),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let cmp = facegate_train::cv::Comparison::load(&runs)?;
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let with = |ext: &str| std::path::PathBuf::from(format!("{}.{ext}", out.display()));
            facegate_shared::gallery_file::write_atomic(&with("md"), cmp.markdown().as_bytes())?;
            facegate_shared::gallery_file::write_atomic(&with("json"), serde_json::to_string_pretty(&cmp)?.as_bytes())?;
            cmp.plot(&with("png"))?;
            println!("{}", cmp.markdown());
            eprintln!("wrote {}, {} and {}", with("md").display(), with("json").display(), with("png").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(args) => {
            let summary = export::export(&args)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Graft(args) => {
            let summary = facegate_train::onnx::graft::graft_files(&args)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { cmd: BenchCmd::Train { batch, steps, device } } => {
            println!("{}", serde_json::to_string_pretty(&trainer::bench_throughput(batch, steps, device)?)?);
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
            "facegate-train",
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
        assert_eq!(a.loss, trainer::LossKind::Contrastive);
        assert_eq!(a.mining, facegate_train::losses::Mining::SemiHard);
        assert_eq!((a.margin(), a.steps, a.freeze, a.seed), (1.2, 10, facegate_train::net::Freeze::Layers(2), 3));
        assert!(a.resume && a.no_augment);
        assert!(a.validate().is_ok());
        let bad = Cli::try_parse_from(["facegate-train", "train", "--data", "d", "--margin", "2.5"]).unwrap();
        let Command::Train(b) = bad.command else { panic!("train") };
        assert!(b.validate().unwrap_err().to_string().contains("[0, 2]"));
        assert!(Cli::try_parse_from(["facegate-train", "train"]).is_err(), "--data is required");
        assert!(Cli::try_parse_from(["facegate-train", "train", "--data", "d", "--loss", "hinge"]).is_err());
    }

    #[test]
    fn export_and_bench_flags_parse() {
        let c =
            Cli::try_parse_from(["facegate-train", "export", "ck.safetensors", "-o", "m.onnx", "--name", "x"]).unwrap();
        assert!(matches!(c.command, Command::Export(_)));
        let c = Cli::try_parse_from(["facegate-train", "bench", "train", "--steps", "2"]).unwrap();
        assert!(matches!(c.command, Command::Bench { cmd: BenchCmd::Train { steps: 2, .. } }));
    }
}
