//! Enrolment: `facegate enroll`, `facegate quality` and `facegate gallery import-dir`, all
//! through the enrolment quality gate (each photo's own limits, and a member's photos matching
//! each other).

use anyhow::{bail, Context, Result};
use facegate_face::{
    inconsistent_photos, load_image, Encoder, FacePipeline, QualityLimits, QualityReport, TractEncoder, YuNet,
};
use facegate_shared::{keys, Date, Embedding, Gallery, Matcher, Member, MemberId, SigningKey, Threshold, Validity};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::*;

/// One photo's face: its embedding and what the quality gate measured.
pub struct AssessedPhoto {
    /// The photo.
    pub path: PathBuf,
    /// Its embedding.
    pub embedding: Embedding,
    /// Its measurements.
    pub quality: QualityReport,
}

/// Detects the single face of a photo, measures its quality and embeds it; names the photo in
/// any error.
pub fn assess_photo(p: &FacePipeline<YuNet, TractEncoder>, photo: &Path) -> Result<AssessedPhoto> {
    let ctx = || format!("photo {}", photo.display());
    let img = load_image(photo).with_context(ctx)?;
    let found = p.finder.find_one(&img, &p.encoder.card().input).with_context(ctx)?;
    let quality = QualityReport::measure(&img, &found.detection);
    let embedding = p.encoder.encode(&found.aligned).with_context(ctx)?;
    Ok(AssessedPhoto { path: photo.to_owned(), embedding, quality })
}

/// What the gate says about a member's photos: per photo, the problems found (empty: passes).
/// Besides each photo's own limits, a photo that matches none of the member's other photos at
/// `threshold` is flagged as probably another person.
pub fn gate(photos: &[AssessedPhoto], limits: &QualityLimits, threshold: Threshold) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> =
        photos.iter().map(|p| p.quality.problems(limits).into_iter().map(|q| q.message).collect()).collect();
    let embeddings: Vec<Embedding> = photos.iter().map(|p| p.embedding.clone()).collect();
    for i in inconsistent_photos(&embeddings, threshold) {
        let nearest = embeddings
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, e)| e.distance(&embeddings[i]).ok())
            .fold(f32::INFINITY, f32::min);
        out[i].push(format!(
            "does not match the member's other photos (nearest distance {nearest:.3}, threshold {:.3}): probably another person",
            threshold.get()
        ));
    }
    out
}

/// Prints the quality table of a member's photos.
pub fn print_quality_table(photos: &[AssessedPhoto], verdicts: &[Vec<String>]) {
    println!(
        "{:<28} {:>6} {:>7} {:>6} {:>6} {:>5} {:>6} {:>5} {:>5}  verdict",
        "photo", "eyes", "sharp", "light", "contr", "yaw", "pitch", "roll", "score"
    );
    for (p, v) in photos.iter().zip(verdicts) {
        let q = &p.quality;
        let name = p.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        println!(
            "{:<28} {:>4.0}px {:>7.0} {:>6.0} {:>6.0} {:>4.0}° {:>5.0}° {:>4.0}° {:>5.2}  {}",
            name,
            q.eye_distance_px,
            q.sharpness,
            q.brightness,
            q.contrast,
            q.pose.yaw,
            q.pose.pitch,
            q.pose.roll,
            q.score,
            if v.is_empty() { "ok".to_owned() } else { v.join("; ") }
        );
    }
}

/// Flags of `facegate enroll`.
#[derive(Debug, Clone, clap::Args)]
pub struct EnrollArgs {
    /// Gallery file (created if absent).
    #[arg(long)]
    pub gallery: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Member id as on the membership card.
    #[arg(long)]
    pub id: String,
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// First valid day (YYYY-MM-DD).
    #[arg(long)]
    pub valid_from: Option<String>,
    /// Last valid day (YYYY-MM-DD).
    #[arg(long)]
    pub valid_until: Option<String>,
    /// Signing key.
    #[arg(long, default_value = DEFAULT_SECRET_KEY)]
    pub key: PathBuf,
    /// Enrol photos that fail the quality gate anyway (with a warning). Not with a camera: a
    /// capture keeps only frames that pass.
    #[arg(long)]
    pub allow_low_quality: bool,
    /// Photos, each with exactly one face.
    #[arg(required_unless_present_any = ["camera", "source"], conflicts_with_all = ["camera", "source"])]
    pub photos: Vec<PathBuf>,
    /// Capture the photos from a camera at the desk (index, e.g. 0, or part of its name): frames
    /// are taken until --shots of them pass the quality gate, differ in head pose and match each
    /// other. Nothing is written until then. Same as --source camera:CAMERA.
    #[arg(long, value_name = "CAMERA", conflicts_with = "source")]
    pub camera: Option<String>,
    /// Capture from any frame source the door accepts: camera:INDEX, camera:NAME, dir:FOLDER
    /// (its images in name order) or image:FILE.
    #[arg(long, value_name = "URI")]
    pub source: Option<facegate_frames::SourceUri>,
    /// Shots to capture.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=facegate_shared::MAX_EMBEDDINGS_PER_MEMBER as i64))]
    pub shots: u16,
    /// Minimum change of head pose between any two shots, in degrees of yaw and pitch (so the
    /// gallery holds a few views of the face, not one view several times).
    #[arg(long, default_value_t = 6.0)]
    pub min_pose_change: f32,
    /// Give up after this many seconds without enough shots.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Also keep the captured shots as PNG files in this folder (written after the gallery), so
    /// the member can be enrolled again with another encoder without coming back.
    #[arg(long, value_name = "DIR")]
    pub save_shots: Option<PathBuf>,
}

impl EnrollArgs {
    /// The capture source, if enrolling from frames.
    fn source(&self) -> Result<Option<facegate_frames::SourceUri>> {
        Ok(match (&self.camera, &self.source) {
            (Some(c), _) => Some(format!("camera:{c}").parse()?),
            (None, s) => s.clone(),
        })
    }
}

/// The gallery at `path` (signed by `key`) and the pipeline for it (`--model`, else the encoder
/// it was enrolled with), or a new empty gallery bound to `--model` or SFace.
fn open_or_new_gallery(
    path: &Path,
    key: &SigningKey,
    model: &ModelArgs,
) -> Result<(Gallery, FacePipeline<YuNet, TractEncoder>)> {
    if path.exists() {
        let g = load_own_gallery(path, key)?;
        let p = model.pipeline_for(Some(&g.encoder))?;
        g.check_encoder(&p.encoder.card().binding()).with_context(|| format!("gallery {}", path.display()))?;
        Ok((g, p))
    } else {
        let p = model.pipeline()?;
        let card = p.encoder.card();
        let g = Gallery::new(card.binding(), card.embedding_dim, card_threshold(&p.encoder)?);
        Ok((g, p))
    }
}

/// `facegate enroll`: nothing is written unless every photo is usable.
pub fn enroll(a: &EnrollArgs) -> Result<ExitCode> {
    let id = MemberId::new(&a.id)?;
    facegate_shared::check_name(&a.name)?;
    let validity = Validity {
        from: a.valid_from.as_deref().map(Date::parse).transpose()?,
        until: a.valid_until.as_deref().map(Date::parse).transpose()?,
        active: true,
    };
    let key = keys::read_signing_key(&a.key).with_context(|| "no signing key: run `facegate keys init` first")?;
    let (mut gallery, p) = open_or_new_gallery(&a.gallery, &key, &a.model)?;
    // before any photo is looked at or any frame captured
    if gallery.member(&id).is_some() {
        bail!(
            "member #{id} is already in {} (`facegate members --gallery {} remove {id}` first to enrol them again)",
            a.gallery.display(),
            a.gallery.display()
        );
    }
    let mut shots = Vec::new();
    let embeddings = match a.source()? {
        Some(uri) => {
            if a.allow_low_quality {
                bail!("--allow-low-quality is for photos; a capture keeps only frames that pass the quality gate");
            }
            println!("capturing {} shot(s) of #{id} {} from {uri} (Ctrl-C to stop)", a.shots, a.name);
            let mut source = facegate_frames::open(&facegate_frames::SourceSettings::new(uri))?;
            let picker = super::capture::ShotPicker {
                need: a.shots.into(),
                min_pose_change: a.min_pose_change,
                limits: QualityLimits::ENROLMENT,
            };
            let timeout = std::time::Duration::from_secs(a.timeout);
            let c = super::capture::capture(&p, &mut source, &picker, gallery.threshold, timeout)?;
            println!("captured {} shot(s) from {} frame(s)", c.shots.len(), c.frames);
            shots = c.shots;
            shots.iter().map(|s| s.embedding.clone()).collect()
        }
        None if a.save_shots.is_some() => {
            bail!("--save-shots is for --camera/--source captures; the photos are already files")
        }
        None => photo_embeddings(a, &p, gallery.threshold)?,
    };
    if !gallery.members().is_empty() {
        let m = Matcher::fastest(gallery.clone())?;
        for e in &embeddings {
            if let Some(r) = m.rank(e, 1)?.first().filter(|r| gallery.threshold.accepts(r.distance) && r.member != id) {
                eprintln!("warning: this face may already be enrolled as #{} (distance {:.3})", r.member, r.distance);
            }
        }
    }
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let n = embeddings.len();
    gallery.add(Member { id: id.clone(), name: a.name.clone(), validity, enrolled_at: now, embeddings })?;
    save_gallery(&a.gallery, &mut gallery, &key)?;
    if let Some(dir) = &a.save_shots {
        save_shots(dir, &id, &shots)?;
    }
    println!(
        "enrolled #{id} {} from {n} photo(s); gallery {} has {} members (revision {})",
        a.name,
        a.gallery.display(),
        gallery.members().len(),
        gallery.revision
    );
    Ok(ExitCode::SUCCESS)
}

/// The embeddings of `a.photos` after the quality gate (or despite it, with
/// `--allow-low-quality`).
fn photo_embeddings(
    a: &EnrollArgs,
    p: &FacePipeline<YuNet, TractEncoder>,
    threshold: Threshold,
) -> Result<Vec<Embedding>> {
    let assessed = a.photos.iter().map(|ph| assess_photo(p, ph)).collect::<Result<Vec<_>>>()?;
    let verdicts = gate(&assessed, &QualityLimits::ENROLMENT, threshold);
    print_quality_table(&assessed, &verdicts);
    let failing: Vec<String> = assessed
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| !v.is_empty())
        .map(|(ph, v)| format!("photo {}: {}", ph.path.display(), v.join("; ")))
        .collect();
    if !failing.is_empty() {
        if !a.allow_low_quality {
            bail!(
                "{} of {} photo(s) failed the quality gate, nothing was written:\n  {}\n(use better photos, or --allow-low-quality to enrol them anyway)",
                failing.len(),
                assessed.len(),
                failing.join("\n  ")
            );
        }
        for f in &failing {
            eprintln!("warning: enrolled despite the quality gate (--allow-low-quality): {f}");
        }
    }
    Ok(assessed.into_iter().map(|ph| ph.embedding).collect())
}

/// Writes each shot as DIR/<member id>-<n>.png (atomically), after the gallery is saved.
fn save_shots(dir: &Path, id: &MemberId, shots: &[super::capture::Shot]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("folder {}", dir.display()))?;
    for (i, s) in shots.iter().enumerate() {
        let path = dir.join(format!("{id}-{}.png", i + 1));
        let mut png = Vec::new();
        s.image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .with_context(|| format!("encoding shot {}", s.label))?;
        facegate_shared::gallery_file::write_atomic(&path, &png).with_context(|| format!("shot {}", path.display()))?;
    }
    println!("saved {} shot(s) in {}", shots.len(), dir.display());
    Ok(())
}

/// `facegate quality PHOTOS`: the enrolment gate's table (or JSON lines) for photos; a photo
/// without a single face is listed with its error.
pub fn quality(m: &ModelArgs, photos: &[PathBuf], json: bool) -> Result<ExitCode> {
    let p = m.pipeline()?;
    let threshold = card_threshold(&p.encoder)?;
    let (mut assessed, mut unusable) = (Vec::new(), Vec::new());
    for ph in photos {
        match assess_photo(&p, ph) {
            Ok(a) => assessed.push(a),
            Err(e) => unusable.push(facegate_shared::error_chain(&*e)),
        }
    }
    let verdicts = gate(&assessed, &QualityLimits::ENROLMENT, threshold);
    if json {
        for (a, v) in assessed.iter().zip(&verdicts) {
            let q = &a.quality;
            println!(
                "{}",
                serde_json::json!({
                    "photo": a.path.display().to_string(), "eye_distance_px": q.eye_distance_px,
                    "sharpness": q.sharpness, "brightness": q.brightness, "contrast": q.contrast,
                    "yaw": q.pose.yaw, "pitch": q.pose.pitch, "roll": q.pose.roll, "score": q.score,
                    "problems": v,
                })
            );
        }
        for u in &unusable {
            println!("{}", serde_json::json!({"unusable": u}));
        }
    } else {
        print_quality_table(&assessed, &verdicts);
        for u in &unusable {
            println!("unusable: {u}");
        }
    }
    let pass = unusable.is_empty() && verdicts.iter().all(Vec::is_empty);
    Ok(if pass { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `facegate gallery import-dir` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// Folder with one sub-folder per member; the sub-folder name is the member id and name.
    pub dir: PathBuf,
    /// Gallery file (created if absent).
    #[arg(long)]
    pub gallery: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Signing key.
    #[arg(long, default_value = DEFAULT_SECRET_KEY)]
    pub key: PathBuf,
    /// Worker threads (each loads its own detector and encoder). Default: all cores.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Import photos that fail the quality gate anyway (with a warning).
    #[arg(long)]
    pub allow_low_quality: bool,
}

/// One member folder's outcome.
struct Imported {
    id: String,
    embeddings: Vec<Embedding>,
    bad: Vec<String>,
}

/// `facegate gallery import-dir`: bulk enrolment. Bad photos are skipped and listed; a member
/// with no usable photo, an invalid id, or an id already in the gallery is skipped and listed.
/// The gallery is written once, at the end.
pub fn import_dir(a: &ImportArgs) -> Result<ExitCode> {
    let key = keys::read_signing_key(&a.key).with_context(|| "no signing key: run `facegate keys init` first")?;
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&a.dir)
        .with_context(|| format!("folder {}", a.dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    if folders.is_empty() {
        bail!("{} has no member folders (expected DIR/<member id>/<photos>)", a.dir.display());
    }
    let (mut gallery, first) = open_or_new_gallery(&a.gallery, &key, &a.model)?;
    let model = ModelArgs { model: Some(a.model.resolve(Some(&gallery.encoder))?), detector: a.model.detector.clone() };
    let (threshold, allow) = (gallery.threshold, a.allow_low_quality);
    let jobs = a.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let bar = crate::progress::bar(folders.len() as u64, "enrolling");
    let queue = std::sync::Mutex::new(folders.into_iter());
    let results = std::sync::Mutex::new(Vec::new());
    let mut first = Some(first);
    std::thread::scope(|s| -> Result<()> {
        let mut handles = Vec::new();
        for _ in 0..jobs {
            let p = match first.take() {
                Some(p) => p,
                None => model.pipeline()?,
            };
            let (queue, results, bar) = (&queue, &results, &bar);
            handles.push(s.spawn(move || loop {
                let Some(folder) = queue.lock().expect("queue").next() else { break };
                let r = import_one(&p, &folder, threshold, allow);
                results.lock().expect("results").push(r);
                bar.inc(1);
            }));
        }
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("an import worker panicked"))?;
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let mut results = results.into_inner().expect("results");
    results.sort_by(|x, y| x.id.cmp(&y.id));
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (mut added, mut skipped, mut skipped_photos) = (0, Vec::new(), 0);
    for r in results {
        for b in &r.bad {
            println!("skipped photo {b}");
            skipped_photos += 1;
        }
        let id = match MemberId::new(&r.id) {
            Ok(id) => id,
            Err(e) => {
                skipped.push(format!("{}: {e}", r.id));
                continue;
            }
        };
        if r.embeddings.is_empty() {
            skipped.push(format!("{}: no usable photo", r.id));
            continue;
        }
        let n = r.embeddings.len().min(facegate_shared::MAX_EMBEDDINGS_PER_MEMBER);
        let embeddings = r.embeddings.into_iter().take(n).collect();
        match gallery.add(Member { id, name: r.id.clone(), validity: Validity::OPEN, enrolled_at: now, embeddings }) {
            Ok(()) => added += 1,
            Err(e) => skipped.push(format!("{}: {e}", r.id)),
        }
    }
    for s in &skipped {
        println!("skipped member {s}");
    }
    if added > 0 {
        save_gallery(&a.gallery, &mut gallery, &key)?;
    }
    println!(
        "imported {added} member(s), skipped {} member(s) and {skipped_photos} photo(s); gallery {} has {} members (revision {})",
        skipped.len(),
        a.gallery.display(),
        gallery.members().len(),
        gallery.revision
    );
    Ok(if skipped.is_empty() && skipped_photos == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// One member folder: photos that cannot be read or have no single face, and (unless `allow`)
/// photos failing the quality gate, are skipped with the reason.
fn import_one(p: &FacePipeline<YuNet, TractEncoder>, folder: &Path, threshold: Threshold, allow: bool) -> Imported {
    let id = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut photos: Vec<PathBuf> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    photos.sort();
    let (mut assessed, mut bad) = (Vec::new(), Vec::new());
    for ph in photos {
        match assess_photo(p, &ph) {
            Ok(a) => assessed.push(a),
            Err(e) => bad.push(facegate_shared::error_chain(&*e)),
        }
    }
    let verdicts = gate(&assessed, &QualityLimits::ENROLMENT, threshold);
    let mut embeddings = Vec::new();
    for (a, v) in assessed.into_iter().zip(verdicts) {
        if v.is_empty() {
            embeddings.push(a.embedding);
        } else if allow {
            eprintln!("warning: imported despite the quality gate: {}: {}", a.path.display(), v.join("; "));
            embeddings.push(a.embedding);
        } else {
            bad.push(format!("{}: quality gate: {}", a.path.display(), v.join("; ")));
        }
    }
    Imported { id, embeddings, bad }
}
