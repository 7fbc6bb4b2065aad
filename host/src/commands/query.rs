//! The matching uses: `facegate verify` (1:1), `identify` (1:N) and `rank`/`search` (top k).

use anyhow::{Context, Result};
use facegate_face::Encoder;
use facegate_shared::{
    gallery_file, keys, verify, Date, Decision, DecisionPolicy, DenialReason, Embedding, Matcher, Threshold,
    DEFAULT_AMBIGUITY_MARGIN,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::*;

/// `facegate verify A B`: 1:1.
pub fn verify_photos(m: &ModelArgs, a: &Path, b: &Path, threshold: Option<f32>, json: bool) -> Result<ExitCode> {
    let p = m.pipeline()?;
    let t = match threshold {
        Some(t) => Threshold::new(t)?,
        None => card_threshold(&p.encoder)?,
    };
    let v = verify(&embed_photo(&p, a)?, &embed_photo(&p, b)?, t)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"distance": v.distance, "similarity": v.similarity, "threshold": t.get(), "same_person": v.accepted})
        );
    } else {
        println!(
            "distance {:.4}  similarity {:.4}  threshold {:.4}  -> {}",
            v.distance,
            v.similarity,
            t.get(),
            if v.accepted { "same person" } else { "different people" }
        );
    }
    Ok(if v.accepted { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A photo to match against a signed gallery.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// The photo (exactly one face).
    pub photo: PathBuf,
    /// Gallery file.
    #[arg(long)]
    pub gallery: PathBuf,
    /// Public key the gallery must be signed with.
    #[arg(long, default_value = DEFAULT_PUBLIC_KEY)]
    pub trust: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn open_matcher(q: &QueryArgs) -> Result<(Matcher, Embedding)> {
    let key = keys::read_verifying_key(&q.trust)?;
    let g =
        gallery_file::load_trusted(&q.gallery, &[key]).with_context(|| format!("gallery {}", q.gallery.display()))?;
    let p = q.model.pipeline_for(Some(&g.encoder))?;
    g.check_encoder(&p.encoder.card().binding()).with_context(|| format!("gallery {}", q.gallery.display()))?;
    let e = embed_photo(&p, &q.photo)?;
    Ok((Matcher::fastest(g)?, e))
}

/// `facegate identify PHOTO`: 1:N.
pub fn identify(q: &QueryArgs) -> Result<ExitCode> {
    let json = q.json;
    let (matcher, e) = open_matcher(q)?;
    let policy = DecisionPolicy::new(matcher.gallery().threshold, DEFAULT_AMBIGUITY_MARGIN)?;
    let d = matcher.identify(&e, &policy, Date::today())?;
    let (granted, text, v) = match &d {
        Decision::Granted { member, distance } => {
            let name = matcher.gallery().member(member).map(|m| m.name.clone()).unwrap_or_default();
            (
                true,
                format!("granted: #{member} {name} (distance {distance:.4})"),
                serde_json::json!({"decision": "granted", "member": member.as_str(), "distance": distance}),
            )
        }
        Decision::Denied(r) => {
            let why = match r {
                DenialReason::Unknown { nearest } => format!(
                    "unknown face (nearest distance {})",
                    nearest.map(|d| format!("{d:.4}")).unwrap_or("-".into())
                ),
                DenialReason::Expired { member, distance } => {
                    format!("membership of #{member} is not valid today (distance {distance:.4})")
                }
                DenialReason::Ambiguous { first, first_distance, second, second_distance } => {
                    format!("ambiguous: #{first} {first_distance:.4} vs #{second} {second_distance:.4}")
                }
            };
            (
                false,
                format!("denied: {why}"),
                serde_json::json!({"decision": "denied", "reason": r.code(), "detail": why}),
            )
        }
    };
    if json {
        println!("{v}");
    } else {
        println!("{text}");
    }
    Ok(if granted { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `facegate rank PHOTO --top K`.
pub fn rank(q: &QueryArgs, top: usize) -> Result<ExitCode> {
    let (matcher, e) = open_matcher(q)?;
    let r = matcher.rank(&e, top)?;
    if q.json {
        let v: Vec<_> =
            r.iter().map(|x| serde_json::json!({"member": x.member.as_str(), "distance": x.distance})).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (i, x) in r.iter().enumerate() {
            let name = matcher.gallery().members()[x.index].name.clone();
            println!("{:>3}. #{:<12} {:<28} {:.4}", i + 1, x.member.as_str(), name, x.distance);
        }
    }
    Ok(if r.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
