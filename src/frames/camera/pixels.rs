//! Camera pixel formats to RGB, in pure Rust: YUYV and NV12 with BT.601 integer arithmetic
//! (the limited-range encoding UVC cameras send), grey, RGB, and MJPEG through the `image`
//! crate's JPEG decoder — decoded only when the camera sends JPEG. Doing this here rather
//! than with nokhwa's decoders keeps libjpeg (mozjpeg, C and SIMD assembly) out of the build,
//! which matters for cross-compiling to ARM.

use super::v4l::PixelFormat;
use image::RgbImage;

/// A frame whose bytes do not make a picture of its mode.
#[derive(Debug, thiserror::Error)]
pub enum PixelError {
    /// Fewer bytes than the mode needs (a truncated buffer from the driver).
    #[error("{format} frame of {width}x{height} needs {need} bytes, got {got}")]
    Short {
        /// The pixel format.
        format: PixelFormat,
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// Bytes the mode needs.
        need: usize,
        /// Bytes there were.
        got: usize,
    },
    /// YUYV shares chroma between pixel pairs.
    #[error("YUYV needs an even width, got {0}")]
    OddWidth(u32),
    /// NV12 shares chroma between 2x2 blocks.
    #[error("NV12 needs even sides, got {0}x{1}")]
    OddSides(u32, u32),
    /// An MJPEG frame that is not a decodable JPEG.
    #[error("MJPEG frame: {0}")]
    Jpeg(#[from] image::ImageError),
}

fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// One pixel from limited-range BT.601 Y'CbCr.
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 298 * (y as i32 - 16);
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    [
        clamp((c + 409 * e + 128) >> 8),
        clamp((c - 100 * d - 208 * e + 128) >> 8),
        clamp((c + 516 * d + 128) >> 8),
    ]
}

/// Converts one frame; the error says what does not add up.
pub fn to_rgb(
    format: PixelFormat,
    width: u32,
    height: u32,
    bytes: &[u8],
) -> Result<RgbImage, PixelError> {
    let (w, h) = (width as usize, height as usize);
    // Bytes a mode needs, counted in 128 bits: the product of two sides a driver reports
    // cannot wrap around, on a 32-bit board or a 64-bit one.
    let pixels = u128::from(width) * u128::from(height);
    let need = |numerator: u128, denominator: u128| {
        let n = pixels * numerator / denominator;
        if (bytes.len() as u128) < n {
            Err(PixelError::Short {
                format,
                width,
                height,
                need: usize::try_from(n).unwrap_or(usize::MAX),
                got: bytes.len(),
            })
        } else {
            Ok(())
        }
    };
    // Checked before anything is allocated: the output is never larger than three times
    // the buffer that was handed over, whatever sides the driver claims.
    match format {
        PixelFormat::Yuyv if w % 2 != 0 => return Err(PixelError::OddWidth(width)),
        PixelFormat::Yuyv => need(2, 1)?,
        PixelFormat::Nv12 if w % 2 != 0 || h % 2 != 0 => {
            return Err(PixelError::OddSides(width, height))
        }
        PixelFormat::Nv12 => need(3, 2)?,
        PixelFormat::Gray => need(1, 1)?,
        PixelFormat::Rgb => need(3, 1)?,
        PixelFormat::Mjpeg => {
            return Ok(crate::frames::source::decode_image(
                bytes,
                Some(image::ImageFormat::Jpeg),
            )?)
        }
    }
    let mut out = RgbImage::new(width, height);
    match format {
        PixelFormat::Yuyv => {
            for (quad, pixels) in bytes
                .chunks_exact(4)
                .zip(out.chunks_exact_mut(6))
                .take(w * h / 2)
            {
                let (y0, u, y1, v) = (quad[0], quad[1], quad[2], quad[3]);
                pixels[..3].copy_from_slice(&yuv_to_rgb(y0, u, v));
                pixels[3..].copy_from_slice(&yuv_to_rgb(y1, u, v));
            }
        }
        PixelFormat::Nv12 => {
            let (luma, chroma) = bytes.split_at(w * h);
            let rgb: &mut [u8] = &mut out;
            for row in 0..h {
                for col in 0..w {
                    let uv = (row / 2) * w + (col / 2) * 2;
                    let px = yuv_to_rgb(luma[row * w + col], chroma[uv], chroma[uv + 1]);
                    rgb[(row * w + col) * 3..][..3].copy_from_slice(&px);
                }
            }
        }
        PixelFormat::Gray => {
            for (g, px) in bytes.iter().zip(out.chunks_exact_mut(3)) {
                px.fill(*g);
            }
        }
        PixelFormat::Rgb => {
            out.copy_from_slice(&bytes[..w * h * 3]);
        }
        // Decoded above.
        PixelFormat::Mjpeg => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bt601_reference_colours() {
        // The 8-bit BT.601 table values of white, black and the primaries; the table itself is
        // rounded, so a channel may come out one level off.
        for (yuv, rgb) in [
            ([235, 128, 128], [255, 255, 255]),
            ([16, 128, 128], [0, 0, 0]),
            ([81, 90, 240], [255, 0, 0]),
            ([145, 54, 34], [0, 255, 0]),
            ([41, 240, 110], [0, 0, 255]),
        ] {
            let got = yuv_to_rgb(yuv[0], yuv[1], yuv[2]);
            for k in 0..3 {
                assert!(
                    got[k].abs_diff(rgb[k]) <= 1,
                    "{yuv:?} -> {got:?}, expected {rgb:?}"
                );
            }
        }
    }

    #[test]
    fn yuyv_pairs_share_chroma() {
        // Two pixels: white and black sharing neutral chroma, then a red pair.
        let bytes = [235, 128, 16, 128, 81, 90, 81, 240];
        let img = to_rgb(PixelFormat::Yuyv, 4, 1, &bytes).expect("converts");
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(2, 0).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(3, 0).0, [255, 0, 0]);
    }

    #[test]
    fn nv12_chroma_covers_two_by_two() {
        // 2x2 frame: four luma values, one chroma pair (blue).
        let bytes = [41, 41, 41, 41, 240, 110];
        let img = to_rgb(PixelFormat::Nv12, 2, 2, &bytes).expect("converts");
        for p in img.pixels() {
            assert_eq!(p.0, [0, 0, 255]);
        }
    }

    #[test]
    fn grey_rgb_and_mjpeg() {
        let img = to_rgb(PixelFormat::Gray, 2, 1, &[7, 200]).expect("grey");
        assert_eq!(
            (img.get_pixel(0, 0).0, img.get_pixel(1, 0).0),
            ([7; 3], [200; 3])
        );
        let rgb = to_rgb(PixelFormat::Rgb, 1, 1, &[1, 2, 3]).expect("rgb");
        assert_eq!(rgb.get_pixel(0, 0).0, [1, 2, 3]);
        // A real JPEG, as a camera's MJPEG frame.
        let source = RgbImage::from_pixel(16, 8, image::Rgb([200, 30, 30]));
        let mut jpeg = Vec::new();
        source
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .expect("encode");
        let decoded = to_rgb(PixelFormat::Mjpeg, 16, 8, &jpeg).expect("mjpeg");
        assert_eq!(decoded.dimensions(), (16, 8));
        let p = decoded.get_pixel(8, 4).0;
        assert!(p[0] > 180 && p[1] < 60 && p[2] < 60, "{p:?}");
    }

    #[test]
    fn short_or_odd_frames_are_errors_not_panics() {
        let err = to_rgb(PixelFormat::Yuyv, 4, 2, &[0; 10]).expect_err("short");
        assert_eq!(err.to_string(), "YUYV frame of 4x2 needs 16 bytes, got 10");
        assert!(to_rgb(PixelFormat::Yuyv, 3, 2, &[0; 12])
            .expect_err("odd")
            .to_string()
            .contains("even width"));
        assert!(to_rgb(PixelFormat::Nv12, 4, 3, &[0; 18])
            .expect_err("odd")
            .to_string()
            .contains("even sides"));
        assert!(to_rgb(PixelFormat::Mjpeg, 4, 4, &[0xff, 0xd8, 0])
            .expect_err("bad")
            .to_string()
            .starts_with("MJPEG frame"));
    }

    #[test]
    fn sides_a_buffer_cannot_hold_are_refused_before_anything_is_allocated() {
        // 65534 x 65534 YUYV would be 8 GiB once converted; the buffer holds 16 bytes.
        let err = to_rgb(PixelFormat::Yuyv, 65534, 65534, &[0; 16]).expect_err("short");
        assert!(
            matches!(err, PixelError::Short { need, got: 16, .. } if need as u64 == 65534 * 65534 * 2),
            "{err}"
        );
        let err = to_rgb(PixelFormat::Nv12, u32::MAX - 1, 2, &[0; 16]).expect_err("short");
        assert!(matches!(err, PixelError::Short { .. }), "{err}");
    }
}
