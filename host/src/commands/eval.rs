//! `facegate eval` and `facegate calibrate`: an encoder on all genuine and impostor pairs of the
//! given people, and the threshold for a target false-accept rate written into its card
//! (calibrating a *model*; `facegate gallery calibrate` measures a *gallery*'s own members).

use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::eval::{self, PeopleArgs};

/// `facegate eval`: prints the report (or JSON); with `out`, writes eval.json, roc.png and
/// distances.png there.
pub fn eval_model(people: &PeopleArgs, out: Option<&PathBuf>, json: bool) -> Result<ExitCode> {
    let (emb, card) = eval::embed_people(people)?;
    let report = eval::evaluate(&emb, &card, 1e-3)?;
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)?;
        facegate_shared::gallery_file::write_atomic(&dir.join("eval.json"), text.as_bytes())?;
        let scores = eval::all_pairs(&emb.items)?;
        crate::plots::plot_roc(&dir.join("roc.png"), &scores, report.threshold)?;
        crate::plots::plot_distances(&dir.join("distances.png"), &scores, report.threshold)?;
    }
    if json {
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
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
        println!("door 1:N   {n:>6} members: a stranger matches someone with probability {:.2}%", p * 100.0);
    }
    Ok(ExitCode::SUCCESS)
}

/// `facegate calibrate`: the smaller of the empirical and the normal-fit threshold at `far`,
/// written into the model's card.
pub fn calibrate_model(people: &PeopleArgs, far: f64) -> Result<ExitCode> {
    let (emb, _) = eval::embed_people(people)?;
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
