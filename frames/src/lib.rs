//! # facegate-frames
//!
//! Frame sources, shared by the door (`facegate-door`) and front-desk camera enrolment
//! (`facegate enroll --camera`): one trait, a camera (nokhwa, feature `camera`), a command's
//! Motion-JPEG output ([`pipe`]: the Raspberry Pi camera through rpicam-vid, RTSP cameras through
//! ffmpeg), image folders and single images replayed at a set rate, and a scripted fake for tests
//! (feature `testing`).
//!
//! nokhwa stays out of anything that links libtorch: `facegate-train` depends on neither this
//! crate nor `facegate`.

pub mod pipe;

use image::RgbImage;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where frames come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceUri {
    /// A camera by index (`camera:0`).
    CameraIndex(u32),
    /// A camera by (part of) its name (`camera:USB Camera`).
    CameraName(String),
    /// Every image in a folder, in file-name order (`dir:PATH`).
    Dir(PathBuf),
    /// One image, repeated (`image:PATH`).
    Image(PathBuf),
    /// A command's Motion-JPEG output (`pipe:COMMAND ARGS...`, split into words, no shell).
    Pipe(String),
}

/// A source URI that is none of the four forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not camera:INDEX, camera:NAME, dir:PATH, image:PATH or pipe:COMMAND ARGS...")]
pub struct BadSourceUri(pub String);

impl std::str::FromStr for SourceUri {
    type Err = BadSourceUri;
    fn from_str(s: &str) -> Result<Self, BadSourceUri> {
        let bad = || BadSourceUri(s.to_owned());
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        Ok(match kind {
            "camera" => match rest.parse::<u32>() {
                Ok(i) => SourceUri::CameraIndex(i),
                Err(_) => SourceUri::CameraName(rest.to_owned()),
            },
            "dir" => SourceUri::Dir(rest.into()),
            "image" => SourceUri::Image(rest.into()),
            "pipe" => match pipe::split_words(rest) {
                Some(w) if !w.is_empty() => SourceUri::Pipe(rest.to_owned()),
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        })
    }
}

impl std::fmt::Display for SourceUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceUri::CameraIndex(i) => write!(f, "camera:{i}"),
            SourceUri::CameraName(n) => write!(f, "camera:{n}"),
            SourceUri::Dir(p) => write!(f, "dir:{}", p.display()),
            SourceUri::Image(p) => write!(f, "image:{}", p.display()),
            SourceUri::Pipe(c) => write!(f, "pipe:{}", pipe::redact_credentials(c)),
        }
    }
}

/// Frame source settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSettings {
    /// Which source.
    pub uri: SourceUri,
    /// Requested camera width.
    pub width: u32,
    /// Requested camera height.
    pub height: u32,
    /// Camera frame rate; replay rate for files.
    pub fps: f32,
    /// Replay in real time.
    pub pace: bool,
    /// Frames produced by an `image:` source.
    pub repeat: u32,
}

impl SourceSettings {
    /// `uri` at 640×480, 15 frames/s, replays not paced, an image once: what front-desk
    /// enrolment uses.
    pub fn new(uri: SourceUri) -> Self {
        Self { uri, width: 640, height: 480, fps: 15.0, pace: false, repeat: 1 }
    }
}

/// One frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Pixels.
    pub image: RgbImage,
    /// Time since the source started (frame clock: replays use `index / fps`).
    pub at: Duration,
    /// File name for replays, frame number for cameras.
    pub label: String,
}

/// Why no frame came.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// This frame is unusable (undecodable file, corrupt camera buffer); the next may be fine.
    #[error("bad frame {label}: {reason}")]
    BadFrame { label: String, reason: String },
    /// The device is gone or not delivering; back off and [`FrameSource::reconnect`].
    #[error("camera unavailable: {0}")]
    Unavailable(String),
    /// The source cannot work at all (folder missing, camera not found at start).
    #[error("{0}")]
    Fatal(String),
}

/// Produces frames until it ends (`Ok(None)`: end of a replay; cameras never end).
pub trait FrameSource {
    /// The next frame.
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;
    /// Tries to get the device back after [`SourceError::Unavailable`].
    fn reconnect(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
    /// One line for logs.
    fn describe(&self) -> String;
}

impl<T: FrameSource + ?Sized> FrameSource for Box<T> {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        (**self).next_frame()
    }
    fn reconnect(&mut self) -> Result<(), SourceError> {
        (**self).reconnect()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "pgm", "ppm", "pnm", "bmp", "webp", "gif"];

/// Image files replayed in file-name order at `fps` (paced in real time or not).
pub struct ReplaySource {
    files: Vec<PathBuf>,
    next: usize,
    period: Duration,
    pace: bool,
    started: Option<Instant>,
    label: String,
}

impl ReplaySource {
    /// Every image file directly inside `dir`, sorted by name.
    pub fn dir(dir: &Path, fps: f32, pace: bool) -> Result<Self, SourceError> {
        let rd =
            std::fs::read_dir(dir).map_err(|e| SourceError::Fatal(format!("frame folder {}: {e}", dir.display())))?;
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(SourceError::Fatal(format!("frame folder {} holds no images", dir.display())));
        }
        Ok(Self::from_files(files, fps, pace, format!("dir:{}", dir.display())))
    }

    /// One image, `repeat` times.
    pub fn image(path: &Path, repeat: u32, fps: f32, pace: bool) -> Result<Self, SourceError> {
        if !path.is_file() {
            return Err(SourceError::Fatal(format!("image {} does not exist", path.display())));
        }
        let files = vec![path.to_owned(); repeat as usize];
        Ok(Self::from_files(files, fps, pace, format!("image:{}", path.display())))
    }

    fn from_files(files: Vec<PathBuf>, fps: f32, pace: bool, label: String) -> Self {
        Self { files, next: 0, period: Duration::from_secs_f32(1.0 / fps), pace, started: None, label }
    }

    /// Number of frames the replay will produce.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True if there are no frames.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl FrameSource for ReplaySource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let Some(path) = self.files.get(self.next) else { return Ok(None) };
        let at = self.period * self.next as u32;
        self.next += 1;
        let started = *self.started.get_or_insert_with(Instant::now);
        if self.pace {
            if let Some(wait) = at.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let label = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let image = facegate_face::load_image(path)
            .map_err(|e| SourceError::BadFrame { label: label.clone(), reason: e.to_string() })?;
        Ok(Some(Frame { image, at, label }))
    }
    fn describe(&self) -> String {
        format!("{} ({} frames)", self.label, self.files.len())
    }
}

/// Opens the configured source.
pub fn open(settings: &SourceSettings) -> Result<Box<dyn FrameSource>, SourceError> {
    match &settings.uri {
        SourceUri::Dir(d) => Ok(Box::new(ReplaySource::dir(d, settings.fps, settings.pace)?)),
        SourceUri::Image(p) => Ok(Box::new(ReplaySource::image(p, settings.repeat, settings.fps, settings.pace)?)),
        SourceUri::Pipe(cmd) => {
            let argv =
                pipe::split_words(cmd).ok_or_else(|| SourceError::Fatal(format!("pipe:{cmd}: unterminated quote")))?;
            Ok(Box::new(pipe::PipeSource::new(argv)?))
        }
        SourceUri::CameraIndex(_) | SourceUri::CameraName(_) => open_camera(settings),
    }
}

#[cfg(feature = "camera")]
fn open_camera(settings: &SourceSettings) -> Result<Box<dyn FrameSource>, SourceError> {
    Ok(Box::new(camera::CameraSource::open(settings)?))
}

#[cfg(not(feature = "camera"))]
fn open_camera(settings: &SourceSettings) -> Result<Box<dyn FrameSource>, SourceError> {
    Err(SourceError::Fatal(format!(
        "{}: this build has no camera support (rebuild with the `camera` feature)",
        settings.uri
    )))
}

/// Names of the cameras the system reports (empty without the `camera` feature).
pub fn list_cameras() -> Result<Vec<String>, SourceError> {
    #[cfg(feature = "camera")]
    {
        camera::list()
    }
    #[cfg(not(feature = "camera"))]
    {
        Ok(Vec::new())
    }
}

#[cfg(feature = "camera")]
mod camera {
    use super::*;
    use nokhwa::pixel_format::RgbFormat;
    use nokhwa::utils::{
        ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution,
    };
    use nokhwa::Camera;

    pub fn list() -> Result<Vec<String>, SourceError> {
        let found = nokhwa::query(ApiBackend::Auto).map_err(|e| SourceError::Fatal(format!("listing cameras: {e}")))?;
        Ok(found.iter().map(|c| format!("{}: {}", c.index(), c.human_name())).collect())
    }

    /// A V4L2/USB camera through nokhwa, MJPEG or whatever is closest to the requested format.
    pub struct CameraSource {
        settings: SourceSettings,
        camera: Option<Camera>,
        started: Instant,
        frames: u64,
    }

    impl CameraSource {
        pub fn open(settings: &SourceSettings) -> Result<Self, SourceError> {
            let mut s = Self { settings: settings.clone(), camera: None, started: Instant::now(), frames: 0 };
            s.connect().map_err(|e| match e {
                SourceError::Unavailable(m) => SourceError::Fatal(m),
                other => other,
            })?;
            Ok(s)
        }

        fn index(&self) -> Result<CameraIndex, SourceError> {
            match &self.settings.uri {
                SourceUri::CameraIndex(i) => Ok(CameraIndex::Index(*i)),
                SourceUri::CameraName(name) => {
                    let found = nokhwa::query(ApiBackend::Auto)
                        .map_err(|e| SourceError::Unavailable(format!("listing cameras: {e}")))?;
                    found.iter().find(|c| c.human_name().contains(name.as_str())).map(|c| c.index().clone()).ok_or_else(
                        || SourceError::Unavailable(format!("no camera named {name:?}; found: {}", names(&found))),
                    )
                }
                other => unreachable!("{other} is not a camera"),
            }
        }

        fn connect(&mut self) -> Result<(), SourceError> {
            self.camera = None;
            let index = self.index()?;
            let fmt = CameraFormat::new(
                Resolution::new(self.settings.width, self.settings.height),
                FrameFormat::MJPEG,
                self.settings.fps.round() as u32,
            );
            let req = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(fmt));
            let mut cam = Camera::new(index.clone(), req).map_err(|e| {
                let found = nokhwa::query(ApiBackend::Auto).map(|f| names(&f)).unwrap_or_else(|e| e.to_string());
                SourceError::Unavailable(format!("camera {index}: {e}; cameras found: {found}"))
            })?;
            cam.open_stream().map_err(|e| SourceError::Unavailable(format!("camera {index}: {e}")))?;
            self.camera = Some(cam);
            Ok(())
        }
    }

    fn names(found: &[nokhwa::utils::CameraInfo]) -> String {
        if found.is_empty() {
            return "none".into();
        }
        found.iter().map(|c| format!("{} ({})", c.index(), c.human_name())).collect::<Vec<_>>().join(", ")
    }

    impl FrameSource for CameraSource {
        fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
            let cam = self.camera.as_mut().ok_or_else(|| SourceError::Unavailable("camera not connected".into()))?;
            let buf = cam.frame().map_err(|e| SourceError::Unavailable(e.to_string()))?;
            self.frames += 1;
            let label = format!("frame-{}", self.frames);
            let image = buf
                .decode_image::<RgbFormat>()
                .map_err(|e| SourceError::BadFrame { label: label.clone(), reason: e.to_string() })?;
            Ok(Some(Frame { image, at: self.started.elapsed(), label }))
        }
        fn reconnect(&mut self) -> Result<(), SourceError> {
            self.connect()
        }
        fn describe(&self) -> String {
            format!("{} {}x{}@{}", self.settings.uri, self.settings.width, self.settings.height, self.settings.fps)
        }
    }
}

/// Scripted source for tests: each step is a frame (with its fake embedding key in the label),
/// a bad frame, or an outage.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct ScriptedSource {
    /// Remaining steps, front first.
    pub steps: std::collections::VecDeque<Result<Frame, SourceErrorKind>>,
    /// Reconnect attempts that fail before one succeeds.
    pub reconnect_failures: u32,
    /// Reconnect calls seen.
    pub reconnects: u32,
}

/// Error kinds a [`ScriptedSource`] can produce.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceErrorKind {
    /// [`SourceError::BadFrame`].
    BadFrame,
    /// [`SourceError::Unavailable`].
    Unavailable,
}

#[cfg(any(test, feature = "testing"))]
impl FrameSource for ScriptedSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        match self.steps.pop_front() {
            None => Ok(None),
            Some(Ok(f)) => Ok(Some(f)),
            Some(Err(SourceErrorKind::BadFrame)) => {
                Err(SourceError::BadFrame { label: "scripted".into(), reason: "corrupt".into() })
            }
            Some(Err(SourceErrorKind::Unavailable)) => Err(SourceError::Unavailable("unplugged".into())),
        }
    }
    fn reconnect(&mut self) -> Result<(), SourceError> {
        self.reconnects += 1;
        if self.reconnect_failures > 0 {
            self.reconnect_failures -= 1;
            return Err(SourceError::Unavailable("still unplugged".into()));
        }
        Ok(())
    }
    fn describe(&self) -> String {
        "scripted".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_replay_is_sorted_skips_non_images_and_stamps_frame_time() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.png", "a.png", "notes.txt"] {
            let img = RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]));
            if name.ends_with(".png") {
                img.save(dir.path().join(name)).unwrap();
            } else {
                std::fs::write(dir.path().join(name), "x").unwrap();
            }
        }
        std::fs::write(dir.path().join("c.jpg"), b"not a jpeg").unwrap();
        let mut s = ReplaySource::dir(dir.path(), 4.0, false).unwrap();
        assert_eq!(s.len(), 3);
        let a = s.next_frame().unwrap().unwrap();
        let b = s.next_frame().unwrap().unwrap();
        assert_eq!((a.label.as_str(), b.label.as_str()), ("a.png", "b.png"));
        assert_eq!(b.at, Duration::from_millis(250));
        assert!(matches!(s.next_frame(), Err(SourceError::BadFrame { .. })));
        assert!(s.next_frame().unwrap().is_none());
    }

    #[test]
    fn source_uris_parse_and_print_back() {
        for s in ["camera:0", "camera:USB Camera", "dir:/frames", "image:/a.jpg"] {
            assert_eq!(s.parse::<SourceUri>().unwrap().to_string(), s);
        }
        assert_eq!("camera:2".parse::<SourceUri>().unwrap(), SourceUri::CameraIndex(2));
        for bad in ["camera:", "video:0", "frames", ""] {
            assert_eq!(bad.parse::<SourceUri>(), Err(BadSourceUri(bad.into())));
        }
    }

    #[test]
    fn missing_or_empty_sources_are_fatal() {
        assert!(matches!(ReplaySource::dir(Path::new("/nonexistent-frames"), 1.0, false), Err(SourceError::Fatal(_))));
        let empty = tempfile::tempdir().unwrap();
        let e = ReplaySource::dir(empty.path(), 1.0, false).err().unwrap();
        assert!(e.to_string().contains("no images"));
        assert!(ReplaySource::image(Path::new("/nonexistent.jpg"), 1, 1.0, false).is_err());
    }
}
