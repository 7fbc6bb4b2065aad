//! Time per face of one or more ONNX encoders in tract (their cards beside them), measured in one
//! process with the models interleaved run by run, so a slower moment of the machine hits all of
//! them alike. Prints JSON: median and 90th percentile ms per face, and the ratio of each median
//! to the first model's.
//! Run: `taskset -c 1 cargo run --release -p facegate-face --example encoder_time -- [--runs N] MODEL.onnx...`.

use facegate_face::{align_face, card_path_for, load_image, preprocess, Encoder, TractEncoder};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 200usize;
    if let Some(i) = args.iter().position(|a| a == "--runs") {
        runs = args.get(i + 1).ok_or("--runs needs a number")?.parse()?;
        if runs == 0 {
            return Err("--runs must be at least 1".into());
        }
        args.drain(i..i + 2);
    }
    if args.is_empty() {
        return Err("give one or more encoder .onnx files (each with its .card.json)".into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let photo = load_image(&root.join("data/orl/s1/1.pgm"))?;
    // ORL s1/1 at its own size: landmarks from a fixed, plausible layout (timing does not depend on them)
    let marks = [[30.0, 50.0], [62.0, 50.0], [46.0, 68.0], [33.0, 86.0], [59.0, 86.0]];
    let mut models = Vec::new();
    for a in &args {
        let path = Path::new(a);
        let card = facegate_shared::ModelCard::load(&card_path_for(path))?;
        let enc = TractEncoder::from_bytes(&std::fs::read(path)?, card, a)?;
        let spec = enc.card().input.clone();
        let crop = align_face(&photo, &marks, spec.width, spec.height).ok_or("alignment failed")?;
        let x = preprocess(&crop, &spec);
        for _ in 0..5 {
            enc.encode_tensor(&x)?;
        }
        models.push((a.clone(), enc, x, Vec::with_capacity(runs)));
    }
    for _ in 0..runs {
        for (_, enc, x, times) in models.iter_mut() {
            let t = std::time::Instant::now();
            enc.encode_tensor(x)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut out = Vec::new();
    let mut first = None;
    for (name, _, _, mut times) in models {
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let p90 = times[(times.len() * 9 / 10).min(times.len() - 1)];
        let base = *first.get_or_insert(median);
        out.push(serde_json::json!({"model": name, "runs": runs, "median_ms": median, "p90_ms": p90, "ratio_to_first": median / base}));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
