//! Decoding photos and frames into RGB, safely: format sniffed from the content (not the file
//! name), EXIF orientation applied, grey / RGBA / 16-bit converted, and dimension and memory
//! limits set before any pixel is decoded.

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use std::io::Cursor;
use std::path::Path;

use crate::FaceError;

/// Largest image accepted, in pixels (a 50-megapixel photo).
pub const MAX_IMAGE_PIXELS: u64 = 50_000_000;
/// Largest decoder allocation allowed.
pub const MAX_DECODE_BYTES: u64 = 512 << 20;
/// Largest file read.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// Reads and decodes an image file to 8-bit RGB.
pub fn load_image(path: &Path) -> Result<RgbImage, FaceError> {
    let io = |source| FaceError::Io { path: path.display().to_string(), source };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE_BYTES {
        return Err(FaceError::Decode(format!("file is {len} bytes, over the limit of {MAX_FILE_BYTES}")));
    }
    decode_image(&std::fs::read(path).map_err(io)?)
}

/// Decodes image bytes (JPEG, PNG, PGM/PPM, BMP, WebP, GIF first frame) to 8-bit RGB.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, FaceError> {
    if bytes.is_empty() {
        return Err(FaceError::Decode("file is empty".into()));
    }
    let decode = |e: image::ImageError| FaceError::Decode(e.to_string());
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| FaceError::Decode(e.to_string()))?;
    if reader.format().is_none() {
        return Err(FaceError::Decode("unrecognised image format".into()));
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(FaceError::EmptyImage { width, height });
    }
    if u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS {
        return Err(FaceError::TooLarge { width, height, max_pixels: MAX_IMAGE_PIXELS });
    }
    let orientation = decoder.orientation().map_err(decode)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode)?;
    img.apply_orientation(orientation);
    Ok(img.to_rgb8())
}
