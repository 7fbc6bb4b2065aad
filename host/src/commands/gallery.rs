//! `facegate gallery inspect | verify | calibrate`: a gallery file's header and encoder, what a
//! door unit would accept, and the threshold measured on the gym's own members.

use anyhow::{bail, Context, Result};
use facegate_shared::{gallery_file, keys, Threshold};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::*;

/// `facegate gallery inspect`: header, encoder binding, counts, signer (no key needed, so the
/// payload is parsed whoever signed it; `signed_by` says who did).
pub fn inspect(gallery: &Path, json: bool) -> Result<ExitCode> {
    let t = std::time::Instant::now();
    let bytes = gallery_file::read_capped(gallery).with_context(|| format!("gallery {}", gallery.display()))?;
    let s = gallery_file::decode(&bytes).with_context(|| format!("gallery {}", gallery.display()))?;
    let g = &s.gallery;
    let p = &g.encoder.preprocessing;
    let v = serde_json::json!({
        "file": gallery.display().to_string(),
        "bytes": bytes.len(),
        "members": g.members().len(),
        "embeddings": g.embedding_count(),
        "dim": g.dim.get(),
        "threshold": g.threshold.get(),
        "revision": g.revision,
        "encoder": g.encoder.onnx.to_string(),
        "encoder_name": model_cards(&models_dir())
            .into_iter()
            .find(|(_, c)| c.binding() == g.encoder)
            .map(|(path, c)| format!("{} ({})", c.name, path.display()))
            .unwrap_or_else(|| format!("not among the encoders in {}", models_dir().display())),
        "preprocessing": {
            "width": p.width,
            "height": p.height,
            "channels": p.channels,
            "mean": p.mean,
            "std": p.std,
            "alignment": p.alignment,
            "extra_inputs": p.extra_inputs,
        },
        "signed_by": s.signer.map(|k| hex::encode(k.as_bytes())),
        "read_ms": t.elapsed().as_secs_f64() * 1e3,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (k, val) in v.as_object().expect("object") {
            println!("{k:<12} {val}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Flags of `facegate gallery calibrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateGalleryArgs {
    /// Gallery file signed by --key.
    pub gallery: PathBuf,
    /// Target per-comparison false-accept rate.
    #[arg(long, default_value_t = 1e-3)]
    pub far: f64,
    /// Signing key (the gallery is re-signed when --write is given).
    #[arg(long, default_value = DEFAULT_SECRET_KEY)]
    pub key: PathBuf,
    /// Store the new threshold in the gallery (revision + 1, re-signed); without it, only report.
    #[arg(long)]
    pub write: bool,
}

/// `facegate gallery calibrate`: the threshold measured on the gym's own members. Impostor pairs
/// are enrolment embeddings of different members; genuine pairs are enrolment embeddings of the
/// same member (members enrolled from one photo contribute impostor pairs only).
pub fn calibrate_gallery(a: &CalibrateGalleryArgs) -> Result<ExitCode> {
    if !(a.far > 0.0 && a.far < 1.0) {
        bail!("--far {} must be in (0, 1)", a.far);
    }
    let key = keys::read_signing_key(&a.key).with_context(|| "no signing key: run `facegate keys init` first")?;
    let mut g = load_own_gallery(&a.gallery, &key)?;
    let members = g.members();
    if members.len() < 2 {
        bail!("{} has {} member(s): calibration needs at least 2 (impostor pairs)", a.gallery.display(), members.len());
    }
    if members.iter().all(|m| m.embeddings.len() < 2) {
        bail!("no member of {} has two enrolment photos: nothing to measure acceptance on", a.gallery.display());
    }
    let labelled: Vec<(usize, facegate_shared::Embedding)> =
        members.iter().enumerate().flat_map(|(i, m)| m.embeddings.iter().map(move |e| (i, e.clone()))).collect();
    let scores = facegate_shared::Scores::from_labelled(&labelled)?;
    let t = scores.threshold_for_far_conservative(a.far)?;
    let old = g.threshold.get();
    let n = members.len();
    // chance that a stranger is within the threshold of at least one member (one comparison per member)
    let open_set = |far: f64| facegate_shared::open_set_false_accept(far, n as u64);
    println!("members    {n} ({} genuine pairs, {} impostor pairs)", scores.genuine().len(), scores.impostor().len());
    println!(
        "current    {old:.4}: FAR {:.5}, TAR {:.2}%, a stranger matches someone with probability {:.2}%",
        scores.far(old),
        scores.tar(old) * 100.0,
        open_set(scores.far(old)) * 100.0
    );
    println!(
        "measured   {t:.4} for FAR <= {}: FAR {:.5}, TAR {:.2}%, a stranger matches someone with probability {:.2}%",
        a.far,
        scores.far(t),
        scores.tar(t) * 100.0,
        open_set(scores.far(t)) * 100.0
    );
    let pairs = scores.impostor().len();
    if (pairs as f64) < 1.0 / a.far {
        println!(
            "note       {pairs} impostor pairs cannot show a FAR of {} (fewer than 1/FAR): the measured threshold comes from a normal fit of the impostor distances, and the FARs above are lower bounds",
            a.far
        );
    }
    if a.write {
        g.threshold = Threshold::new(t)?;
        save_gallery(&a.gallery, &mut g, &key)?;
        println!(
            "written    {} revision {} (door units pick it up at their next reload)",
            a.gallery.display(),
            g.revision
        );
    } else {
        println!("not written: add --write to store {t:.4} in the gallery");
    }
    Ok(ExitCode::SUCCESS)
}

/// `facegate gallery verify`: would a door unit trusting `trust` accept this gallery with `model`?
pub fn gallery_verify(gallery: &Path, trust: &Path, model: Option<&Path>, json: bool) -> Result<ExitCode> {
    let key = keys::read_verifying_key(trust)?;
    let found;
    let model = match model {
        Some(m) => Some(m),
        None => {
            // Without --model: the encoder in models/ the gallery was enrolled with, if any.
            found =
                gallery_file::load_trusted(gallery, &[key]).ok().and_then(|g| find_model(&models_dir(), &g.encoder));
            found.as_deref()
        }
    };
    let checked = gallery_file::load_trusted(gallery, &[key]).and_then(|g| match model {
        Some(m) => {
            let card = facegate_shared::ModelCard::load(&facegate_face::card_path_for(m))
                .map_err(|e| facegate_shared::GalleryError::Malformed(format!("model card of {}: {e}", m.display())))?;
            g.check_encoder(&card.binding()).map(|()| g)
        }
        None => Ok(g),
    });
    let (ok, detail) = match &checked {
        Ok(g) => (
            true,
            format!(
                "valid: revision {}, {} members, signed by the trusted key, {}",
                g.revision,
                g.members().len(),
                match model {
                    Some(m) => format!("enrolled with {}", m.display()),
                    None => "encoder not checked (not found in models/; pass --model)".to_owned(),
                }
            ),
        ),
        Err(e) => (false, format!("INVALID: {e}")),
    };
    if json {
        println!("{}", serde_json::json!({"gallery": gallery.display().to_string(), "valid": ok, "detail": detail}));
    } else {
        println!("{}: {detail}", gallery.display());
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// File names `facegate gallery publish` writes into its folder.
pub const PUBLISHED_GALLERY: &str = "gallery.fgg";
/// The manifest beside it.
pub const PUBLISHED_MANIFEST: &str = "gallery.json";

/// Flags of `facegate gallery publish`.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// Signed gallery to publish.
    pub gallery: PathBuf,
    /// Folder a static web server serves (nginx, caddy, `python3 -m http.server`, a bucket).
    pub dir: PathBuf,
    /// Public key the door units trust: a gallery it does not verify is not published.
    #[arg(long, default_value = DEFAULT_PUBLIC_KEY)]
    pub trust: PathBuf,
}

/// `facegate gallery publish G DIR`: checks the signature by the trusted key, refuses a revision
/// older than (or equal to but different from) the one already published, then writes
/// `DIR/gallery.fgg` and `DIR/gallery.json` (revision, members, encoder fingerprint, SHA-256,
/// size, signer), each atomically, the gallery first. The manifest is for people and monitoring;
/// door units trust only the signed file.
pub fn publish(a: &PublishArgs) -> Result<ExitCode> {
    use sha2::{Digest, Sha256};
    let key = keys::read_verifying_key(&a.trust)?;
    let bytes = gallery_file::read_capped(&a.gallery).with_context(|| format!("gallery {}", a.gallery.display()))?;
    let g = gallery_file::decode_trusted(&bytes, &[key])
        .with_context(|| format!("gallery {} (not published)", a.gallery.display()))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    std::fs::create_dir_all(&a.dir).with_context(|| format!("folder {}", a.dir.display()))?;
    let target = a.dir.join(PUBLISHED_GALLERY);
    if target.exists() {
        let old = gallery_file::read_capped(&target).with_context(|| format!("published {}", target.display()))?;
        let prev = gallery_file::decode_trusted(&old, &[key]).with_context(|| {
            format!(
                "{} is not a gallery signed by the trusted key {}, so its revision cannot be compared: \
                 not published (after a change of keys, delete the old file first)",
                target.display(),
                a.trust.display()
            )
        })?;
        {
            if prev.revision > g.revision {
                bail!(
                    "{} holds revision {}, newer than {} (revision {}): door units would refuse it; not published",
                    target.display(),
                    prev.revision,
                    a.gallery.display(),
                    g.revision
                );
            }
            if prev.revision == g.revision && old != bytes {
                bail!(
                    "{} holds another gallery with the same revision {}: door units would refuse it; \
                     make a new revision (any change to the members does) and publish that",
                    target.display(),
                    g.revision
                );
            }
        }
    }
    let manifest = serde_json::json!({
        "format": 1,
        "file": PUBLISHED_GALLERY,
        "revision": g.revision,
        "members": g.members().len(),
        "embeddings": g.embedding_count(),
        "encoder_fingerprint": g.encoder.onnx.to_string(),
        "threshold": g.threshold.get(),
        "sha256": sha,
        "bytes": bytes.len(),
        "signed_by": hex::encode(key.as_bytes()),
        "published_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    });
    gallery_file::write_atomic(&target, &bytes).with_context(|| format!("writing {}", target.display()))?;
    let mpath = a.dir.join(PUBLISHED_MANIFEST);
    gallery_file::write_atomic(&mpath, (serde_json::to_string_pretty(&manifest)? + "\n").as_bytes())
        .with_context(|| format!("writing {}", mpath.display()))?;
    println!(
        "published revision {} ({} members, {} bytes, sha256 {}) to {}",
        g.revision,
        g.members().len(),
        bytes.len(),
        &manifest["sha256"].as_str().unwrap_or("")[..16],
        a.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
