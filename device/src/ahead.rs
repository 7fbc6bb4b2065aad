//! Frames embedded ahead on several threads, delivered to the door in order
//! (`model.threads` > 1).
//!
//! [`embed_ahead`] wraps a frame source and an embedding function into a pair the door uses as
//! it is: an [`AheadSource`] (a [`FrameSource`]) and an [`AheadEmbedder`] (a [`FaceEmbedder`]).
//! The source reads up to `threads` frames ahead of the door and hands frame number k (from 0) to
//! worker k mod `threads`; it returns frames, and the source's errors, in the order it read them,
//! each frame once its embedding is done. The embedder then gives the door that frame's result.
//! Decisions are therefore the same as with one thread, frame for frame, when embedding a frame
//! depends on that frame alone; a worker that keeps state (a window detector following the face)
//! sees a fixed sequence of frames (every `threads`-th), so its results do not depend on timing
//! either. Only the time per frame changes.
//!
//! Fail-secure: the door thread still makes every decision and owns the lock; a worker that
//! panics yields an error result for its frame (the door logs it, its streak is reset); if every
//! worker is gone the source reports a fatal error and the door stops with the lock secured.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use facegate_face::FaceError;

use crate::door::{FaceEmbedder, Observation};
use crate::source::{Frame, FrameSource, SourceError};

type Outcome = Result<Option<Observation>, FaceError>;

/// One item in reading order: a frame being embedded, or an error of the source.
enum Slot {
    Pending(u64),
    Failed(SourceError),
}

/// Results handed from the source to the embedder: (label, frame time, outcome), oldest first.
type Handoff = Arc<Mutex<VecDeque<(String, std::time::Duration, Outcome)>>>;

/// The source half; see the module documentation.
pub struct AheadSource<S> {
    inner: S,
    ahead: usize,
    order: VecDeque<Slot>,
    done: BTreeMap<u64, (Frame, Outcome)>,
    next_seq: u64,
    ended: bool,
    /// One queue per worker: frame k goes to worker k mod `ahead`.
    jobs: Vec<Sender<(u64, Frame)>>,
    results: Receiver<(u64, Frame, Outcome)>,
    handoff: Handoff,
    workers: Vec<std::thread::JoinHandle<()>>,
}

/// The embedder half; see the module documentation.
pub struct AheadEmbedder {
    handoff: Handoff,
}

/// Splits `inner` and `embed` into a source reading up to `threads` frames ahead, embedded on
/// `threads` worker threads, and the embedder that hands the door each frame's result. `embed`
/// is called with the worker's number (0 to `threads` − 1) and the frame.
pub fn embed_ahead<S, F>(inner: S, threads: usize, embed: F) -> (AheadSource<S>, AheadEmbedder)
where
    S: FrameSource,
    F: Fn(usize, &Frame) -> Outcome + Send + Sync + 'static,
{
    let threads = threads.max(1);
    let embed = Arc::new(embed);
    let (result_tx, results) = channel();
    let mut jobs = Vec::with_capacity(threads);
    let workers = (0..threads)
        .map(|i| {
            let (job_tx, job_rx) = channel::<(u64, Frame)>();
            jobs.push(job_tx);
            let (result_tx, embed) = (result_tx.clone(), embed.clone());
            std::thread::Builder::new()
                .name(format!("embed-{i}"))
                .spawn(move || loop {
                    let Ok((seq, frame)) = job_rx.recv() else { return };
                    let started = std::time::Instant::now();
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| embed(i, &frame)))
                        .unwrap_or_else(|_| Err(FaceError::Inference("the face pipeline panicked".into())))
                        .map(|o| o.map(|o| Observation { embed_time: Some(started.elapsed()), ..o }));
                    if result_tx.send((seq, frame, outcome)).is_err() {
                        return;
                    }
                })
                .expect("spawn an embedding thread")
        })
        .collect();
    let handoff: Handoff = Arc::default();
    let source = AheadSource {
        inner,
        ahead: threads,
        order: VecDeque::new(),
        done: BTreeMap::new(),
        next_seq: 0,
        ended: false,
        jobs,
        results,
        handoff: handoff.clone(),
        workers,
    };
    (source, AheadEmbedder { handoff })
}

impl<S: FrameSource> AheadSource<S> {
    /// Reads from the inner source until `ahead` frames are in flight, an error is queued, or
    /// it ends.
    fn fill(&mut self) {
        while !self.ended && self.in_flight() < self.ahead && !matches!(self.order.back(), Some(Slot::Failed(_))) {
            match self.inner.next_frame() {
                Ok(Some(frame)) => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let worker = (seq % self.ahead as u64) as usize;
                    match self.jobs.get(worker).map(|j| j.send((seq, frame))) {
                        Some(Ok(())) => self.order.push_back(Slot::Pending(seq)),
                        _ => self
                            .order
                            .push_back(Slot::Failed(SourceError::Fatal("the embedding threads have stopped".into()))),
                    }
                }
                Ok(None) => self.ended = true,
                // returned in its place, after the frames read before it
                Err(e) => self.order.push_back(Slot::Failed(e)),
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.order.iter().filter(|s| matches!(s, Slot::Pending(_))).count()
    }
}

impl<S: FrameSource> FrameSource for AheadSource<S> {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        self.fill();
        match self.order.pop_front() {
            None => Ok(None),
            Some(Slot::Failed(e)) => Err(e),
            Some(Slot::Pending(seq)) => {
                while !self.done.contains_key(&seq) {
                    match self.results.recv() {
                        Ok((s, frame, outcome)) => {
                            self.done.insert(s, (frame, outcome));
                        }
                        Err(_) => return Err(SourceError::Fatal("the embedding threads have stopped".into())),
                    }
                }
                let (frame, outcome) = self.done.remove(&seq).expect("just checked");
                let mut h = self.handoff.lock().map_err(|_| SourceError::Fatal("handoff poisoned".into()))?;
                // The door asks for the result of the frame just returned, or skips it (claim
                // mode without a claim): older results are never asked for again.
                h.clear();
                h.push_back((frame.label.clone(), frame.at, outcome));
                Ok(Some(frame))
            }
        }
    }

    /// Reconnects the inner source. Frames already read stay in order; an outage is queued in
    /// its place, so the door sees it after them, then calls this.
    fn reconnect(&mut self) -> Result<(), SourceError> {
        self.inner.reconnect()
    }

    fn describe(&self) -> String {
        format!("{} (embedded ahead on {} threads)", self.inner.describe(), self.ahead)
    }
}

impl<S> Drop for AheadSource<S> {
    fn drop(&mut self) {
        self.jobs.clear(); // workers see their channel close and return
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl FaceEmbedder for AheadEmbedder {
    /// The result computed for `frame` (the frame the source returned last; the result of a
    /// frame the door skipped, in claim mode without a claim, is replaced by the next one). A frame with no result is an error (the door logs it and resets
    /// its streak), never a face.
    fn embed(&mut self, frame: &Frame) -> Outcome {
        let mut h = self.handoff.lock().map_err(|_| FaceError::Inference("handoff poisoned".into()))?;
        while let Some((label, at, outcome)) = h.pop_front() {
            if label == frame.label && at == frame.at {
                return outcome;
            }
        }
        Err(FaceError::Inference(format!("no embedding for frame {}", frame.label)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{ScriptedSource, SourceErrorKind};
    use facegate_shared::Embedding;
    use image::RgbImage;
    use std::time::Duration;

    fn frame(i: u32) -> Frame {
        Frame { image: RgbImage::new(2, 2), at: Duration::from_millis(u64::from(i) * 100), label: format!("f{i}") }
    }

    /// Embeds frame `fN` as the unit vector at angle N, slower for earlier frames so workers
    /// finish out of order; `f3` has no face and `f5` panics.
    fn slow_embed(f: &Frame) -> Outcome {
        let i: u32 = f.label[1..].parse().unwrap();
        std::thread::sleep(Duration::from_millis(u64::from(20 - i.min(20)) * 2));
        match i {
            3 => Ok(None),
            5 => panic!("boom"),
            _ => Ok(Some(Observation {
                embedding: Embedding::new(vec![(i as f32).cos(), (i as f32).sin()]).unwrap(),
                face_px: i as f32,
                landmarks: facegate_face::liveness::model_landmarks(0.0, 0.5),
                patch: None,
                embed_time: None,
            })),
        }
    }

    #[test]
    fn frames_errors_and_results_come_in_reading_order() {
        let mut steps: VecDeque<Result<Frame, SourceErrorKind>> = (0..4).map(|i| Ok(frame(i))).collect();
        steps.push_back(Err(SourceErrorKind::BadFrame));
        steps.extend((4..9).map(|i| Ok(frame(i))));
        steps.push_back(Err(SourceErrorKind::Unavailable));
        steps.push_back(Ok(frame(9)));
        let inner = ScriptedSource { steps, ..Default::default() };
        let (mut src, mut emb) = embed_ahead(inner, 3, |_, f| slow_embed(f));
        let mut seen = Vec::new();
        loop {
            match src.next_frame() {
                Ok(None) => break,
                Ok(Some(f)) => {
                    let r = emb.embed(&f);
                    seen.push(match r {
                        Ok(Some(o)) => format!("{}:{}", f.label, o.face_px),
                        Ok(None) => format!("{}:none", f.label),
                        Err(e) => format!("{}:err {e}", f.label),
                    });
                }
                Err(SourceError::BadFrame { .. }) => seen.push("bad".into()),
                Err(SourceError::Unavailable(_)) => {
                    seen.push("down".into());
                    src.reconnect().unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(
            seen,
            [
                "f0:0",
                "f1:1",
                "f2:2",
                "f3:none",
                "bad",
                "f4:4",
                "f5:err inference failed: the face pipeline panicked",
                "f6:6",
                "f7:7",
                "f8:8",
                "down",
                "f9:9"
            ]
        );
    }

    /// Frame k goes to worker k mod N, whatever the timing: a worker that keeps state sees a
    /// fixed sequence of frames.
    #[test]
    fn each_worker_embeds_every_nth_frame() {
        let inner = ScriptedSource { steps: (0..10).map(|i| Ok(frame(i))).collect(), ..Default::default() };
        let seen: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
        let log = seen.clone();
        let (mut src, mut emb) = embed_ahead(inner, 3, move |w, f| {
            log.lock().unwrap().push((w, f.label.clone()));
            slow_embed(f) // f5 panics: its worker goes on
        });
        while let Ok(Some(f)) = src.next_frame() {
            let _ = emb.embed(&f);
        }
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        let mut expected: Vec<(usize, String)> = (0..10).map(|i| (i % 3, format!("f{i}"))).collect();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_skipped_frame_result_is_dropped_and_a_frame_without_one_is_an_error() {
        let inner = ScriptedSource { steps: (0..3).map(|i| Ok(frame(i))).collect(), ..Default::default() };
        let (mut src, mut emb) = embed_ahead(inner, 2, |_, f| slow_embed(f));
        let _skipped = src.next_frame().unwrap().unwrap();
        let f1 = src.next_frame().unwrap().unwrap();
        let o = emb.embed(&f1).unwrap().unwrap();
        assert_eq!(o.face_px, 1.0);
        // slow_embed sleeps (20 − 1) · 2 ms for f1: the worker's time travels with the result
        assert!(o.embed_time.unwrap() >= Duration::from_millis(38), "{:?}", o.embed_time);
        // a frame the source never delivered has no result
        assert!(emb.embed(&frame(7)).is_err());
        let f2 = src.next_frame().unwrap().unwrap();
        assert_eq!(emb.embed(&f2).unwrap().unwrap().face_px, 2.0);
        assert!(src.next_frame().unwrap().is_none());
    }
}
