//! Front-desk capture for `facegate enroll --camera/--source`: frames from the door's frame
//! sources (`facegate-frames`) until the member has N shots that each pass the enrolment gate's
//! own limits, differ from each other in head pose, and match each other. Nothing is written
//! until the capture is complete.

use anyhow::{bail, Context, Result};
use facegate_face::{
    inconsistent_photos, Encoder, FaceDetector, FaceError, FacePipeline, HeadPose, QualityLimits, QualityReport,
};
use facegate_frames::{FrameSource, SourceError};
use facegate_shared::{Embedding, Threshold};
use image::RgbImage;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One kept frame.
#[derive(Debug, Clone)]
pub struct Shot {
    /// The frame's label (file name for replays, `frame-N` for cameras).
    pub label: String,
    /// The frame.
    pub image: RgbImage,
    /// Its face's embedding.
    pub embedding: Embedding,
    /// Its face's measurements.
    pub quality: QualityReport,
}

/// How different two head poses are: the distance between (yaw, pitch) in degrees. Roll is left
/// out: it is a rotation in the image plane, which alignment undoes, so it shows the encoder
/// nothing new.
pub fn pose_change(a: &HeadPose, b: &HeadPose) -> f32 {
    (a.yaw - b.yaw).hypot(a.pitch - b.pitch)
}

/// Decides which frames become shots.
#[derive(Debug, Clone)]
pub struct ShotPicker {
    /// Shots wanted.
    pub need: usize,
    /// Minimum [`pose_change`] from every shot already kept, in degrees.
    pub min_pose_change: f32,
    /// Each shot's own limits (the enrolment gate).
    pub limits: QualityLimits,
}

impl ShotPicker {
    /// Why a face with `quality` is not a new shot, given the shots kept (`None`: take it).
    pub fn refuse(&self, quality: &QualityReport, kept: &[Shot]) -> Option<String> {
        if let Some(p) = quality.problems(&self.limits).into_iter().next() {
            return Some(p.check.to_owned());
        }
        let nearest = kept.iter().map(|s| pose_change(&s.quality.pose, &quality.pose)).fold(f32::INFINITY, f32::min);
        (nearest < self.min_pose_change).then(|| format!("pose within {:.0}° of a shot", self.min_pose_change))
    }
}

/// What a capture ends with.
#[derive(Debug)]
pub struct Capture {
    /// The shots, consistent with each other.
    pub shots: Vec<Shot>,
    /// Frames seen.
    pub frames: u64,
}

/// Reads `source` until `picker.need` shots are kept and match each other at `threshold`, the
/// source ends, or `timeout` passes. Frames without exactly one usable face, failing the gate's
/// limits, or too close in pose to a kept shot are counted by reason; a kept shot that matches
/// none of the others (someone else stepped in) is dropped and capture goes on. Progress goes
/// to the terminal; the reasons are in the error when it fails.
pub fn capture<D: FaceDetector, E: Encoder>(
    p: &FacePipeline<D, E>,
    source: &mut dyn FrameSource,
    picker: &ShotPicker,
    threshold: Threshold,
    timeout: Duration,
) -> Result<Capture> {
    let started = Instant::now();
    let bar = crate::progress::bar(picker.need as u64, "shots");
    let mut kept: Vec<Shot> = Vec::new();
    let mut refused: BTreeMap<String, u32> = BTreeMap::new();
    let mut frames = 0u64;
    let spec = p.encoder.card().input.clone();
    loop {
        if started.elapsed() > timeout {
            bar.finish_and_clear();
            bail!("{}", summary("timed out", &kept, picker, frames, &refused, timeout));
        }
        let frame = match source.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => {
                bar.finish_and_clear();
                bail!("{}", summary("the source ended", &kept, picker, frames, &refused, timeout));
            }
            Err(SourceError::BadFrame { .. }) => {
                *refused.entry("unreadable frame".into()).or_default() += 1;
                continue;
            }
            Err(SourceError::Unavailable(why)) => {
                bar.set_message(format!("camera unavailable: {why}; retrying"));
                *refused.entry("camera unavailable".into()).or_default() += 1;
                std::thread::sleep(Duration::from_millis(500));
                let _ = source.reconnect();
                continue;
            }
            Err(e @ SourceError::Fatal(_)) => return Err(e).context("frame source"),
        };
        frames += 1;
        let reason = match p.finder.find_one(&frame.image, &spec) {
            Err(FaceError::NoFace) => Some("no face".to_owned()),
            Err(FaceError::FaceTooSmall { .. }) => Some("face too small".to_owned()),
            Err(FaceError::ManyFaces { .. }) => Some("more than one face".to_owned()),
            Err(e) => return Err(e).context(format!("frame {}", frame.label)),
            Ok(found) => {
                let quality = QualityReport::measure(&frame.image, &found.detection);
                match picker.refuse(&quality, &kept) {
                    Some(r) => Some(r),
                    None => {
                        let embedding =
                            p.encoder.encode(&found.aligned).with_context(|| format!("frame {}", frame.label))?;
                        bar.suspend(|| {
                            println!(
                                "shot {}/{}: {} (yaw {:.0}°, pitch {:.0}°, eyes {:.0} px)",
                                kept.len() + 1,
                                picker.need,
                                frame.label,
                                quality.pose.yaw,
                                quality.pose.pitch,
                                quality.eye_distance_px
                            )
                        });
                        kept.push(Shot { label: frame.label, image: frame.image, embedding, quality });
                        None
                    }
                }
            }
        };
        if let Some(r) = reason {
            bar.set_message(format!("last frame: {r}"));
            *refused.entry(r).or_default() += 1;
        }
        if kept.len() == picker.need {
            let embeddings: Vec<Embedding> = kept.iter().map(|s| s.embedding.clone()).collect();
            let odd = inconsistent_photos(&embeddings, threshold);
            if odd.is_empty() {
                bar.finish_and_clear();
                return Ok(Capture { shots: kept, frames });
            }
            for &i in odd.iter().rev() {
                let s = kept.remove(i);
                bar.suspend(|| println!("dropped shot {}: matches none of the other shots (another person?)", s.label));
                *refused.entry("matched none of the other shots".into()).or_default() += 1;
            }
        }
        bar.set_position(kept.len() as u64);
    }
}

fn summary(
    how: &str,
    kept: &[Shot],
    picker: &ShotPicker,
    frames: u64,
    refused: &BTreeMap<String, u32>,
    timeout: Duration,
) -> String {
    let reasons: Vec<String> = refused.iter().map(|(r, n)| format!("{r}: {n}")).collect();
    format!(
        "{how} ({} frames, {:.0} s limit) with {} of {} shots that pass the quality gate and differ by at least {:.0}° in head pose; nothing was written. Frames refused: {}. Ask the member to face the camera and turn their head a little between shots.",
        frames,
        timeout.as_secs_f32(),
        kept.len(),
        picker.need,
        picker.min_pose_change,
        if reasons.is_empty() { "none".into() } else { reasons.join(", ") }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(yaw: f32, pitch: f32) -> QualityReport {
        QualityReport {
            eye_distance_px: 60.0,
            sharpness: 200.0,
            brightness: 120.0,
            contrast: 50.0,
            pose: HeadPose { yaw, pitch, roll: 0.0 },
            score: 0.95,
        }
    }

    fn shot(yaw: f32, pitch: f32) -> Shot {
        Shot {
            label: String::new(),
            image: RgbImage::new(1, 1),
            embedding: Embedding::new(vec![1.0, 0.0]).unwrap(),
            quality: report(yaw, pitch),
        }
    }

    /// Frames with no face, a camera outage and an unreadable frame, then the end or a timeout.
    struct Flaky {
        steps: Vec<Result<(), SourceError>>,
        reconnects: u32,
        /// The reconnect that works (`u32::MAX`: none).
        recovers_at: u32,
    }

    impl FrameSource for Flaky {
        fn next_frame(&mut self) -> Result<Option<facegate_frames::Frame>, SourceError> {
            if self.steps.is_empty() {
                return Ok(None);
            }
            match self.steps.remove(0) {
                Ok(()) => Ok(Some(facegate_frames::Frame {
                    image: RgbImage::new(64, 48),
                    at: Duration::ZERO,
                    label: "f".into(),
                })),
                Err(SourceError::Unavailable(w)) => {
                    // an outage lasts until a reconnect
                    self.steps.insert(0, Err(SourceError::Unavailable(w.clone())));
                    Err(SourceError::Unavailable(w))
                }
                Err(e) => Err(e),
            }
        }
        fn reconnect(&mut self) -> Result<(), SourceError> {
            self.reconnects += 1;
            if self.reconnects >= self.recovers_at {
                self.steps.retain(|s| !matches!(s, Err(SourceError::Unavailable(_))));
                return Ok(());
            }
            Err(SourceError::Unavailable("still unplugged".into()))
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    fn pipeline() -> FacePipeline<facegate_face::FixedDetector, facegate_face::FixedEncoder> {
        let card = facegate_shared::ModelCard::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/face_recognition_sface_2021dec.card.json"
        )))
        .unwrap();
        FacePipeline::new(facegate_face::FixedDetector::default(), facegate_face::FixedEncoder::new(card, vec![]))
    }

    #[test]
    fn outages_are_retried_and_every_refused_frame_is_counted() {
        let picker = ShotPicker { need: 3, min_pose_change: 6.0, limits: QualityLimits::ENROLMENT };
        let threshold = Threshold::new(1.1).unwrap();
        let unplugged = || Err(SourceError::Unavailable("unplugged".into()));
        let bad = || Err(SourceError::BadFrame { label: "x".into(), reason: "corrupt".into() });
        let mut src = Flaky { steps: vec![Ok(()), unplugged(), bad(), Ok(())], reconnects: 0, recovers_at: 2 };
        let e = capture(&pipeline(), &mut src, &picker, threshold, Duration::from_secs(30)).unwrap_err().to_string();
        assert!(e.starts_with("the source ended (2 frames"), "{e}");
        assert!(
            e.contains("0 of 3 shots") && e.contains("camera unavailable: 2, no face: 2, unreadable frame: 1"),
            "{e}"
        );
        assert_eq!(src.reconnects, 2);

        // a camera that never comes back: retried every 0.5 s until the time limit
        let mut src = Flaky { steps: vec![unplugged()], reconnects: 0, recovers_at: u32::MAX };
        let started = Instant::now();
        let e = capture(&pipeline(), &mut src, &picker, threshold, Duration::from_millis(1200)).unwrap_err();
        assert!(e.to_string().starts_with("timed out (0 frames"), "{e}");
        assert!(e.to_string().contains(&format!("camera unavailable: {}", src.reconnects)), "{e}");
        let (tries, took) = (src.reconnects, started.elapsed());
        assert!((2..=3).contains(&tries), "{tries} reconnects");
        assert!(took >= Duration::from_millis(1200) && took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn a_shot_must_pass_the_gate_and_differ_in_pose_from_every_kept_shot() {
        let picker = ShotPicker { need: 3, min_pose_change: 6.0, limits: QualityLimits::ENROLMENT };
        assert_eq!(picker.refuse(&report(0.0, 0.0), &[]), None);
        let kept = [shot(0.0, 0.0), shot(15.0, 0.0)];
        // 5° from the first shot: too close, whatever the second
        assert_eq!(picker.refuse(&report(3.0, 4.0), &kept).as_deref(), Some("pose within 6° of a shot"));
        // 6° from the first (pitch only) and 9° from the second: taken
        assert_eq!(picker.refuse(&report(6.0, 0.0), &kept), None);
        assert_eq!(picker.refuse(&report(0.0, -6.0), &kept), None);
        // roll alone shows the encoder nothing new
        let rolled = QualityReport { pose: HeadPose { yaw: 0.0, pitch: 0.0, roll: 20.0 }, ..report(0.0, 0.0) };
        assert!(picker.refuse(&rolled, &kept).is_some());
        // the gate's own limits first: a dark frame is refused for being dark
        let dark = QualityReport { brightness: 10.0, ..report(40.0, 0.0) };
        assert_eq!(picker.refuse(&dark, &kept).as_deref(), Some("dark"));
        let turned = report(40.0, 0.0);
        assert_eq!(picker.refuse(&turned, &kept).as_deref(), Some("yaw"));
    }
}
