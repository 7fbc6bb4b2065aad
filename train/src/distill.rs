//! Distillation from a pretrained teacher (`--teacher`): the teacher (an ONNX encoder imported
//! through the bridge, frozen, in evaluation mode) embeds the training people's aligned faces once;
//! the embeddings are cached per image and teacher; during training the student's pairwise cosine
//! similarities within each batch are pulled towards the teacher's on the same images
//! (relational distillation: the student keeps its own embedding space and size, only the
//! structure of who is close to whom is taught).
//!
//! Only training people's images are ever given to the teacher: the caller passes the training
//! split's entries, never validation or test ones.

use anyhow::{bail, Context, Result};
use facegate_face::{preprocess, FaceFinder, YuNet};
use facegate_hostkit::data::{aligned_crops, ImageEntry};
use facegate_shared::gallery_file::write_atomic;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

use crate::model::ArchConfig;
use crate::net::{ImportedBase, Net};

/// Version of the cached teacher embedding files; part of the cache path with the detection and
/// alignment pipeline's version and the teacher's fingerprint.
const CACHE_VERSION: u32 = 1;

/// Unit teacher embeddings of `entries`, keyed by image SHA-256. Images whose face the
/// pipeline rejects at the teacher's input size are missing from the map.
pub fn teacher_embeddings(
    teacher: &Path,
    detector: &Path,
    entries: &[ImageEntry],
    cache: &Path,
    device: Device,
) -> Result<(ImportedBase, HashMap<String, Vec<f32>>)> {
    let base = ImportedBase::load(teacher).with_context(|| format!("--teacher {}", teacher.display()))?;
    let spec = base.card.input.clone();
    let dim = base.embedding_dim as usize;
    let dir: PathBuf = cache.join("teacher").join(format!(
        "v{CACHE_VERSION}-p{}-{}",
        facegate_hostkit::data::PIPELINE_VERSION,
        &base.card.fingerprint.to_string()[..16]
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = |sha: &str| dir.join(format!("{sha}.f32"));
    let mut out = HashMap::new();
    let mut todo = Vec::new();
    for e in entries {
        match std::fs::read(file(&e.sha256)) {
            Ok(b) if b.len() == dim * 4 => {
                let v: Vec<f32> = b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                if v.iter().all(|x| x.is_finite()) {
                    out.insert(e.sha256.clone(), v);
                    continue;
                }
                todo.push(e.clone());
            }
            _ => todo.push(e.clone()),
        }
    }
    if todo.is_empty() {
        eprintln!("teacher: {} embeddings from the cache {}", out.len(), dir.display());
        return Ok((base, out));
    }
    let finder = FaceFinder::new(YuNet::load(detector)?);
    let bar = facegate_hostkit::progress::bar(todo.len() as u64, "aligning faces for the teacher");
    let (crops, _rejected) = aligned_crops(&finder, &todo, &spec, cache, &bar);
    bar.finish_and_clear();
    let vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), &ArchConfig::default(), Some(&base));
    let started = std::time::Instant::now();
    let kept: Vec<(&ImageEntry, Vec<f32>)> =
        todo.iter().zip(crops).filter_map(|(e, c)| c.map(|c| (e, preprocess(&c, &spec)))).collect();
    let (c, h, w) = (spec.channels.channels() as i64, i64::from(spec.height), i64::from(spec.width));
    let bar = facegate_hostkit::progress::bar(kept.len() as u64, "teacher embeddings");
    for chunk in kept.chunks(16) {
        let flat: Vec<f32> = chunk.iter().flat_map(|(_, x)| x.iter().copied()).collect();
        let x = Tensor::from_slice(&flat).view([chunk.len() as i64, c, h, w]).to_device(device);
        let e = tch::no_grad(|| net.embed_t(&x, false)).to_device(Device::Cpu).to_kind(Kind::Float);
        let rows = Vec::<f32>::try_from(&e.view([-1]))?;
        for ((entry, _), v) in chunk.iter().zip(rows.chunks_exact(dim)) {
            if !v.iter().all(|x| x.is_finite()) {
                bail!("teacher {}: a non-finite embedding for {}", teacher.display(), entry.path.display());
            }
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            write_atomic(&file(&entry.sha256), &bytes)?;
            out.insert(entry.sha256.clone(), v.to_vec());
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    eprintln!(
        "teacher: {} embedded {} training images in {:.1} s ({} from the cache) -> {}",
        teacher.display(),
        kept.len(),
        started.elapsed().as_secs_f64(),
        entries.len() - todo.len(),
        dir.display()
    );
    Ok((base, out))
}

/// Blends of two training people's faces (`λ·a + (1 − λ)·b`, λ in [0.35, 0.65]): new faces,
/// none of them a training person, on which the teacher's judgement is still available. `student_x`
/// and `teacher_x` hold the same images at each network's input (`N × C × H × W`, preprocessed;
/// preprocessing is affine, so blending preprocessed inputs is preprocessing the blend); rows
/// whose `teacher_ok` is false are not used. Returns the student's inputs (`n × …`) and the
/// teacher's unit embeddings of the same blends (`n × Dt`).
pub fn blends(
    teacher: &ImportedBase,
    student_x: &Tensor,
    teacher_x: &Tensor,
    teacher_ok: &[bool],
    labels: &[i64],
    n: usize,
    seed: u64,
) -> Result<(Tensor, Tensor)> {
    let usable: Vec<usize> = (0..labels.len()).filter(|&i| teacher_ok[i]).collect();
    if usable.len() < 2 || usable.iter().all(|&i| labels[i] == labels[usable[0]]) {
        bail!("blends need faces of at least two training people that the teacher embedded");
    }
    let mut rng = facegate_shared::synthetic::SplitMix64::new(seed);
    let (mut a, mut b, mut lam) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    while a.len() < n {
        let (i, j) = (usable[rng.below(usable.len())], usable[rng.below(usable.len())]);
        if labels[i] == labels[j] {
            continue;
        }
        a.push(i as i64);
        b.push(j as i64);
        lam.push(0.35 + 0.3 * (rng.next_u64() as f64 / u64::MAX as f64) as f32);
    }
    let dev = student_x.device();
    let (a, b) = (Tensor::from_slice(&a).to_device(dev), Tensor::from_slice(&b).to_device(dev));
    let lam = Tensor::from_slice(&lam).to_device(dev).view([-1, 1, 1, 1]);
    let mix = |x: &Tensor| x.index_select(0, &a) * &lam + x.index_select(0, &b) * (lam.neg() + 1.0);
    let student = mix(student_x);
    let vs = nn::VarStore::new(dev);
    let net = Net::new(&vs.root(), &ArchConfig::default(), Some(teacher));
    let tx = mix(teacher_x);
    let started = std::time::Instant::now();
    let emb: Vec<Tensor> = (0..n as i64)
        .step_by(32)
        .map(|s| tch::no_grad(|| net.embed_t(&tx.narrow(0, s, (n as i64 - s).min(32)), false)))
        .collect();
    let emb = Tensor::cat(&emb, 0);
    eprintln!("teacher: embedded {n} blends of two training people in {:.1} s", started.elapsed().as_secs_f64());
    Ok((student, emb))
}

/// Relational distillation loss: the mean squared difference between the student's and the
/// teacher's cosine similarities over the off-diagonal pairs of the batch whose two images both
/// have a teacher embedding (`known`: `N` floats, 1 or 0). Both are unit rows (`N × Ds`,
/// `N × Dt`; the sizes may differ); the teacher gets no gradient.
pub fn relational_loss(student: &Tensor, teacher: &Tensor, known: &Tensor) -> Tensor {
    let n = student.size()[0];
    let s = student.matmul(&student.tr());
    let t = teacher.detach().matmul(&teacher.detach().tr());
    let off = Tensor::eye(n, (Kind::Float, student.device())).neg() + 1.0;
    let pairs = off * known.unsqueeze(0) * known.unsqueeze(1);
    ((s - t).square() * &pairs).sum(Kind::Float) / pairs.sum(Kind::Float).clamp_min(1.0)
}

/// Embedding distillation loss: the mean of `1 − cos` between the projected student rows and the
/// teacher's embeddings (both unit rows of the teacher's size), over the images the teacher
/// embedded (`known`); the teacher gets no gradient.
pub fn embedding_loss(projected: &Tensor, teacher: &Tensor, known: &Tensor) -> Tensor {
    let cos = (projected * teacher.detach()).sum_dim_intlist(1, false, Kind::Float);
    ((-cos + 1.0) * known).sum(Kind::Float) / known.sum(Kind::Float).clamp_min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::l2_normalise;

    #[test]
    fn relational_loss_is_zero_for_the_same_structure_and_teaches_only_the_student() {
        tch::manual_seed(3);
        let t = l2_normalise(&Tensor::randn([8, 16], (Kind::Float, Device::Cpu)));
        // same similarities in another space: a rotation (here a permutation with a sign flip)
        let perm = Tensor::from_slice(&[3i64, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14]);
        let rotated = -t.index_select(1, &perm);
        let all = Tensor::ones([8], (Kind::Float, Device::Cpu));
        assert!(relational_loss(&rotated, &t, &all).double_value(&[]) < 1e-10);
        // a different structure: positive loss, gradient to the student only
        let s = l2_normalise(&Tensor::randn([8, 4], (Kind::Float, Device::Cpu))).set_requires_grad(true);
        let tg = t.shallow_clone().set_requires_grad(true);
        let loss = relational_loss(&s, &tg, &all);
        assert!(loss.double_value(&[]) > 1e-3, "{}", loss.double_value(&[]));
        loss.backward();
        assert!(s.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
        assert!(!tg.grad().defined() || tg.grad().abs().sum(Kind::Float).double_value(&[]) == 0.0);
        // the diagonal (always 1 against 1) does not count: 2 rows that agree off-diagonal give 0
        let a = l2_normalise(&Tensor::from_slice(&[1f32, 0., 0., 1.]).view([2, 2]));
        let b = l2_normalise(&Tensor::from_slice(&[0f32, 1., 1., 0.]).view([2, 2]));
        let two = Tensor::ones([2], (Kind::Float, Device::Cpu));
        assert!(relational_loss(&a, &b, &two).double_value(&[]) < 1e-12);
        // images without a teacher embedding take no part
        let unknown = l2_normalise(&Tensor::randn([8, 16], (Kind::Float, Device::Cpu)));
        let first_half = Tensor::from_slice(&[1f32, 1., 1., 1., 0., 0., 0., 0.]);
        unknown.narrow(0, 0, 4).copy_(&rotated.narrow(0, 0, 4));
        assert!(relational_loss(&unknown, &t, &first_half).double_value(&[]) < 1e-10);
        assert!(relational_loss(&unknown, &t, &all).double_value(&[]) > 1e-3);
    }

    #[test]
    fn embedding_loss_is_one_minus_cosine_over_known_rows() {
        let t = l2_normalise(&Tensor::from_slice(&[1f32, 0., 0., 1., 1., 1.]).view([3, 2]));
        let known = Tensor::from_slice(&[1f32, 1., 0.]);
        assert!(embedding_loss(&t, &t, &known).double_value(&[]).abs() < 1e-7);
        // row 0 orthogonal (loss 1), row 1 equal (0), row 2 opposite but unknown: mean 0.5
        let s = l2_normalise(&Tensor::from_slice(&[0f32, 1., 0., 1., -1., -1.]).view([3, 2]));
        assert!((embedding_loss(&s, &t, &known).double_value(&[]) - 0.5).abs() < 1e-6);
    }
}
