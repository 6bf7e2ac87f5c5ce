//! Pre-processing: one camera frame becomes the model's input tensor.
//!
//! A network only works on the pixels it was trained on. A letterbox that pads with 0 instead
//! of 114, a centre crop that is off by one column, BGR fed to an RGB model or a mean
//! subtracted before scaling instead of after: none of these fail loudly, they just cost
//! accuracy on the device that nobody sees in a benchmark. So this module implements the
//! manifest's [`Preprocess`] to the letter, matching the Python/Pillow reference used in
//! training (the tests compare model scores within 1e-3), and the hand-computed tests below pin
//! every step.
//!
//! For a frame of `w`×`h` pixels and a model input of `W`×`H`:
//!
//! - **stretch** resizes the whole frame to `W`×`H`; the aspect ratio is not kept.
//! - **letterbox** scales by `r = min(W/w, H/h)` to `nw = round(w*r)` × `nh = round(h*r)` (each
//!   clamped to `[1, W]` / `[1, H]`), and places that at `left = (W-nw)/2`, `top = (H-nh)/2`
//!   (integer division) on a canvas filled with `pad_value` in every channel. The pad is
//!   normalised like any pixel.
//! - **center-crop** cuts `crop_w = min(w, round(h*W/H))` × `crop_h = min(h, round(w*H/W))` at
//!   `((w-crop_w)/2, (h-crop_h)/2)` and resizes that region to `W`×`H`. The crop is a window
//!   the resampler reads through, never a copy, and its edges are the image's edges for the
//!   filter (the reference crops, then resizes).
//!
//! `round` is half up, `floor(x + 0.5)` in f64, exactly as the reference implementation
//! (`tools/preprocess.py`, `round_half_up`) computes it, and not Python's half-to-even `round`:
//! a 641-pixel-wide frame halved is 321 pixels wide on both sides.
//!
//! Resizing is a bit-exact port of Pillow 13.0.0's `Image.resize`: see the `resample` submodule.
//!
//! Colour comes after resizing: `rgb` keeps the order, `bgr` swaps R and B, `gray` is
//! `0.299R + 0.587G + 0.114B` in f32 from the resized u8 pixels. For f32 inputs each value is
//! `(pixel * scale - mean[c]) / std[c]`, with `c` the model's channel (so after a BGR swap
//! `mean[0]` applies to blue). Since pixels are u8, that is a 256-entry table per channel,
//! computed once; gray values are fractional and are normalised per pixel. u8 inputs take raw
//! pixels (the manifest forces identity normalisation for them); gray is rounded half to even
//! and clamped.
//!
//! Nothing is allocated per frame once the frame size is stable: the filter taps, the
//! intermediate and destination images live in the [`Preprocessor`] and are rebuilt only when
//! the frame size changes.

use crate::manifest::{ColorOrder, InputSpec, Interpolation, Layout, Preprocess, ResizeMode};

mod resample;

use resample::Resampler;

/// Where the model input came from in the source frame.
///
/// The forward map, per axis, is `model = source * scale + offset`, in continuous pixel
/// coordinates (pixel edges, so `0` is the left edge of the first pixel and `source_width` the
/// right edge of the last). Writing `crop` for the centre-crop origin and `pad` for the
/// letterbox margin, `offset = pad - crop * scale`:
///
/// - stretch: `scale = W/w`, `offset = 0`;
/// - letterbox: `scale = r` on both axes, `offset = left` (resp. `top`). Not `nw/w`: the
///   reference (`tools/preprocess.py`) and `models/README.md` divide by `r`, and the two differ
///   by the rounding of `nw`, under half a pixel across the frame;
/// - center-crop: `scale = W/crop_w`, `offset = -crop_left * scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputTransform {
    /// Width of the source frame in pixels.
    pub source_width: u32,
    /// Height of the source frame in pixels.
    pub source_height: u32,
    /// Model-input pixels per source pixel, horizontally.
    pub scale_x: f32,
    /// Model-input pixels per source pixel, vertically.
    pub scale_y: f32,
    /// Model-input x of source x = 0 (letterbox pad minus the scaled crop origin).
    pub offset_x: f32,
    /// Model-input y of source y = 0 (letterbox pad minus the scaled crop origin).
    pub offset_y: f32,
}

impl InputTransform {
    /// Maps a point in model-input pixels to source pixels:
    /// `source = (model - offset) / scale` per axis. Not clamped: a point in the letterbox pad
    /// maps outside the frame.
    pub fn to_source(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x - self.offset_x) / self.scale_x,
            (y - self.offset_y) / self.scale_y,
        )
    }

    /// Maps a box `[x0, y0, x1, y1]` in model-input pixels to source pixels, clamped to the
    /// frame (`0..=source_width`, `0..=source_height`), since a detector may put a box edge in
    /// the letterbox pad or beyond the input.
    pub fn box_to_source(&self, b: [f32; 4]) -> [f32; 4] {
        let (x0, y0) = self.to_source(b[0], b[1]);
        let (x1, y1) = self.to_source(b[2], b[3]);
        let (w, h) = (self.source_width as f32, self.source_height as f32);
        [
            x0.clamp(0.0, w),
            y0.clamp(0.0, h),
            x1.clamp(0.0, w),
            y1.clamp(0.0, h),
        ]
    }
}

mod sealed {
    /// Keeps [`super::InputElement`] to the two tensor types the engine supports.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u8 {}
}

/// Values written into the input tensor: `f32` (normalised, `(pixel * scale - mean[c]) /
/// std[c]`) and `u8` (the raw pixel; gray rounded half to even). Sealed: the engine has
/// buffers of exactly these two types.
pub trait InputElement: Copy + Default + 'static + sealed::Sealed {
    /// Picks this type's per-channel lookup tables out of the precomputed ones.
    #[doc(hidden)]
    fn tables<'a>(f32s: &'a [[f32; 256]; 3], u8s: &'a [[u8; 256]; 3]) -> &'a [[Self; 256]; 3];

    /// The tensor value of a fractional gray level (0–255 units).
    #[doc(hidden)]
    fn from_luma(luma: f32, norm: Norm) -> Self;
}

/// Normalisation of one channel: `(value * scale - mean) / std`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Norm {
    scale: f32,
    mean: f32,
    std: f32,
}

impl Norm {
    fn apply(self, value: f32) -> f32 {
        // Written exactly as the manifest states it (not as a fused `value * a + b`) so that
        // the float rounding matches the reference implementation.
        (value * self.scale - self.mean) / self.std
    }
}

impl InputElement for f32 {
    fn tables<'a>(f32s: &'a [[f32; 256]; 3], _: &'a [[u8; 256]; 3]) -> &'a [[f32; 256]; 3] {
        f32s
    }

    fn from_luma(luma: f32, norm: Norm) -> f32 {
        norm.apply(luma)
    }
}

impl InputElement for u8 {
    fn tables<'a>(_: &'a [[f32; 256]; 3], u8s: &'a [[u8; 256]; 3]) -> &'a [[u8; 256]; 3] {
        u8s
    }

    fn from_luma(luma: f32, _: Norm) -> u8 {
        // Half to even, as the reference's np.round does; the weights sum to 1 so only float
        // error can push white above 255.
        luma.round_ties_even().clamp(0.0, 255.0) as u8
    }
}

/// Why a frame could not be turned into the input tensor.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The frame has no pixels.
    #[error("frame is {width}x{height}, there is nothing to pre-process")]
    EmptyFrame {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
    /// The frame's pixel buffer is shorter than its dimensions say.
    #[error("frame buffer holds {got} bytes, a {width}x{height} RGB frame needs {expected}")]
    FrameBuffer {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// The output buffer does not have one element per input-tensor element.
    #[error("input buffer has {got} elements, the input tensor has {expected}")]
    OutputLength {
        /// Product of the input shape.
        expected: usize,
        /// Length of the buffer passed in.
        got: usize,
    },
    /// The input spec and pre-processing disagree (the manifest validation should have caught
    /// it; reported here rather than feeding the model a guess).
    #[error("input spec and preprocess disagree: {0}")]
    Spec(String),
}

/// RGB pixels, 3 bytes each, borrowed: rows of `width` pixels `stride` bytes apart.
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    /// From the first pixel of the first row to the last pixel of the last row.
    pub pixels: &'a [u8],
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Bytes from one row to the next.
    pub stride: usize,
}

impl<'a> ImageView<'a> {
    /// A whole image.
    pub fn of(image: &'a image::RgbImage) -> Self {
        let (w, h) = image.dimensions();
        Self {
            pixels: image.as_raw(),
            width: w as usize,
            height: h as usize,
            stride: w as usize * 3,
        }
    }

    /// Row `y`, `width * 3` bytes.
    pub fn row(&self, y: usize) -> &'a [u8] {
        &self.pixels[y * self.stride..y * self.stride + self.width * 3]
    }
}

/// An axis-aligned pixel rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    left: u32,
    top: u32,
    width: u32,
    height: u32,
}

/// Everything about a frame-to-input mapping that depends only on the two sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Geometry {
    /// Region of the source frame that is used.
    crop: Rect,
    /// Where that region, resized, lands in the model input.
    place: Rect,
    /// The same mapping, for the decoder.
    transform: InputTransform,
}

impl Geometry {
    fn new(mode: ResizeMode, (w, h): (u32, u32), (dst_w, dst_h): (u32, u32)) -> Self {
        let (wf, hf, dst_wf, dst_hf) = (w as f64, h as f64, dst_w as f64, dst_h as f64);
        let full = Rect {
            left: 0,
            top: 0,
            width: w,
            height: h,
        };
        let whole_input = Rect {
            left: 0,
            top: 0,
            width: dst_w,
            height: dst_h,
        };
        // Each arm gives the source region, where it lands, and the scale the reference uses to
        // map boxes back (the resize ratio, except for letterbox: see `InputTransform`).
        let (crop, place, scale_x, scale_y) = match mode {
            ResizeMode::Stretch => (full, whole_input, dst_wf / wf, dst_hf / hf),
            ResizeMode::Letterbox => {
                let r = (dst_wf / wf).min(dst_hf / hf);
                let nw = round_half_up(wf * r).clamp(1, dst_w);
                let nh = round_half_up(hf * r).clamp(1, dst_h);
                let place = Rect {
                    left: (dst_w - nw) / 2,
                    top: (dst_h - nh) / 2,
                    width: nw,
                    height: nh,
                };
                (full, place, r, r)
            }
            ResizeMode::CenterCrop => {
                // (h*W)/H, in this order, is what Python's `h * W / H` evaluates; both
                // products are exact in f64. The lower bound 1 only guards frames far thinner
                // than the input (e.g. 1000x1 into 1x1000), where the reference would crop to 0.
                let crop_w = round_half_up(hf * dst_wf / dst_hf).clamp(1, w);
                let crop_h = round_half_up(wf * dst_hf / dst_wf).clamp(1, h);
                let crop = Rect {
                    left: (w - crop_w) / 2,
                    top: (h - crop_h) / 2,
                    width: crop_w,
                    height: crop_h,
                };
                let (sx, sy) = (dst_wf / crop_w as f64, dst_hf / crop_h as f64);
                (crop, whole_input, sx, sy)
            }
        };
        let transform = InputTransform {
            source_width: w,
            source_height: h,
            scale_x: scale_x as f32,
            scale_y: scale_y as f32,
            offset_x: (place.left as f64 - crop.left as f64 * scale_x) as f32,
            offset_y: (place.top as f64 - crop.top as f64 * scale_y) as f32,
        };
        Self {
            crop,
            place,
            transform,
        }
    }

    /// Whether pixels must be resampled, or can be read straight from the frame.
    fn resamples(&self) -> bool {
        (self.crop.width, self.crop.height) != (self.place.width, self.place.height)
    }
}

/// The reference's `round_half_up`: `floor(x + 0.5)`, saturating into u32.
fn round_half_up(value: f64) -> u32 {
    // `as` saturates (and maps NaN to 0), which the callers then clamp into range.
    (value + 0.5).floor() as u32
}

/// ITU-R 601 luma in f32, in the reference's evaluation order.
fn luma(pixel: &[u8]) -> f32 {
    0.299 * f32::from(pixel[0]) + 0.587 * f32::from(pixel[1]) + 0.114 * f32::from(pixel[2])
}

/// The resized (or directly borrowed) RGB pixels that go into the tensor.
struct Pixels<'a> {
    buffer: &'a [u8],
    /// Bytes per row of `buffer`.
    stride: usize,
    /// Window inside `buffer`, in pixels.
    rect: Rect,
}

impl Pixels<'_> {
    /// Row `y` of the window, `rect.width * 3` bytes.
    fn row(&self, y: usize) -> &[u8] {
        let start = (self.rect.top as usize + y) * self.stride + self.rect.left as usize * 3;
        &self.buffer[start..start + self.rect.width as usize * 3]
    }
}

/// The channel-independent part of writing the tensor.
struct Target {
    width: usize,
    height: usize,
    layout: Layout,
    color: ColorOrder,
    /// Where the image lands; the rest is pad.
    place: Rect,
}

/// Turns frames into the model's input tensor, reusing its buffers from frame to frame.
pub struct Preprocessor {
    width: u32,
    height: u32,
    layout: Layout,
    color: ColorOrder,
    mode: ResizeMode,
    interpolation: Interpolation,
    pad_value: u8,
    /// Per model channel: the f32 tensor value of each u8 pixel value.
    f32_tables: [[f32; 256]; 3],
    /// Identity tables, so that u8 inputs share the f32 code path.
    u8_tables: [[u8; 256]; 3],
    /// Normalisation of channel 0, for gray (which cannot use a table).
    gray_norm: Norm,
    /// Product of the input shape: the length `run` expects.
    expected_len: usize,
    /// Set when the spec cannot be served; every `run` reports it.
    spec_error: Option<String>,
    /// Geometry for the last frame size, recomputed when the size changes.
    geometry: Option<Geometry>,
    /// Filter taps and image buffers, rebuilt when the frame size changes.
    resampler: Resampler,
}

impl Preprocessor {
    /// Builds the pre-processor for a model input. The manifest has already been validated;
    /// if the two still disagree (wrong channel count, missing mean/std), every [`run`]
    /// returns [`PreprocessError::Spec`] rather than guessing.
    ///
    /// [`run`]: Self::run
    pub fn new(input: &InputSpec, pre: &Preprocess) -> Self {
        let channels = input.channels();
        let width = u32::try_from(input.width()).unwrap_or(0);
        let height = u32::try_from(input.height()).unwrap_or(0);
        let expected_len = input
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .unwrap_or(usize::MAX);

        let want_channels = match pre.color {
            ColorOrder::Gray => 1,
            ColorOrder::Rgb | ColorOrder::Bgr => 3,
        };
        let spec_error = if width == 0 || height == 0 {
            Some(format!(
                "input shape {:?} has a zero or oversized side",
                input.shape
            ))
        } else if channels != want_channels {
            Some(format!(
                "input has {channels} channels, color {:?} needs {want_channels}",
                pre.color
            ))
        } else if pre.mean.len() != channels || pre.std.len() != channels {
            Some(format!(
                "mean has {} and std {} values for {channels} channels",
                pre.mean.len(),
                pre.std.len()
            ))
        } else if Some(expected_len) != (width as usize).checked_mul(height as usize * channels) {
            Some(format!("input shape {:?} is not batch 1", input.shape))
        } else {
            None
        };

        let norm = |c: usize| Norm {
            scale: pre.scale,
            mean: pre.mean.get(c).copied().unwrap_or(0.0),
            std: pre.std.get(c).copied().unwrap_or(1.0),
        };
        let f32_tables: [[f32; 256]; 3] =
            std::array::from_fn(|c| std::array::from_fn(|v| norm(c).apply(v as f32)));
        let u8_tables: [[u8; 256]; 3] = [std::array::from_fn(|v| v as u8); 3];

        Self {
            width,
            height,
            layout: input.layout,
            color: pre.color,
            mode: pre.resize,
            interpolation: pre.interpolation,
            pad_value: pre.pad_value,
            f32_tables,
            u8_tables,
            gray_norm: norm(0),
            expected_len,
            spec_error,
            geometry: None,
            resampler: Resampler::default(),
        }
    }

    /// The length [`run`](Self::run) expects of its output: the product of the input shape.
    pub fn input_len(&self) -> usize {
        self.expected_len
    }

    /// Writes the model input for `frame` into `out` (length = product of the input shape,
    /// layout per the [`InputSpec`]) and returns the mapping back to frame pixels.
    pub fn run<T: InputElement>(
        &mut self,
        frame: &image::RgbImage,
        out: &mut [T],
    ) -> Result<InputTransform, PreprocessError> {
        if let Some(message) = &self.spec_error {
            return Err(PreprocessError::Spec(message.clone()));
        }
        let (w, h) = frame.dimensions();
        if w == 0 || h == 0 {
            return Err(PreprocessError::EmptyFrame {
                width: w,
                height: h,
            });
        }
        if out.len() != self.expected_len {
            return Err(PreprocessError::OutputLength {
                expected: self.expected_len,
                got: out.len(),
            });
        }
        let frame_len = (w as usize)
            .checked_mul(h as usize)
            .and_then(|n| n.checked_mul(3))
            .unwrap_or(usize::MAX);
        let raw = frame.as_raw();
        let frame_bytes = raw.get(..frame_len).ok_or(PreprocessError::FrameBuffer {
            width: w,
            height: h,
            expected: frame_len,
            got: raw.len(),
        })?;

        let geometry = self.geometry_for(w, h);
        // The crop window is read in place; for the filter its edges are the image's edges.
        let window = Pixels {
            buffer: frame_bytes,
            stride: w as usize * 3,
            rect: geometry.crop,
        };
        let pixels = if geometry.resamples() {
            let (crop, place) = (geometry.crop, geometry.place);
            self.resampler.prepare(
                self.interpolation,
                (crop.width as usize, crop.height as usize),
                (place.width as usize, place.height as usize),
            );
            Pixels {
                buffer: self.resampler.run(&window),
                stride: place.width as usize * 3,
                rect: Rect {
                    left: 0,
                    top: 0,
                    ..place
                },
            }
        } else {
            // Same size: the frame (or the crop window in it) is the resized image.
            window
        };

        let target = Target {
            width: self.width as usize,
            height: self.height as usize,
            layout: self.layout,
            color: self.color,
            place: geometry.place,
        };
        let tables = T::tables(&self.f32_tables, &self.u8_tables);
        write_tensor(
            &target,
            &pixels,
            tables,
            self.gray_norm,
            self.pad_value,
            out,
        );
        Ok(geometry.transform)
    }

    /// The image the last [`run`](Self::run) put into the tensor, before padding and
    /// normalisation: the resampled frame, or its crop window when no resampling was needed.
    /// `frame` must be the frame that run was given. `None` before any run or for another
    /// frame size.
    pub fn model_view<'a>(&'a self, frame: &'a image::RgbImage) -> Option<ImageView<'a>> {
        let g = self.geometry?;
        let (w, h) = frame.dimensions();
        if (g.transform.source_width, g.transform.source_height) != (w, h) {
            return None;
        }
        if g.resamples() {
            let (width, height) = (g.place.width as usize, g.place.height as usize);
            let pixels = self.resampler.out.get(..width * height * 3)?;
            Some(ImageView {
                pixels,
                width,
                height,
                stride: width * 3,
            })
        } else {
            let stride = w as usize * 3;
            let start = g.crop.top as usize * stride + g.crop.left as usize * 3;
            let (width, height) = (g.crop.width as usize, g.crop.height as usize);
            let end = start + height.saturating_sub(1) * stride + width * 3;
            Some(ImageView {
                pixels: frame.as_raw().get(start..end)?,
                width,
                height,
                stride,
            })
        }
    }

    /// The geometry for a `w`×`h` frame, cached for the common case of a fixed camera size.
    fn geometry_for(&mut self, w: u32, h: u32) -> Geometry {
        match self.geometry {
            Some(g) if (g.transform.source_width, g.transform.source_height) == (w, h) => g,
            _ => {
                let g = Geometry::new(self.mode, (w, h), (self.width, self.height));
                self.geometry = Some(g);
                g
            }
        }
    }

    /// Addresses of the resampled image and the intermediate one (null while unused), to check
    /// that they are reused.
    #[cfg(test)]
    fn buffer_ptrs(&self) -> (*const u8, *const u8) {
        let ptr = |v: &Vec<u8>| {
            if v.is_empty() {
                std::ptr::null()
            } else {
                v.as_ptr()
            }
        };
        (ptr(&self.resampler.out), ptr(&self.resampler.temp))
    }
}

/// Writes pad and pixels into the tensor. Every element of `out` is written exactly once.
fn write_tensor<T: InputElement>(
    target: &Target,
    pixels: &Pixels<'_>,
    tables: &[[T; 256]; 3],
    gray_norm: Norm,
    pad_value: u8,
    out: &mut [T],
) {
    let (width, height) = (target.width, target.height);
    let place = target.place;
    let (left, top) = (place.left as usize, place.top as usize);
    let (right, bottom) = (left + place.width as usize, top + place.height as usize);
    // Source row for output row `y`, or None in the pad above or below the image.
    let source_row = |y: usize| (top..bottom).contains(&y).then(|| pixels.row(y - top));

    let order = match target.color {
        ColorOrder::Gray => {
            // One channel: NCHW and NHWC are the same memory layout.
            let pad = T::from_luma(luma(&[pad_value; 3]), gray_norm);
            for (y, row) in out.chunks_exact_mut(width).take(height).enumerate() {
                let Some(src) = source_row(y) else {
                    row.fill(pad);
                    continue;
                };
                row[..left].fill(pad);
                row[right..].fill(pad);
                for (o, p) in row[left..right].iter_mut().zip(src.chunks_exact(3)) {
                    *o = T::from_luma(luma(p), gray_norm);
                }
            }
            return;
        }
        ColorOrder::Rgb => [0, 1, 2],
        ColorOrder::Bgr => [2, 1, 0],
    };
    // The pad is the pixel (pad, pad, pad), normalised per model channel.
    let pad: [T; 3] = std::array::from_fn(|c| tables[c][usize::from(pad_value)]);

    match target.layout {
        Layout::Nchw => {
            for (c, plane) in out.chunks_exact_mut(width * height).take(3).enumerate() {
                let (table, s) = (&tables[c], order[c]);
                for (y, row) in plane.chunks_exact_mut(width).enumerate() {
                    let Some(src) = source_row(y) else {
                        row.fill(pad[c]);
                        continue;
                    };
                    row[..left].fill(pad[c]);
                    row[right..].fill(pad[c]);
                    for (o, p) in row[left..right].iter_mut().zip(src.chunks_exact(3)) {
                        *o = table[usize::from(p[s])];
                    }
                }
            }
        }
        Layout::Nhwc => {
            let [t0, t1, t2] = tables;
            for (y, row) in out.chunks_exact_mut(width * 3).take(height).enumerate() {
                let Some(src) = source_row(y) else {
                    for o in row.chunks_exact_mut(3) {
                        o.copy_from_slice(&pad);
                    }
                    continue;
                };
                for o in row[..left * 3].chunks_exact_mut(3) {
                    o.copy_from_slice(&pad);
                }
                for o in row[right * 3..].chunks_exact_mut(3) {
                    o.copy_from_slice(&pad);
                }
                let image = row[left * 3..right * 3].chunks_exact_mut(3);
                for (o, p) in image.zip(src.chunks_exact(3)) {
                    o[0] = t0[usize::from(p[order[0]])];
                    o[1] = t1[usize::from(p[order[1]])];
                    o[2] = t2[usize::from(p[order[2]])];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::InputDtype;

    /// An input spec of `w`×`h`×`c` in the given layout.
    pub(super) fn spec(layout: Layout, w: usize, h: usize, c: usize) -> InputSpec {
        let shape = match layout {
            Layout::Nchw => [1, c, h, w],
            Layout::Nhwc => [1, h, w, c],
        };
        InputSpec {
            name: "input".into(),
            shape,
            dtype: InputDtype::F32,
            layout,
        }
    }

    fn pre(
        resize: ResizeMode,
        color: ColorOrder,
        scale: f32,
        mean: &[f32],
        std: &[f32],
    ) -> Preprocess {
        Preprocess {
            resize,
            interpolation: Interpolation::Bilinear,
            pad_value: 114,
            color,
            scale,
            mean: mean.to_vec(),
            std: std.to_vec(),
            // Not read by the pre-processor; the manifest checks it.
            range: Some([0.0, 255.0]),
        }
    }

    /// Identity normalisation: f32 outputs equal the pixel values.
    pub(super) fn raw(resize: ResizeMode, color: ColorOrder) -> Preprocess {
        let n = if color == ColorOrder::Gray { 1 } else { 3 };
        pre(resize, color, 1.0, &vec![0.0; n], &vec![1.0; n])
    }

    pub(super) fn image(w: u32, h: u32, pixels: &[[u8; 3]]) -> image::RgbImage {
        assert_eq!(pixels.len(), (w * h) as usize);
        image::RgbImage::from_raw(w, h, pixels.concat()).expect("test image size")
    }

    pub(super) fn run<T: InputElement>(
        p: &mut Preprocessor,
        frame: &image::RgbImage,
        len: usize,
    ) -> (Vec<T>, InputTransform) {
        let mut out = vec![T::default(); len];
        let t = p.run(frame, &mut out).expect("preprocess");
        (out, t)
    }

    fn assert_close(got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "element {i}: got {g}, want {w}\ngot  {got:?}\nwant {want:?}"
            );
        }
    }

    fn assert_point(got: (f32, f32), want: (f32, f32)) {
        assert!(
            (got.0 - want.0).abs() < 1e-3 && (got.1 - want.1).abs() < 1e-3,
            "got {got:?}, want {want:?}"
        );
    }

    /// 4x2 frame whose pixel k (1..=8, raster order) is R = 10+2k, G = 20+4(10+k),
    /// B = 30+5(20+k), so that with mean [10, 20, 30] and std [2, 4, 5] it normalises to
    /// R = k, G = 10+k, B = 20+k.
    fn frame_4x2() -> image::RgbImage {
        let pixels: Vec<[u8; 3]> = (1..=8u8)
            .map(|k| [10 + 2 * k, 60 + 4 * k, 130 + 5 * k])
            .collect();
        image(4, 2, &pixels)
    }

    fn pre_4x2(resize: ResizeMode) -> Preprocess {
        pre(
            resize,
            ColorOrder::Rgb,
            1.0,
            &[10.0, 20.0, 30.0],
            &[2.0, 4.0, 5.0],
        )
    }

    // Pad 114 normalised: (114-10)/2, (114-20)/4, (114-30)/5.
    const PR: f32 = 52.0;
    const PG: f32 = 23.5;
    const PB: f32 = 16.8;

    #[test]
    fn letterbox_wide_frame_pads_rows_nchw() {
        let mut p = Preprocessor::new(
            &spec(Layout::Nchw, 4, 4, 3),
            &pre_4x2(ResizeMode::Letterbox),
        );
        let (out, t) = run::<f32>(&mut p, &frame_4x2(), 48);
        #[rustfmt::skip]
        let want = [
            // R
            PR, PR, PR, PR,
            1.0, 2.0, 3.0, 4.0,
            5.0, 6.0, 7.0, 8.0,
            PR, PR, PR, PR,
            // G
            PG, PG, PG, PG,
            11.0, 12.0, 13.0, 14.0,
            15.0, 16.0, 17.0, 18.0,
            PG, PG, PG, PG,
            // B
            PB, PB, PB, PB,
            21.0, 22.0, 23.0, 24.0,
            25.0, 26.0, 27.0, 28.0,
            PB, PB, PB, PB,
        ];
        assert_close(&out, &want, 1e-6);
        let expected = InputTransform {
            source_width: 4,
            source_height: 2,
            scale_x: 1.0,
            scale_y: 1.0,
            offset_x: 0.0,
            offset_y: 1.0,
        };
        assert_eq!(t, expected);
        assert!(p.buffer_ptrs().0.is_null(), "r = 1 must not resample");
    }

    #[test]
    fn letterbox_wide_frame_pads_rows_nhwc() {
        let mut p = Preprocessor::new(
            &spec(Layout::Nhwc, 4, 4, 3),
            &pre_4x2(ResizeMode::Letterbox),
        );
        let (out, _) = run::<f32>(&mut p, &frame_4x2(), 48);
        #[rustfmt::skip]
        let want = [
            PR, PG, PB,  PR, PG, PB,  PR, PG, PB,  PR, PG, PB,
            1.0, 11.0, 21.0,  2.0, 12.0, 22.0,  3.0, 13.0, 23.0,  4.0, 14.0, 24.0,
            5.0, 15.0, 25.0,  6.0, 16.0, 26.0,  7.0, 17.0, 27.0,  8.0, 18.0, 28.0,
            PR, PG, PB,  PR, PG, PB,  PR, PG, PB,  PR, PG, PB,
        ];
        assert_close(&out, &want, 1e-6);
    }

    #[test]
    fn letterbox_tall_frame_pads_columns_u8() {
        // 2x4 into 4x4: r = min(2, 1) = 1, nw = 2, left = 1.
        let pixels: Vec<[u8; 3]> = (1..=8u8).map(|k| [k, 10 + k, 20 + k]).collect();
        let frame = image(2, 4, &pixels);
        let mut p = Preprocessor::new(
            &spec(Layout::Nchw, 4, 4, 3),
            &raw(ResizeMode::Letterbox, ColorOrder::Rgb),
        );
        let (out, t) = run::<u8>(&mut p, &frame, 48);
        #[rustfmt::skip]
        let want: [u8; 48] = [
            114, 1, 2, 114,
            114, 3, 4, 114,
            114, 5, 6, 114,
            114, 7, 8, 114,

            114, 11, 12, 114,
            114, 13, 14, 114,
            114, 15, 16, 114,
            114, 17, 18, 114,

            114, 21, 22, 114,
            114, 23, 24, 114,
            114, 25, 26, 114,
            114, 27, 28, 114,
        ];
        assert_eq!(out, want);
        assert_eq!(
            (t.offset_x, t.offset_y, t.scale_x, t.scale_y),
            (1.0, 0.0, 1.0, 1.0)
        );

        let mut p = Preprocessor::new(
            &spec(Layout::Nhwc, 4, 4, 3),
            &raw(ResizeMode::Letterbox, ColorOrder::Rgb),
        );
        let (out, _) = run::<u8>(&mut p, &frame, 48);
        #[rustfmt::skip]
        let want: [u8; 48] = [
            114, 114, 114,  1, 11, 21,  2, 12, 22,  114, 114, 114,
            114, 114, 114,  3, 13, 23,  4, 14, 24,  114, 114, 114,
            114, 114, 114,  5, 15, 25,  6, 16, 26,  114, 114, 114,
            114, 114, 114,  7, 17, 27,  8, 18, 28,  114, 114, 114,
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn center_crop_takes_middle_columns() {
        // 6x4 into 4x4: crop_w = min(6, round(4*4/4)) = 4, crop_h = min(4, round(6*4/4)) = 4,
        // left = 1: exactly columns 1..5, no scaling. Pixel (x, y) is p = 10y + x in every
        // channel; mean [0, 50, 0], std [1, 10, -1] make it (p, (p-50)/10, -p).
        let pixels: Vec<[u8; 3]> = (0..4u8)
            .flat_map(|y| (0..6u8).map(move |x| [10 * y + x; 3]))
            .collect();
        let frame = image(6, 4, &pixels);
        let pre = pre(
            ResizeMode::CenterCrop,
            ColorOrder::Rgb,
            1.0,
            &[0.0, 50.0, 0.0],
            &[1.0, 10.0, -1.0],
        );

        let mut p = Preprocessor::new(&spec(Layout::Nchw, 4, 4, 3), &pre);
        let (out, t) = run::<f32>(&mut p, &frame, 48);
        #[rustfmt::skip]
        let want = [
            1.0, 2.0, 3.0, 4.0,
            11.0, 12.0, 13.0, 14.0,
            21.0, 22.0, 23.0, 24.0,
            31.0, 32.0, 33.0, 34.0,

            -4.9, -4.8, -4.7, -4.6,
            -3.9, -3.8, -3.7, -3.6,
            -2.9, -2.8, -2.7, -2.6,
            -1.9, -1.8, -1.7, -1.6,

            -1.0, -2.0, -3.0, -4.0,
            -11.0, -12.0, -13.0, -14.0,
            -21.0, -22.0, -23.0, -24.0,
            -31.0, -32.0, -33.0, -34.0,
        ];
        assert_close(&out, &want, 1e-5);
        assert_eq!(
            (t.scale_x, t.scale_y, t.offset_x, t.offset_y),
            (1.0, 1.0, -1.0, 0.0)
        );
        assert_point(t.to_source(0.0, 0.0), (1.0, 0.0));
        assert!(
            p.buffer_ptrs().0.is_null(),
            "same-size crop must not resample"
        );

        let mut p = Preprocessor::new(&spec(Layout::Nhwc, 4, 4, 3), &pre);
        let (out, _) = run::<f32>(&mut p, &frame, 48);
        #[rustfmt::skip]
        let want = [
            1.0, -4.9, -1.0,   2.0, -4.8, -2.0,   3.0, -4.7, -3.0,   4.0, -4.6, -4.0,
            11.0, -3.9, -11.0, 12.0, -3.8, -12.0, 13.0, -3.7, -13.0, 14.0, -3.6, -14.0,
            21.0, -2.9, -21.0, 22.0, -2.8, -22.0, 23.0, -2.7, -23.0, 24.0, -2.6, -24.0,
            31.0, -1.9, -31.0, 32.0, -1.8, -32.0, 33.0, -1.7, -33.0, 34.0, -1.6, -34.0,
        ];
        assert_close(&out, &want, 1e-5);
    }

    #[test]
    fn stretch_same_size_copies_with_imagenet_normalisation() {
        let frame = image(
            2,
            2,
            &[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0]],
        );
        let pre = pre(
            ResizeMode::Stretch,
            ColorOrder::Rgb,
            1.0 / 255.0,
            &[0.485, 0.456, 0.406],
            &[0.229, 0.224, 0.225],
        );
        // 0 -> -mean/std, 255 -> (1-mean)/std.
        let (r0, r1) = (-2.117_904, 2.248_908);
        let (g0, g1) = (-2.035_714, 2.428_571);
        let (b0, b1) = (-1.804_444, 2.64);

        let mut p = Preprocessor::new(&spec(Layout::Nchw, 2, 2, 3), &pre);
        let (out, t) = run::<f32>(&mut p, &frame, 12);
        assert_close(
            &out,
            &[r0, r1, r1, r0, g0, g1, g0, g1, b0, b1, b0, b0],
            1e-5,
        );
        assert_eq!(
            (t.scale_x, t.scale_y, t.offset_x, t.offset_y),
            (1.0, 1.0, 0.0, 0.0)
        );

        let mut p = Preprocessor::new(&spec(Layout::Nhwc, 2, 2, 3), &pre);
        let (out, _) = run::<f32>(&mut p, &frame, 12);
        assert_close(
            &out,
            &[r0, g0, b0, r1, g1, b1, r1, g0, b0, r0, g1, b0],
            1e-5,
        );
    }

    #[test]
    fn uniform_frame_resizes_to_the_same_colour_with_letterbox_pad() {
        // 7x5 into 4x4: r = min(4/7, 4/5) = 4/7, nw = 4, nh = round(2.857) = 3, top = 0.
        let frame = image(7, 5, &[[30, 60, 90]; 35]);
        for interpolation in [Interpolation::Bilinear, Interpolation::Nearest] {
            let mut pre = raw(ResizeMode::Letterbox, ColorOrder::Rgb);
            pre.interpolation = interpolation;
            let mut p = Preprocessor::new(&spec(Layout::Nhwc, 4, 4, 3), &pre);
            let (out, t) = run::<u8>(&mut p, &frame, 48);
            let mut want = [[30u8, 60, 90]; 16];
            want[12..].fill([114; 3]);
            assert_eq!(out, want.concat(), "{interpolation:?}");
            assert_eq!((t.offset_x, t.offset_y), (0.0, 0.0));
            // Both axes map back with r = 4/7, as the reference does, not with nh/h = 3/5.
            assert_eq!(
                (t.scale_x, t.scale_y),
                ((4.0f64 / 7.0) as f32, (4.0f64 / 7.0) as f32)
            );
        }
    }

    #[test]
    fn bgr_swaps_red_and_blue_before_normalising() {
        let frame = image(1, 1, &[[10, 20, 30]]);
        let pre = pre(
            ResizeMode::Stretch,
            ColorOrder::Bgr,
            1.0,
            &[1.0, 2.0, 3.0],
            &[1.0, 1.0, 1.0],
        );
        for layout in [Layout::Nchw, Layout::Nhwc] {
            let mut p = Preprocessor::new(&spec(layout, 1, 1, 3), &pre);
            // Channel 0 is blue, so mean[0] applies to blue: 30-1, 20-2, 10-3.
            assert_eq!(run::<f32>(&mut p, &frame, 3).0, [29.0, 18.0, 7.0]);
            assert_eq!(run::<u8>(&mut p, &frame, 3).0, [30, 20, 10]);
        }
    }

    #[test]
    fn gray_uses_601_weights() {
        // 0.299*100 + 0.587*50 + 0.114*200 = 82.05; white stays 255.
        let frame = image(2, 1, &[[100, 50, 200], [255, 255, 255]]);
        let pre = pre(ResizeMode::Stretch, ColorOrder::Gray, 1.0, &[2.05], &[2.0]);
        for layout in [Layout::Nchw, Layout::Nhwc] {
            let mut p = Preprocessor::new(&spec(layout, 2, 1, 1), &pre);
            let (out, _) = run::<f32>(&mut p, &frame, 2);
            assert_close(&out, &[40.0, 126.475], 1e-4);
            assert_eq!(run::<u8>(&mut p, &frame, 2).0, [82, 255]);
        }
    }

    #[test]
    fn gray_letterbox_pad_is_the_pad_grey() {
        // 2x1 into 2x2: r = 1, top = 0, row 1 is pad.
        let frame = image(2, 1, &[[100, 50, 200], [0, 0, 0]]);
        let mut p = Preprocessor::new(
            &spec(Layout::Nchw, 2, 2, 1),
            &raw(ResizeMode::Letterbox, ColorOrder::Gray),
        );
        assert_eq!(run::<u8>(&mut p, &frame, 4).0, [82, 0, 114, 114]);
        let (out, _) = run::<f32>(&mut p, &frame, 4);
        assert_close(&out, &[82.05, 0.0, 114.0, 114.0], 1e-4);
    }

    #[test]
    fn layouts_place_the_same_pixel() {
        // One coloured pixel at (x=2, y=1) of a 3x2 frame.
        let mut pixels = [[0u8; 3]; 6];
        pixels[5] = [10, 20, 30];
        let frame = image(3, 2, &pixels);
        let pre = raw(ResizeMode::Stretch, ColorOrder::Rgb);

        let mut p = Preprocessor::new(&spec(Layout::Nchw, 3, 2, 3), &pre);
        let (out, _) = run::<f32>(&mut p, &frame, 18);
        let mut want = [0.0f32; 18];
        // c*H*W + y*W + x = c*6 + 5.
        want[5] = 10.0;
        want[11] = 20.0;
        want[17] = 30.0;
        assert_eq!(out, want);

        let mut p = Preprocessor::new(&spec(Layout::Nhwc, 3, 2, 3), &pre);
        let (out, _) = run::<f32>(&mut p, &frame, 18);
        let mut want = [0.0f32; 18];
        // (y*W + x)*C + c = 15 + c.
        want[15..].copy_from_slice(&[10.0, 20.0, 30.0]);
        assert_eq!(out, want);
    }

    #[test]
    fn letterbox_transform_round_trip() {
        // 640x480 into 128x128: r = 0.2, nw = 128, nh = 96, top = 16.
        let frame = image::RgbImage::from_pixel(640, 480, image::Rgb([50, 100, 150]));
        let mut p = Preprocessor::new(
            &spec(Layout::Nchw, 128, 128, 3),
            &raw(ResizeMode::Letterbox, ColorOrder::Rgb),
        );
        let (out, t) = run::<u8>(&mut p, &frame, 3 * 128 * 128);
        assert_eq!(
            t,
            InputTransform {
                source_width: 640,
                source_height: 480,
                scale_x: 0.2,
                scale_y: 0.2,
                offset_x: 0.0,
                offset_y: 16.0,
            }
        );
        assert_point(t.to_source(64.0, 16.0), (320.0, 0.0));
        assert_point(t.to_source(128.0, 112.0), (640.0, 480.0));
        assert_eq!(
            t.box_to_source([32.0, 40.0, 96.0, 88.0]),
            [160.0, 120.0, 480.0, 360.0]
        );
        // Rows 15 and 112 are pad, 16 and 111 image (red plane).
        assert_eq!(
            (out[15 * 128], out[16 * 128], out[111 * 128], out[112 * 128]),
            (114, 50, 50, 114)
        );
    }

    #[test]
    fn center_crop_transform_round_trip() {
        // 640x480 into 64x64: crop 480x480 at left 80, scale 64/480.
        let g = Geometry::new(ResizeMode::CenterCrop, (640, 480), (64, 64));
        let crop = Rect {
            left: 80,
            top: 0,
            width: 480,
            height: 480,
        };
        assert_eq!(g.crop, crop);
        let t = g.transform;
        assert!((t.scale_x - 64.0 / 480.0).abs() < 1e-7 && t.scale_x == t.scale_y);
        assert!((t.offset_x + 80.0 * 64.0 / 480.0).abs() < 1e-5 && t.offset_y == 0.0);
        assert_point(t.to_source(0.0, 0.0), (80.0, 0.0));
        assert_point(t.to_source(32.0, 32.0), (320.0, 240.0));
        assert_point(t.to_source(64.0, 64.0), (560.0, 480.0));

        // And run returns the same transform.
        let frame = image::RgbImage::from_pixel(640, 480, image::Rgb([1, 2, 3]));
        let mut p = Preprocessor::new(
            &spec(Layout::Nhwc, 64, 64, 3),
            &raw(ResizeMode::CenterCrop, ColorOrder::Rgb),
        );
        let (out, t2) = run::<u8>(&mut p, &frame, 64 * 64 * 3);
        assert_eq!(t2, t);
        assert!(out.chunks_exact(3).all(|px| px == [1, 2, 3]));
    }

    #[test]
    fn stretch_transform_round_trip() {
        let t = Geometry::new(ResizeMode::Stretch, (640, 480), (128, 96)).transform;
        assert_eq!(
            (t.scale_x, t.scale_y, t.offset_x, t.offset_y),
            (0.2, 0.2, 0.0, 0.0)
        );
        assert_point(t.to_source(100.0, 50.0), (500.0, 250.0));
        let t = Geometry::new(ResizeMode::Stretch, (640, 480), (320, 320)).transform;
        assert_point(t.to_source(160.0, 160.0), (320.0, 240.0));
    }

    #[test]
    fn boxes_are_clamped_to_the_frame() {
        let t = Geometry::new(ResizeMode::Letterbox, (640, 480), (128, 128)).transform;
        // A box reaching into the pad and past the input edge.
        assert_eq!(
            t.box_to_source([-5.0, 0.0, 130.0, 128.0]),
            [0.0, 0.0, 640.0, 480.0]
        );
        assert_eq!(
            t.box_to_source([64.0, 10.0, 140.0, 64.0]),
            [320.0, 0.0, 640.0, 240.0]
        );
    }

    #[test]
    fn rounding_is_half_up_like_the_reference() {
        // 2x1 into 5x5: r = 2.5, nh = round(2.5) = 3 (Python's round would give 2),
        // top = (5-3)/2 = 1.
        let g = Geometry::new(ResizeMode::Letterbox, (2, 1), (5, 5));
        let place = Rect {
            left: 0,
            top: 1,
            width: 5,
            height: 3,
        };
        assert_eq!(g.place, place);
        assert_eq!((g.transform.scale_x, g.transform.scale_y), (2.5, 2.5));
        // 4x5 into 1x2: crop_w = round(5*1/2) = round(2.5) = 3, left = (4-3)/2 = 0.
        let g = Geometry::new(ResizeMode::CenterCrop, (4, 5), (1, 2));
        let crop = Rect {
            left: 0,
            top: 0,
            width: 3,
            height: 5,
        };
        assert_eq!(g.crop, crop);
    }

    #[test]
    fn errors_on_empty_frame_and_wrong_length() {
        let mut p = Preprocessor::new(
            &spec(Layout::Nchw, 4, 4, 3),
            &raw(ResizeMode::Letterbox, ColorOrder::Rgb),
        );
        let mut out = vec![0.0f32; 48];
        let err = p.run(&image::RgbImage::new(0, 4), &mut out).unwrap_err();
        assert!(
            matches!(
                err,
                PreprocessError::EmptyFrame {
                    width: 0,
                    height: 4
                }
            ),
            "{err}"
        );
        let err = p.run(&image::RgbImage::new(4, 0), &mut out).unwrap_err();
        assert!(matches!(err, PreprocessError::EmptyFrame { .. }), "{err}");

        let mut short = vec![0.0f32; 47];
        let err = p.run(&frame_4x2(), &mut short).unwrap_err();
        assert!(
            matches!(
                err,
                PreprocessError::OutputLength {
                    expected: 48,
                    got: 47
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "input buffer has 47 elements, the input tensor has 48"
        );
    }

    #[test]
    fn inconsistent_spec_is_reported_not_guessed() {
        // Gray needs one channel; this input has three.
        let mut p = Preprocessor::new(
            &spec(Layout::Nchw, 4, 4, 3),
            &raw(ResizeMode::Stretch, ColorOrder::Gray),
        );
        let err = p.run(&frame_4x2(), &mut [0.0f32; 48]).unwrap_err();
        assert!(matches!(err, PreprocessError::Spec(_)), "{err}");
    }

    #[test]
    fn buffers_are_reused_across_frames() {
        // 8x6 into 4x4 letterbox: nw = 4, nh = 3, a real resample.
        let a =
            image::RgbImage::from_fn(8, 6, |x, y| image::Rgb([(x * 30) as u8, (y * 40) as u8, 7]));
        let b = image::RgbImage::from_fn(8, 6, |x, y| {
            image::Rgb([(y * 20) as u8, (x * 10) as u8, 200])
        });
        let input = spec(Layout::Nchw, 4, 4, 3);
        let pre = pre(
            ResizeMode::Letterbox,
            ColorOrder::Rgb,
            1.0 / 255.0,
            &[0.5; 3],
            &[0.25; 3],
        );
        let mut p = Preprocessor::new(&input, &pre);

        let (first, t1) = run::<f32>(&mut p, &a, 48);
        // 8x6 -> 4x3 filters both axes: destination and intermediate are both in use.
        let ptrs = p.buffer_ptrs();
        assert!(!ptrs.0.is_null() && !ptrs.1.is_null());
        let (other, _) = run::<f32>(&mut p, &b, 48);
        assert_ne!(first, other);
        let (again, t2) = run::<f32>(&mut p, &a, 48);
        assert_eq!(first, again);
        assert_eq!(t1, t2);
        assert_eq!(
            p.buffer_ptrs(),
            ptrs,
            "buffers reallocated for a same-size frame"
        );

        // A new frame size changes the geometry; results still match a fresh pre-processor.
        let tall =
            image::RgbImage::from_fn(6, 8, |x, y| image::Rgb([(x * 40) as u8, (y * 30) as u8, 9]));
        let (cached, t3) = run::<f32>(&mut p, &tall, 48);
        let (fresh, t4) = run::<f32>(&mut Preprocessor::new(&input, &pre), &tall, 48);
        assert_eq!(cached, fresh);
        assert_eq!(t3, t4);
        assert_eq!((t3.offset_x, t3.offset_y), (0.0, 0.0));
        let (back, _) = run::<f32>(&mut p, &a, 48);
        assert_eq!(back, first);
    }
}
