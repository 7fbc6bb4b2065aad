//! Bad input gets a typed error, never a panic: empty, truncated, oversized, unknown formats, and
//! photos with no face or several faces. Needs `make setup` for the detector.

use facegate_face::{decode_image, load_image, paths, sface::sface_card, FaceError, FaceFinder, YuNet};
use image::{ImageEncoder, RgbImage};
use std::path::Path;

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

#[test]
fn undecodable_inputs_are_typed_errors() {
    assert!(matches!(decode_image(&[]), Err(FaceError::Decode(_))));
    assert!(matches!(decode_image(b"definitely not an image"), Err(FaceError::Decode(_))));
    let good = png(&RgbImage::from_pixel(64, 48, image::Rgb([10, 20, 30])));
    assert!(matches!(decode_image(&good[..good.len() / 2]), Err(FaceError::Decode(_))));
    // a PNG header declaring 20000 × 20000 pixels: refused before decoding
    let mut bomb = good.clone();
    bomb[16..20].copy_from_slice(&20_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    let crc = crc32fast::hash(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    assert!(
        matches!(decode_image(&bomb), Err(FaceError::TooLarge { width: 20_000, height: 20_000, .. })),
        "{:?}",
        decode_image(&bomb).err()
    );
    assert!(matches!(load_image(Path::new("/nonexistent/photo.jpg")), Err(FaceError::Io { .. })));
    // content decides the format, not the name
    let dir = tempfile::tempdir().unwrap();
    let misnamed = dir.path().join("photo.jpg");
    std::fs::write(&misnamed, &good).unwrap();
    assert_eq!(load_image(&misnamed).unwrap().dimensions(), (64, 48));
    // 16-bit grey converts
    let g16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_pixel(8, 8, image::Luma([65535]));
    let mut b16 = Vec::new();
    image::DynamicImage::ImageLuma16(g16)
        .write_to(&mut std::io::Cursor::new(&mut b16), image::ImageFormat::Png)
        .unwrap();
    assert_eq!(decode_image(&b16).unwrap().get_pixel(0, 0).0, [255, 255, 255]);
    // 1 × 1 decodes (the detector then finds no face)
    assert_eq!(decode_image(&png(&RgbImage::new(1, 1))).unwrap().dimensions(), (1, 1));
    // truncated JPEG: an error, never a panic
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 99])))
        .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .unwrap();
    assert_eq!(decode_image(&jpeg).unwrap().dimensions(), (64, 48));
    for cut in [2, 20, jpeg.len() / 3] {
        assert!(matches!(decode_image(&jpeg[..cut]), Err(FaceError::Decode(_))), "cut at {cut}");
    }
    // CMYK JPEG (as print workflows save them; made with ImageMagick from a red-to-blue gradient):
    // decoded to RGB with the right colours, not inverted
    let cmyk = decode_image(&std::fs::read(root().join("face/tests/fixtures/cmyk.jpg")).unwrap()).unwrap();
    assert_eq!(cmyk.dimensions(), (32, 24));
    let (top, bottom) = (cmyk.get_pixel(0, 0).0, cmyk.get_pixel(0, 23).0);
    assert!(top[0] > 200 && top[2] < 60, "top row is red: {top:?}");
    assert!(bottom[2] > 200 && bottom[0] < 60, "bottom row is blue: {bottom:?}");
    // animated GIF: the first frame is used
    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        for v in [200u8, 10] {
            let f = image::RgbaImage::from_pixel(16, 12, image::Rgba([v, v, v, 255]));
            enc.encode_frame(image::Frame::new(f)).unwrap();
        }
    }
    let first = decode_image(&gif).unwrap();
    assert_eq!(first.dimensions(), (16, 12));
    assert!(first.get_pixel(0, 0).0[0] > 150, "first frame, not the last");
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "detection logic is platform-independent; YuNet is slow to load under qemu"
)]
fn no_face_and_several_faces() {
    let finder = FaceFinder::new(YuNet::load(&root().join("models").join(paths::YUNET)).unwrap());
    let spec = sface_card().input;
    let blank = RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
    assert!(matches!(finder.find_one(&blank, &spec), Err(FaceError::NoFace)));
    assert!(matches!(finder.find_one(&RgbImage::new(1, 1), &spec), Err(FaceError::NoFace)));
    // two ORL faces side by side
    let a = load_image(&root().join("data/orl/s1/1.pgm")).unwrap();
    let b = load_image(&root().join("data/orl/s2/1.pgm")).unwrap();
    let mut both = RgbImage::from_pixel(220, 130, image::Rgb([90, 90, 90]));
    image::imageops::overlay(&mut both, &a, 10, 9);
    image::imageops::overlay(&mut both, &b, 118, 9);
    match finder.find_one(&both, &spec) {
        Err(FaceError::ManyFaces { count, scores }) => assert_eq!((count, scores.len()), (2, 2)),
        other => panic!("expected two faces, got {other:?}"),
    }
    assert!(finder.find_largest(&both, &spec).unwrap().is_some());
}
