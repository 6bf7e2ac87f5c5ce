//! H.264 pictures from a network camera, decoded by Cisco's OpenH264 as the system installs it
//! (Debian and Raspberry Pi OS: `libopenh264-7`), loaded when the first H.264 stream opens.
//!
//! Loading the library at run time rather than compiling OpenH264 into lookout keeps its 6.7 MB
//! of C++ and assembly source, and the cross-compilers for it, out of every ARM build, and a
//! system library gets the distribution's security updates. The `openh264` crate's bindings are
//! generated from OpenH264 2.7's headers; Debian 12's 2.3.1 headers, compared file by file,
//! differ from them only in encoder structures, so the decoder's part of the ABI
//! (`ISVCDecoder`, `SDecodingParam`, `SBufferInfo`, the decoder options) is the same in both.
//! A library reporting 2.3 or a later 2.x is accepted (the API is stable within a major
//! version); any other is refused.

use image::RgbImage;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

/// The library names tried, newest ABI first, when `LOOKOUT_OPENH264` names no file.
pub const LIBRARY_NAMES: [&str; 2] = ["libopenh264.so.8", "libopenh264.so.7"];

/// Decodes an H.264 stream (Annex B, parameter sets before each key frame) into RGB pictures.
pub struct H264Decoder {
    decoder: Decoder,
    version: String,
    max_side: u32,
}

impl H264Decoder {
    /// Loads OpenH264 (`LOOKOUT_OPENH264`, else [`LIBRARY_NAMES`] from the system's library
    /// path) and makes a decoder; pictures with a side over `max_side` are refused.
    pub fn load(max_side: u32) -> Result<Self, String> {
        let candidates: Vec<String> = match std::env::var("LOOKOUT_OPENH264") {
            Ok(path) if !path.trim().is_empty() => vec![path],
            _ => LIBRARY_NAMES.iter().map(|s| (*s).to_owned()).collect(),
        };
        let mut tried = Vec::new();
        for name in &candidates {
            // SAFETY: the library is checked to be OpenH264 2.3+ below, before a decoder is
            // made; the decoder's ABI is the same across 2.x (module docs).
            match unsafe { OpenH264API::from_blob_path_unchecked(name) } {
                Ok(api) => {
                    use openh264_sys2::API as _;
                    // SAFETY: a plain function of the loaded library, returning a struct.
                    let v = unsafe { api.WelsGetCodecVersion() };
                    if v.uMajor != 2 || v.uMinor < 3 {
                        tried.push(format!(
                            "{name} is OpenH264 {}.{}.{}, not 2.3 or a later 2.x",
                            v.uMajor, v.uMinor, v.uRevision
                        ));
                        continue;
                    }
                    let decoder = Decoder::with_api_config(api, DecoderConfig::new())
                        .map_err(|e| format!("{name}: cannot make a decoder: {e}"))?;
                    return Ok(Self {
                        decoder,
                        version: format!("OpenH264 {}.{}.{}", v.uMajor, v.uMinor, v.uRevision),
                        max_side,
                    });
                }
                Err(e) => tried.push(format!("{name}: {e}")),
            }
        }
        Err(format!(
            "H.264 needs the OpenH264 library (Debian, Raspberry Pi OS: apt install libopenh264-7), \
             or its path in LOOKOUT_OPENH264; tried {}",
            tried.join("; ")
        ))
    }

    /// Which library decodes (`OpenH264 2.3.1`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Decodes one access unit; `None` while the decoder waits for more (before the first key
    /// frame, or a frame it holds back).
    pub fn decode(&mut self, annex_b: &[u8]) -> Result<Option<RgbImage>, String> {
        let max_side = self.max_side;
        let Some(yuv) = self
            .decoder
            .decode(annex_b)
            .map_err(|e| format!("H.264 frame of {} bytes: {e}", annex_b.len()))?
        else {
            return Ok(None);
        };
        let (w, h) = yuv.dimensions();
        if w == 0 || h == 0 || w > max_side as usize || h > max_side as usize {
            return Err(format!(
                "H.264 picture of {w}x{h}: each side must be 1 to {max_side} pixels"
            ));
        }
        let mut rgb = vec![0; w * h * 3];
        yuv.write_rgb8(&mut rgb);
        // The buffer is exactly w x h x 3 bytes, so this cannot fail.
        RgbImage::from_raw(w as u32, h as u32, rgb)
            .map(Some)
            .ok_or_else(|| format!("H.264 picture of {w}x{h}: wrong buffer size"))
    }
}
