//! Front-desk commands: keys, enrolment, members, gallery inspection, and the four matching uses
//! (verify 1:1, identify 1:N, rank top-k, search benchmarks). Every gallery written is signed.

use anyhow::{bail, Context, Result};
use facegate_face::{
    card_path_for, inconsistent_photos, load_image, Encoder, FacePipeline, QualityLimits, QualityReport, TractEncoder,
    YuNet,
};
use facegate_shared::synthetic::{random_matrix, random_unit, SplitMix64};
use facegate_shared::{
    gallery_file, keys, verify, Date, Decision, DecisionPolicy, DenialReason, Embedding, EmbeddingDim, EncoderBinding,
    Gallery, IndexKind, Matcher, Member, MemberId, ModelCard, SigningKey, Threshold, Validity,
    DEFAULT_AMBIGUITY_MARGIN,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Default key locations.
pub const DEFAULT_SECRET_KEY: &str = "keys/facegate.secret";
pub const DEFAULT_PUBLIC_KEY: &str = "keys/facegate.pub";
/// The default encoder: SFace, pretrained on real colour photos of real people (CASIA-WebFace),
/// with a threshold calibrated on data it never saw. The ORL-trained encoder
/// (`models/facegate-default.onnx`) is what `make demo` trains; it is chosen with `--model`.
pub const DEFAULT_MODEL: &str = "models/face_recognition_sface_2021dec.onnx";
/// Where encoders (with their cards) are looked for when a gallery names one by its binding.
pub const MODELS_DIR: &str = "models";
/// Default detector.
pub const DEFAULT_DETECTOR: &str = "models/face_detection_yunet_2023mar.onnx";

/// Model and detector flags shared by commands that look at photos.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Encoder ONNX with its `.card.json` beside it. Default: for an existing gallery, the
    /// encoder it was enrolled with (found in models/ by its fingerprint and card); otherwise
    /// SFace (models/face_recognition_sface_2021dec.onnx), the pretrained encoder that works on
    /// real colour photos. The ORL-trained models/facegate-default.onnx is chosen explicitly.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// YuNet detector model.
    #[arg(long, default_value = DEFAULT_DETECTOR)]
    pub detector: PathBuf,
}

impl ModelArgs {
    /// The encoder to use: `--model`, else the one `gallery` was enrolled with, else SFace.
    pub fn resolve(&self, gallery: Option<&EncoderBinding>) -> Result<PathBuf> {
        if let Some(m) = &self.model {
            return Ok(m.clone());
        }
        match gallery {
            None => Ok(PathBuf::from(DEFAULT_MODEL)),
            Some(b) => find_model(Path::new(MODELS_DIR), b).with_context(|| {
                format!(
                    "the gallery was enrolled with encoder {} (not found in {MODELS_DIR}/); pass --model",
                    b.onnx.short()
                )
            }),
        }
    }

    /// Loads the one pipeline the door unit also uses, with the encoder [`ModelArgs::resolve`] picks.
    pub fn pipeline_for(&self, gallery: Option<&EncoderBinding>) -> Result<FacePipeline<YuNet, TractEncoder>> {
        let model = self.resolve(gallery)?;
        let enc = TractEncoder::load(&model).with_context(|| format!("encoder {}", model.display()))?;
        Ok(FacePipeline::new(YuNet::load(&self.detector)?, enc))
    }

    /// The pipeline for photos not tied to a gallery (`--model` or SFace).
    pub fn pipeline(&self) -> Result<FacePipeline<YuNet, TractEncoder>> {
        self.pipeline_for(None)
    }
}

/// The encoder in `dir` whose card gives exactly `binding` (ONNX fingerprint and preprocessing).
pub fn find_model(dir: &Path, binding: &EncoderBinding) -> Option<PathBuf> {
    model_cards(dir).into_iter().find(|(_, c)| &c.binding() == binding).map(|(p, _)| p)
}

/// The encoders with a readable card in `dir`: (ONNX path, card), sorted by path.
fn model_cards(dir: &Path) -> Vec<(PathBuf, ModelCard)> {
    let mut out: Vec<(PathBuf, ModelCard)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .filter_map(|p| ModelCard::load(&card_path_for(&p)).ok().map(|c| (p, c)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

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

/// Embeds the single face of a photo, naming the photo in any error.
pub fn embed_photo(p: &FacePipeline<YuNet, TractEncoder>, photo: &Path) -> Result<Embedding> {
    let img = load_image(photo).with_context(|| format!("photo {}", photo.display()))?;
    Ok(p.embed_one(&img).with_context(|| format!("photo {}", photo.display()))?.embedding)
}

/// The threshold in the model card, or an error saying how to get one.
pub fn card_threshold(enc: &TractEncoder) -> Result<Threshold> {
    enc.card().threshold.as_ref().map(|t| t.distance).with_context(|| {
        format!("model {} has no calibrated threshold; run `facegate calibrate` or pass --threshold", enc.card().name)
    })
}

/// Reads a gallery the host itself signed (or refuses one signed by another key before parsing it).
pub fn load_own_gallery(path: &Path, key: &SigningKey) -> Result<Gallery> {
    gallery_file::load_trusted(path, &[key.verifying_key()]).with_context(|| format!("gallery {}", path.display()))
}

/// Saves with the revision counter raised and the host's signature.
pub fn save_gallery(path: &Path, g: &mut Gallery, key: &SigningKey) -> Result<()> {
    g.revision += 1;
    gallery_file::save(path, g, Some(key)).with_context(|| format!("writing gallery {}", path.display()))
}

/// `facegate keys init`.
pub fn keys_init(secret: &Path, public: &Path) -> Result<()> {
    if let Some(d) = secret.parent() {
        std::fs::create_dir_all(d)?;
    }
    if let Some(d) = public.parent() {
        std::fs::create_dir_all(d)?;
    }
    let key = keys::generate_signing_key()?;
    keys::write_key_pair(&key, secret, public)?;
    println!(
        "signing key {} (owner-only), public key {} (copy it to the door units)",
        secret.display(),
        public.display()
    );
    Ok(())
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
    /// Enrol photos that fail the quality gate anyway (with a warning).
    #[arg(long)]
    pub allow_low_quality: bool,
    /// Photos, each with exactly one face.
    #[arg(required = true)]
    pub photos: Vec<PathBuf>,
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
    let assessed = a.photos.iter().map(|ph| assess_photo(&p, ph)).collect::<Result<Vec<_>>>()?;
    let verdicts = gate(&assessed, &QualityLimits::ENROLMENT, gallery.threshold);
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
    let embeddings: Vec<Embedding> = assessed.into_iter().map(|ph| ph.embedding).collect();
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
    println!(
        "enrolled #{id} {} from {n} photo(s); gallery {} has {} members (revision {})",
        a.name,
        a.gallery.display(),
        gallery.members().len(),
        gallery.revision
    );
    Ok(ExitCode::SUCCESS)
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
            Err(e) => unusable.push(format!("{e:#}")),
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

/// `facegate members ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MembersCmd {
    /// List members.
    List,
    /// Show one member.
    Show { id: String },
    /// Remove a member and delete their embeddings from the file.
    Remove { id: String },
    /// Change a member's last valid day.
    Renew {
        id: String,
        #[arg(long)]
        valid_until: String,
    },
    /// Change a member's display name.
    Rename { id: String, name: String },
}

/// Runs a members command.
pub fn members(gallery: &Path, key: &Path, cmd: &MembersCmd, json: bool) -> Result<ExitCode> {
    let key = keys::read_signing_key(key)?;
    let mut g = load_own_gallery(gallery, &key)?;
    let show = |m: &Member| {
        format!(
            "{:<12} {:<28} {:>2} photo(s)  valid {} .. {}{}",
            m.id.as_str(),
            m.name,
            m.embeddings.len(),
            m.validity.from.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            m.validity.until.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            if m.validity.active { "" } else { "  (suspended)" }
        )
    };
    match cmd {
        MembersCmd::List => {
            if json {
                let v: Vec<_> = g.members().iter().map(|m| serde_json::json!({"id": m.id.as_str(), "name": m.name, "photos": m.embeddings.len(), "valid_from": m.validity.from.map(|d| d.to_string()), "valid_until": m.validity.until.map(|d| d.to_string()), "active": m.validity.active})).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for m in g.members() {
                    println!("{}", show(m));
                }
            }
        }
        MembersCmd::Show { id } => {
            let m = g.member(&MemberId::new(id)?).with_context(|| format!("no member #{id}"))?;
            println!("{}", show(m));
        }
        MembersCmd::Remove { id } => {
            let m = g.remove(&MemberId::new(id)?)?;
            save_gallery(gallery, &mut g, &key)?;
            println!("removed #{} {} and their {} embedding(s)", m.id, m.name, m.embeddings.len());
        }
        MembersCmd::Renew { id, valid_until } => {
            let d = Date::parse(valid_until)?;
            g.member_mut(&MemberId::new(id)?)?.validity.until = Some(d);
            save_gallery(gallery, &mut g, &key)?;
            println!("#{id} valid until {d}");
        }
        MembersCmd::Rename { id, name } => {
            facegate_shared::check_name(name)?;
            g.member_mut(&MemberId::new(id)?)?.name = name.clone();
            save_gallery(gallery, &mut g, &key)?;
            println!("#{id} is now {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

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
        "encoder_name": model_cards(Path::new(MODELS_DIR))
            .into_iter()
            .find(|(_, c)| c.binding() == g.encoder)
            .map(|(path, c)| format!("{} ({})", c.name, path.display()))
            .unwrap_or_else(|| format!("not among the encoders in {MODELS_DIR}/")),
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
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for (i, m) in members.iter().enumerate() {
        for (j, e) in m.embeddings.iter().enumerate() {
            for f in &m.embeddings[j + 1..] {
                genuine.push(e.distance(f)?);
            }
            for other in &members[i + 1..] {
                for f in &other.embeddings {
                    impostor.push(e.distance(f)?);
                }
            }
        }
    }
    if genuine.is_empty() {
        bail!("no member of {} has two enrolment photos: nothing to measure acceptance on", a.gallery.display());
    }
    let scores = facegate_shared::Scores::new(genuine, impostor)?;
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

/// `facegate bench search`: build time, per-query latency and memory on synthetic unit vectors.
pub fn bench_search(members: usize, queries: usize, dim: usize, index: &str, k: usize) -> Result<ExitCode> {
    let kind = IndexKind::from_name(index).with_context(|| {
        format!("unknown index {index}; use brute, flat, sq8, linfa-linear, linfa-kdtree or linfa-balltree")
    })?;
    if members == 0 || queries == 0 {
        bail!("--members and --queries must be positive");
    }
    let d = EmbeddingDim::new(dim)?;
    let rows = random_matrix(42, members, d);
    let matrix_bytes = rows.heap_bytes();
    let rss0 = rss_kib();
    let t = std::time::Instant::now();
    let idx = kind.build(rows)?;
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss1 = rss_kib();
    let mut rng = SplitMix64::new(7);
    let qs: Vec<Embedding> = (0..queries).map(|_| random_unit(&mut rng, d)).collect();
    let mut lat = Vec::with_capacity(queries);
    for q in &qs {
        let t = std::time::Instant::now();
        std::hint::black_box(idx.search(q, k)?);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "index": kind.name(), "members": members, "dim": dim, "queries": queries, "k": k,
            "build_ms": build_ms, "query_median_ms": pct(0.5), "query_p99_ms": pct(0.99),
            "input_matrix_bytes": matrix_bytes,
            "index_rss_growth_kib": rss1.zip(rss0).map(|(a, b)| a.saturating_sub(b)),
            "peak_rss_kib": peak_rss_kib(),
            "threads": 1,
        }))?
    );
    Ok(ExitCode::SUCCESS)
}

fn status_field(name: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
}
fn rss_kib() -> Option<u64> {
    status_field("VmRSS:")
}
fn peak_rss_kib() -> Option<u64> {
    status_field("VmHWM:")
}

/// `facegate gallery verify`: would a door unit trusting `trust` accept this gallery with `model`?
pub fn gallery_verify(gallery: &Path, trust: &Path, model: Option<&Path>, json: bool) -> Result<ExitCode> {
    let key = keys::read_verifying_key(trust)?;
    let found;
    let model = match model {
        Some(m) => Some(m),
        None => {
            // Without --model: the encoder in models/ the gallery was enrolled with, if any.
            found = gallery_file::load_trusted(gallery, &[key])
                .ok()
                .and_then(|g| find_model(Path::new(MODELS_DIR), &g.encoder));
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
            Err(e) => bad.push(format!("{e:#}")),
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
