//! Time per frame of a frame source, decoding included: `cargo run --release -p facegate-frames
//! --example source_rate -- URI [FRAMES]` (e.g. `dir:frames/` against `pipe:ffmpeg -i
//! frames/%04d.jpg -c:v copy -f mjpeg -` on the same JPEG files). Frames are pulled as fast as the
//! source gives them (no pacing); prints JSON.

use facegate_frames::{open, SourceSettings};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let uri = args.next().expect("usage: source_rate URI [FRAMES]");
    let max: usize = args.next().map_or(200, |n| n.parse().expect("FRAMES"));
    let settings = SourceSettings::new(uri.parse().expect("source URI"));
    let t = Instant::now();
    let mut src = open(&settings).expect("source opens");
    let opened_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let (mut frames, mut bad, mut pixels) = (0usize, 0usize, 0u64);
    while frames < max {
        match src.next_frame() {
            Ok(Some(f)) => {
                frames += 1;
                pixels += u64::from(f.image.width()) * u64::from(f.image.height());
            }
            Ok(None) => break,
            Err(e) => {
                bad += 1;
                if bad > 10 {
                    panic!("source failing: {e}");
                }
            }
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "{{\"uri\": {uri:?}, \"frames\": {frames}, \"bad\": {bad}, \"open_ms\": {opened_ms:.1}, \"ms_per_frame\": {:.3}, \"megapixels_per_frame\": {:.3}}}",
        s * 1e3 / frames.max(1) as f64,
        pixels as f64 / frames.max(1) as f64 / 1e6
    );
}
