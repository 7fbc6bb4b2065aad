//! Real face videos for `facegate pad-eval`: live people in front of a still camera, the genuine
//! appearances a door sees (consecutive frames, not separate photos). Each video is cut into
//! windows as long as the door's liveness timeout, at about the rate the door processes frames
//! with liveness on (10 a second on this VM's 2 cores; the camera's own rate is 15), each window
//! an appearance of a member taken as recognised on every frame with a face (the door would also
//! restart it on a frame matched to nobody: not modelled); every frame goes through the real
//! detector and the followed landmarks exactly as at the door, and the window is judged as the
//! door judges it: a face missed for up to [`FACE_GAP_MS`] keeps the appearance (its liveness
//! evidence starts again after the gap), a longer gap starts a new one; from an appearance's
//! [`FIRST_JUDGED_FRAME`]-th face on, a deny cue that fired on any of its frame pairs denies it, a
//! 3-D verdict grants it, and the timeout refuses it. A cue's most per window counts every frame
//! pair of the window, also those after the door would have decided (so the tuned count errs
//! high: towards letting attacks through, never towards refusing members).
//!
//! The frames are decoded by `ffmpeg` and scaled up to the door's 640×480 canvas (the videos are
//! 400×300, 360×288 and 176×144): the face is as large as at a door, but blurrier than a
//! 640×480 camera would show it. Nothing is tuned on the report half's people.

use super::pad::{landmarks, on_every_core, FIRST_JUDGED_FRAME, MIN_IOD_PX};
use anyhow::{bail, Context, Result};
use facegate_face::liveness::{iod, Cue, Followed, Liveness, PassiveCheck};
use facegate_face::parallax::FacePatch;
use facegate_face::{FaceFinder, YuNet};
use image::RgbImage;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The door's `decision.face_gap_ms` default: a face-less frame this long after the last face
/// ends the appearance.
pub const FACE_GAP_MS: u64 = 300;
/// The door's canvas.
const CANVAS: (u32, u32) = (640, 480);

/// One window of a video: the door's state after each frame with a face, per appearance.
#[derive(Debug)]
pub struct VideoWindow {
    /// The person's folder name.
    pub person: String,
    /// The video's file name.
    pub video: String,
    /// Where the window starts in the video (ms).
    pub start_ms: u64,
    /// Frames decoded, and with a usable face.
    pub frames: usize,
    pub faces: usize,
    /// Appearances in the window (a new one after each face gap longer than [`FACE_GAP_MS`]).
    pub appearances: Vec<Appearance>,
}

/// One appearance: its first frame's time (ms from the window's start), and after each frame
/// with a face, that frame's time and the followed frames so far (images dropped).
#[derive(Debug, Default)]
pub struct Appearance {
    pub first_ms: u64,
    pub steps: Vec<(u64, Followed)>,
}

/// How the door decided a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Granted at this time from the window's start.
    Granted(u64),
    /// Denied by a deny cue.
    Denied(Cue),
    /// No 3-D verdict before the timeout (or the window's end).
    Unconfirmed,
}

impl VideoWindow {
    /// The door's decision on this window with `check` and its `timeout_ms`.
    pub fn judge(&self, check: &PassiveCheck, timeout_ms: u64) -> Outcome {
        for ap in &self.appearances {
            let mut rigid = None;
            for (k, (at, f)) in ap.steps.iter().enumerate() {
                // latched from the appearance's first frame pair, as at the door
                rigid = rigid.or_else(|| check.rigid_pair(f, usize::MAX));
                if k + 1 < FIRST_JUDGED_FRAME {
                    continue;
                }
                if let Some(d) = rigid {
                    return Outcome::Denied(d.cue);
                }
                match check.judge_appearance(f, usize::MAX) {
                    Liveness::Live { .. } => return Outcome::Granted(*at),
                    Liveness::Rigid(d) => return Outcome::Denied(d.cue),
                    Liveness::Unconfirmed { .. } if at - ap.first_ms >= timeout_ms => return Outcome::Unconfirmed,
                    Liveness::Unconfirmed { .. } => {}
                }
            }
        }
        Outcome::Unconfirmed
    }

    /// The most ring points (or border edges) that moved with the face in one frame pair the
    /// door's rule looks at (both faces large enough, followed `min_ncc` well).
    pub fn cue_max(&self, cue: Cue, min_ncc: f32) -> u8 {
        let mut m = 0;
        for (_, f) in self.appearances.iter().flat_map(|ap| &ap.steps) {
            // each pair is measured when its newer frame is pushed: the newest frame's pairs
            let Some(j) = f.len().checked_sub(1) else { continue };
            let big = |k: usize| iod(&f.landmarks()[k]) >= MIN_IOD_PX;
            if !big(j) {
                continue;
            }
            for i in (0..j).filter(|&i| big(i)) {
                if let Some(p) = f.pair(i, j).filter(|p| p.ncc >= min_ncc) {
                    m = m.max(match cue {
                        Cue::Ring => p.ring.with_face,
                        Cue::Border => p.border.with_face,
                    });
                }
            }
        }
        m
    }
}

/// One window to cut from a video: its person, the video, and where the window starts (ms).
struct Job {
    person: String,
    path: PathBuf,
    start_ms: u64,
}

/// Videos under `dir`: `PERSON/FILE` (any file `ffmpeg` reads), people and files in name order.
pub fn videos(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut people: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("video folder {} (make setup fetches the videos)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    people.sort();
    for p in people {
        let person = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&p)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|f| f.is_file()).collect();
        files.sort();
        out.extend(files.into_iter().map(|f| (person.clone(), f)));
    }
    if out.is_empty() {
        bail!("no videos in {} (PERSON/FILE)", dir.display());
    }
    Ok(out)
}

/// A video's length in ms (`ffprobe`).
fn duration_ms(path: &Path) -> Result<u64> {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .context("running ffprobe (make setup installs ffmpeg)")?;
    let text = String::from_utf8_lossy(&o.stdout);
    match text.trim().parse::<f64>() {
        Ok(s) if o.status.success() && s.is_finite() && s > 0.0 => Ok((s * 1000.0) as u64),
        _ => bail!(
            "ffprobe could not read the length of {}: {}",
            path.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
    }
}

/// The frames of `path` from `start_ms` for `len_ms` at `fps`, scaled to fit the door's canvas
/// (aspect kept, padded with black).
fn decode(path: &Path, start_ms: u64, len_ms: u64, fps: f32) -> Result<Vec<RgbImage>> {
    let (w, h) = CANVAS;
    let filter = format!(
        "fps={fps},scale={w}:{h}:force_original_aspect_ratio=decrease:flags=bicubic,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2"
    );
    let mut child = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{:.3}", start_ms as f64 / 1e3), "-t"])
        .arg(format!("{:.3}", len_ms as f64 / 1e3))
        .arg("-i")
        .arg(path)
        .args(["-vf", &filter, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ffmpeg (make setup installs it)")?;
    let mut bytes = Vec::new();
    child.stdout.take().expect("piped").read_to_end(&mut bytes)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("ffmpeg could not decode {}: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let size = (w * h * 3) as usize;
    Ok(bytes.chunks_exact(size).filter_map(|c| RgbImage::from_raw(w, h, c.to_vec())).collect())
}

/// Cuts every video into windows of `window_ms` (at most `max_windows` per video), and follows
/// each window's faces as the door does, on every core.
pub fn windows(
    list: &[(String, PathBuf)],
    detector: &Path,
    fps: f32,
    window_ms: u64,
    max_windows: Option<usize>,
) -> Result<Vec<VideoWindow>> {
    let mut jobs = Vec::new();
    for (person, path) in list {
        let n = (duration_ms(path)? / window_ms).max(1) as usize;
        jobs.extend((0..n.min(max_windows.unwrap_or(usize::MAX))).map(|k| Job {
            person: person.clone(),
            path: path.clone(),
            start_ms: k as u64 * window_ms,
        }));
    }
    on_every_core(&jobs, detector, "following faces in the videos", |finder, _, job| {
        window(finder, job, fps, window_ms)
    })
}

fn window(finder: &FaceFinder<YuNet>, job: &Job, fps: f32, window_ms: u64) -> Result<VideoWindow> {
    let frames = decode(&job.path, job.start_ms, window_ms, fps)?;
    let mut faces = Vec::with_capacity(frames.len());
    for frame in &frames {
        faces.push(landmarks(finder, frame)?.map(|l| (l, FacePatch::cut(frame, &l))));
    }
    Ok(VideoWindow {
        person: job.person.clone(),
        video: job.path.file_name().unwrap_or_default().to_string_lossy().into_owned(),
        start_ms: job.start_ms,
        frames: frames.len(),
        faces: faces.iter().flatten().count(),
        appearances: appearances(faces, fps),
    })
}

/// A frame's face as the door takes it: its landmarks and the image around them (`None`: no
/// usable face).
type Face = Option<([[f32; 2]; 5], Option<FacePatch>)>;

/// The appearances of a window's frames (`fps` apart), followed as the door follows them.
fn appearances(faces: Vec<Face>, fps: f32) -> Vec<Appearance> {
    let mut out = Vec::new();
    let (mut followed, mut current, mut last_face) = (Followed::default(), Appearance::default(), None::<u64>);
    for (i, face) in faces.into_iter().enumerate() {
        let at = (i as f64 * 1000.0 / f64::from(fps)).round() as u64;
        match face {
            Some((l, patch)) => {
                if current.steps.is_empty() {
                    current.first_ms = at;
                }
                followed.push(l, patch);
                let mut snap = followed.clone();
                snap.drop_patches();
                current.steps.push((at, snap));
                last_face = Some(at);
            }
            // a face missed longer than the gap ends the appearance
            None if last_face.is_some_and(|t| at - t > FACE_GAP_MS) => {
                out.push(std::mem::take(&mut current));
                followed = Followed::default();
                last_face = None;
            }
            // within it, the appearance goes on but its liveness evidence starts again
            None => followed = Followed::default(),
        }
    }
    if !current.steps.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_face::parallax::model_view;

    /// The model head (nose 0.5 IOD deep) or a flat photo of it (`depth` 0), turned `deg`.
    fn face(deg: f32, depth: f32) -> Face {
        let (img, l) = model_view(deg, depth);
        Some((l, FacePatch::cut(&img, &l)))
    }

    fn window(faces: Vec<Face>) -> VideoWindow {
        let n = faces.len();
        VideoWindow {
            person: "p".into(),
            video: "v".into(),
            start_ms: 0,
            frames: n,
            faces: faces.iter().flatten().count(),
            appearances: appearances(faces, 10.0),
        }
    }

    fn check() -> PassiveCheck {
        PassiveCheck {
            min_iod_px: MIN_IOD_PX,
            min_change: 0.03,
            threshold: 0.005,
            min_pairs: 2,
            min_ncc: 0.5,
            landmarks: facegate_face::liveness::Landmarks::Followed,
            ring_deny: 0,
            border_deny: 0,
        }
    }

    #[test]
    fn a_window_is_judged_as_the_door_judges_an_appearance() {
        // a head turning 0° → 30°, 100 ms a frame: granted when the door would grant it (its
        // fifth frame, as in the door's own test)
        let turn: Vec<_> = (0..7).map(|i| face(5.0 * i as f32, 0.5)).collect();
        assert_eq!(window(turn.clone()).judge(&check(), 6000), Outcome::Granted(400));
        // a photo of it tilting the same way: never 3-D; refused when the window ends
        let photo: Vec<_> = (0..12).map(|i| face(5.0 * (i % 6) as f32, 0.0)).collect();
        assert_eq!(window(photo.clone()).judge(&check(), 6000), Outcome::Unconfirmed);
        // ... and at the timeout, counted from the appearance's first frame
        assert_eq!(window(photo).judge(&check(), 500), Outcome::Unconfirmed);
        // the turn with two frames missed (the last 200 ms after the face): one appearance, but
        // the evidence starts again after the gap, at 10°: granted at 25° (700 ms), the fourth
        // frame after the gap
        let mut gap = turn.clone();
        gap.splice(2..2, [None, None]);
        let w = window(gap);
        assert_eq!((w.appearances.len(), w.faces), (1, 7));
        assert_eq!(w.judge(&check(), 6000), Outcome::Granted(700));
        // missed for longer than the gap (400 ms): two appearances of 2 and 5 frames, the
        // second granted at its fourth frame, 25° (900 ms), like the appearance above
        let mut gap = turn;
        gap.splice(2..2, [None, None, None, None]);
        let w = window(gap);
        assert_eq!(w.appearances.iter().map(|a| a.steps.len()).collect::<Vec<_>>(), vec![2, 5]);
        assert_eq!(w.judge(&check(), 6000), Outcome::Granted(900));
    }
}
