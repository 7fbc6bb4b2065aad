//! The `facegate` commands, one module per command group. This module holds what they share:
//! default paths, the choice of encoder (`--model`, else the one a gallery was enrolled with, else
//! SFace), keys, and reading and writing signed galleries.

pub mod bench;
pub mod capture;
pub mod db;
pub mod enrol;
pub mod eval;
pub mod gallery;
pub mod members;
pub mod pad;
pub mod pad_video;
pub mod query;
pub mod serve;

use anyhow::{Context, Result};
use facegate_face::{card_path_for, load_image, Encoder, FacePipeline, TractEncoder, YuNet};
use facegate_shared::{gallery_file, keys, Embedding, EncoderBinding, Gallery, ModelCard, SigningKey, Threshold};
use std::path::{Path, PathBuf};

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

/// Where a model path under `models/` that the current folder does not have is looked for, in
/// order: the Facegate folder this binary was built in (`<folder>/target/<profile>/facegate`),
/// and where a door package puts SFace and YuNet.
fn model_homes() -> Vec<PathBuf> {
    let mut homes = Vec::new();
    // `<folder>/target/<profile>/facegate` only: not the folder above any installed binary
    let target = std::env::current_exe().ok().and_then(|e| Some(e.parent()?.parent()?.to_owned()));
    if let Some(folder) =
        target.filter(|t| t.file_name().is_some_and(|n| n == "target")).and_then(|t| Some(t.parent()?.to_owned()))
    {
        homes.push(folder.join(MODELS_DIR));
    }
    homes.push(PathBuf::from("/usr/share/facegate"));
    homes
}

/// `path` as given when it exists or is not under `models/`; else the same file in the first of
/// [`model_homes`] that has it; else `path` (whose error then names it). So the defaults work
/// from any folder, not only the Facegate folder.
pub fn locate(path: &Path) -> PathBuf {
    let Ok(rest) = path.strip_prefix(MODELS_DIR) else { return path.to_owned() };
    if path.exists() {
        return path.to_owned();
    }
    model_homes().into_iter().map(|h| h.join(rest)).find(|p| p.exists()).unwrap_or_else(|| path.to_owned())
}

/// The folder of encoders (with their cards): `models/` here, else [`locate`]'s.
pub fn models_dir() -> PathBuf {
    locate(Path::new(MODELS_DIR))
}

/// Loads the YuNet detector at `path` ([`locate`]d).
pub fn load_detector(path: &Path) -> Result<YuNet> {
    let path = locate(path);
    YuNet::load(&path).with_context(|| format!("detector {}", not_found_hint(&path)))
}

/// `path`, and where else it was looked for when it is a missing `models/` file.
fn not_found_hint(path: &Path) -> String {
    if path.exists() || path.strip_prefix(MODELS_DIR).is_err() {
        return path.display().to_string();
    }
    let homes: Vec<String> = model_homes().iter().map(|h| h.display().to_string()).collect();
    format!(
        "{} (not in this folder, nor in {}; run from the Facegate folder or give the path)",
        path.display(),
        homes.join(" or ")
    )
}

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
            return Ok(locate(m));
        }
        match gallery {
            None => Ok(locate(Path::new(DEFAULT_MODEL))),
            Some(b) => find_model(&models_dir(), b).with_context(|| {
                format!(
                    "the gallery was enrolled with encoder {} (not found in {}); pass --model",
                    b.onnx.short(),
                    models_dir().display()
                )
            }),
        }
    }

    /// Loads the one pipeline the door unit also uses, with the encoder [`ModelArgs::resolve`] picks.
    pub fn pipeline_for(&self, gallery: Option<&EncoderBinding>) -> Result<FacePipeline<YuNet, TractEncoder>> {
        let model = self.resolve(gallery)?;
        let enc = TractEncoder::load(&model).with_context(|| format!("encoder {}", not_found_hint(&model)))?;
        Ok(FacePipeline::new(load_detector(&self.detector)?, enc))
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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating folder {}", dir.display()))?;
    }
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
