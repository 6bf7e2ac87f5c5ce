//! Resampling: a bit-exact port of Pillow's `Image.BILINEAR` and `Image.NEAREST`.
//!
//! When the target size equals the source (or crop) size nothing is resampled: pixels are read
//! straight from the frame, as Pillow copies. Otherwise the resampling reproduces Pillow
//! 13.0.0's `Image.resize` (the version `tools/requirements-*.txt` pin) bit for bit:
//! `bilinear` is `Image.BILINEAR`, a triangle filter widened by the scale factor on downscale
//! (antialiased), in 22-bit fixed point, one axis after the other with the intermediate
//! rounded to u8 (so the order of the passes matters, and follows Pillow's rule); `nearest` is
//! `Image.NEAREST`, which samples pixel centres stepped by repeated addition.
//! fast_image_resize's bilinear, the obvious choice, rounds differently: ±1 level on about 10%
//! of the values, which moved the shapes models' scores by up to 0.01, ten times the
//! reference tolerance.

use super::{Pixels, Rect};
use crate::manifest::Interpolation;

/// Pillow's fixed-point precision for 8-bit images: 32 bits, less 8 for the pixel value and 2
/// spare for filters with negative lobes.
const PRECISION_BITS: u32 = 22;

/// Half an output unit: accumulators start here so that the final shift rounds to nearest.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// A fixed-point accumulator back to a pixel value.
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The triangle filter of `Image.BILINEAR`, support 1.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Filter taps for one axis: output `i` is the weighted sum of `bounds[i].1` input pixels from
/// `bounds[i].0` on, with the fixed-point weights in `coeffs[i * ksize..]`.
#[derive(Debug)]
struct Taps {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    coeffs: Vec<i32>,
}

impl Taps {
    /// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`, for the bilinear
    /// filter and a box covering the whole (cropped) input. Every step is Pillow's, in f64 and
    /// in the same order: a different but equally reasonable rounding is what this replaces.
    fn bilinear(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        // Downscaling widens the filter to cover every input pixel (antialiasing).
        let filterscale = scale.max(1.0);
        let support = filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let ss = 1.0 / filterscale;
        let one = f64::from(1u32 << PRECISION_BITS);

        let mut bounds = Vec::with_capacity(out_size);
        let mut coeffs = vec![0i32; out_size * ksize];
        let mut weights = vec![0.0f64; ksize];
        for (i, fixed) in coeffs.chunks_exact_mut(ksize).enumerate() {
            let center = (i as f64 + 0.5) * scale;
            // `as` truncates toward zero, like C's `(int)`.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let count = usize::try_from(xmax - xmin).unwrap_or(0).min(ksize);
            let mut total = 0.0;
            for (x, w) in weights[..count].iter_mut().enumerate() {
                *w = triangle(((x as i64 + xmin) as f64 - center + 0.5) * ss);
                total += *w;
            }
            for (k, &w) in fixed.iter_mut().zip(&weights[..count]) {
                let w = if total != 0.0 { w / total } else { w };
                *k = if w < 0.0 {
                    (-0.5 + w * one) as i32
                } else {
                    (0.5 + w * one) as i32
                };
            }
            bounds.push((xmin as usize, count));
        }
        Self {
            ksize,
            bounds,
            coeffs,
        }
    }

    /// Each output position's first input index and weights.
    fn iter(&self) -> impl Iterator<Item = (usize, &[i32])> {
        self.bounds
            .iter()
            .zip(self.coeffs.chunks_exact(self.ksize))
            .map(|(&(start, count), k)| (start, &k[..count]))
    }
}

/// Pillow's `ImagingScaleAffine` sampling positions for `Image.NEAREST`: pixel centres, stepped
/// by repeated addition as Pillow does (a multiplication can round the other way exactly on a
/// pixel boundary). `None` is a position outside the input, which Pillow leaves black.
fn nearest_indices(in_size: usize, out_size: usize) -> Vec<Option<usize>> {
    let step = in_size as f64 / out_size as f64;
    let mut position = step * 0.5;
    (0..out_size)
        .map(|_| {
            let index = (position >= 0.0).then_some(position as usize);
            position += step;
            index.filter(|&i| i < in_size)
        })
        .collect()
}

/// How to resample, for one input and output size.
#[derive(Debug, Default)]
enum Plan {
    /// Not built yet.
    #[default]
    None,
    Nearest {
        columns: Vec<Option<usize>>,
        rows: Vec<Option<usize>>,
    },
    /// Bilinear, only the width changes: Pillow filters only that axis.
    Horizontal(RowTaps),
    /// Bilinear, only the height changes.
    Vertical(Taps),
    /// Bilinear on both axes, horizontal pass first (Pillow's usual order), computing only
    /// the input rows `rows` that the vertical pass reads.
    HorizontalFirst {
        horizontal: RowTaps,
        vertical: Taps,
        rows: (usize, usize),
    },
    /// Bilinear on both axes, vertical pass first: what Pillow 13 does when the height shrinks
    /// by more than twice as many pixels as the width (`h - H > 2 * (w - W)`). Each pass
    /// rounds to u8, so the order changes the result by a level here and there.
    VerticalFirst { horizontal: RowTaps, vertical: Taps },
}

/// A width and a height, in pixels.
type Size = (usize, usize);

/// Resamples an RGB window exactly as Pillow's `Image.resize` does, reusing its tables and
/// buffers while the sizes stay the same.
#[derive(Debug, Default)]
pub(super) struct Resampler {
    /// Interpolation, input size and output size the plan and buffers are for.
    key: Option<(Interpolation, Size, Size)>,
    plan: Plan,
    /// Result of the first of two passes.
    pub(super) temp: Vec<u8>,
    /// Vertical-pass accumulators, one per byte of the rows it writes.
    acc: Vec<i32>,
    /// One input row for the horizontal pass, four i32 lanes per pixel.
    wide: Vec<[i32; 4]>,
    /// The resampled image, `out_w * out_h * 3` bytes.
    pub(super) out: Vec<u8>,
}

impl Resampler {
    /// Builds the plan and sizes the buffers, unless they already fit.
    pub(super) fn prepare(&mut self, interpolation: Interpolation, input: Size, output: Size) {
        let key = (interpolation, input, output);
        if self.key == Some(key) {
            return;
        }
        let ((in_w, in_h), (out_w, out_h)) = (input, output);
        // (temp bytes, accumulator length) each plan needs.
        let (plan, temp_len, acc_len) = match interpolation {
            Interpolation::Nearest => {
                let plan = Plan::Nearest {
                    columns: nearest_indices(in_w, out_w),
                    rows: nearest_indices(in_h, out_h),
                };
                (plan, 0, 0)
            }
            // Pillow filters only the axes whose size changes. (Equal sizes never get here;
            // if they did, scale-1 taps copy.)
            Interpolation::Bilinear if in_h == out_h => (
                Plan::Horizontal(RowTaps::new(&Taps::bilinear(in_w, out_w))),
                0,
                0,
            ),
            Interpolation::Bilinear if in_w == out_w => {
                (Plan::Vertical(Taps::bilinear(in_h, out_h)), 0, out_w * 3)
            }
            Interpolation::Bilinear => {
                let horizontal = RowTaps::new(&Taps::bilinear(in_w, out_w));
                let vertical = Taps::bilinear(in_h, out_h);
                let (shrink_w, shrink_h) = (in_w as i64 - out_w as i64, in_h as i64 - out_h as i64);
                if out_h < in_h && shrink_h > 2 * shrink_w {
                    let plan = Plan::VerticalFirst {
                        horizontal,
                        vertical,
                    };
                    (plan, in_w * out_h * 3, in_w * 3)
                } else {
                    let first = vertical.bounds.first().map_or(0, |b| b.0);
                    let last = vertical.bounds.last().map_or(0, |b| b.0 + b.1);
                    let plan = Plan::HorizontalFirst {
                        horizontal,
                        vertical,
                        rows: (first, last),
                    };
                    (plan, out_w * (last - first) * 3, out_w * 3)
                }
            }
        };
        self.plan = plan;
        self.temp.resize(temp_len, 0);
        self.acc.resize(acc_len, 0);
        let wide_len = match &self.plan {
            Plan::Horizontal(h)
            | Plan::HorizontalFirst { horizontal: h, .. }
            | Plan::VerticalFirst { horizontal: h, .. } => h.row_len(in_w),
            Plan::None | Plan::Nearest { .. } | Plan::Vertical(_) => 0,
        };
        self.wide.resize(wide_len, [0; 4]);
        self.out.resize(out_w * out_h * 3, 0);
        self.key = Some(key);
    }

    /// Resamples `src` (whose window is the prepared input size) into the prepared output.
    pub(super) fn run(&mut self, src: &Pixels<'_>) -> &[u8] {
        let Some((_, (in_w, _), (out_w, out_h))) = self.key else {
            return &self.out;
        };
        let row_len = out_w * 3;
        // The first pass's result, as an image the second pass reads.
        let temp = |buffer, width: usize, height: usize| Pixels {
            buffer,
            stride: width * 3,
            rect: Rect {
                left: 0,
                top: 0,
                width: width as u32,
                height: height as u32,
            },
        };
        match &self.plan {
            Plan::None => {}
            Plan::Nearest { columns, rows } => {
                for (dst, y) in self.out.chunks_exact_mut(row_len).zip(rows) {
                    let Some(y) = *y else {
                        dst.fill(0);
                        continue;
                    };
                    let s = src.row(y);
                    for (o, x) in dst.chunks_exact_mut(3).zip(columns) {
                        match *x {
                            Some(x) => o.copy_from_slice(&s[x * 3..x * 3 + 3]),
                            None => o.fill(0),
                        }
                    }
                }
            }
            Plan::Horizontal(h) => {
                horizontal_pass(src, h, 0, &mut self.out, row_len, &mut self.wide);
            }
            Plan::Vertical(v) => vertical_pass(src, v, 0, &mut self.acc, &mut self.out),
            Plan::HorizontalFirst {
                horizontal,
                vertical,
                rows,
            } => {
                horizontal_pass(
                    src,
                    horizontal,
                    rows.0,
                    &mut self.temp,
                    row_len,
                    &mut self.wide,
                );
                let temp = temp(&self.temp, out_w, rows.1 - rows.0);
                vertical_pass(&temp, vertical, rows.0, &mut self.acc, &mut self.out);
            }
            Plan::VerticalFirst {
                horizontal,
                vertical,
            } => {
                vertical_pass(src, vertical, 0, &mut self.acc, &mut self.temp);
                let temp = temp(&self.temp, in_w, out_h);
                horizontal_pass(&temp, horizontal, 0, &mut self.out, row_len, &mut self.wide);
            }
        }
        &self.out
    }
}

/// Horizontal taps laid out for the row kernels. Every output pixel reads the same even number
/// of input pixels, `span`, from `starts[i]` on: its weights are zero-padded to `span`, and
/// each is repeated over the four lanes of a widened pixel, so a tap is one lane-wise
/// multiply-add and no output has a remainder to handle. The windows that run past the row's
/// end read the spare pixels [`RowTaps::row_len`] adds, whatever they hold, times zero.
#[derive(Debug)]
struct RowTaps {
    span: usize,
    starts: Vec<usize>,
    /// `span` lanes per output pixel.
    weights: Vec<[i32; 4]>,
}

impl RowTaps {
    fn new(taps: &Taps) -> Self {
        let longest = taps.bounds.iter().map(|b| b.1).max().unwrap_or(0);
        let span = longest.max(1).next_multiple_of(2);
        let mut weights = vec![[0; 4]; taps.bounds.len() * span];
        for (padded, (_, k)) in weights.chunks_exact_mut(span).zip(taps.iter()) {
            for (lanes, &k) in padded.iter_mut().zip(k) {
                *lanes = [k; 4];
            }
        }
        Self {
            span,
            starts: taps.bounds.iter().map(|b| b.0).collect(),
            weights,
        }
    }

    /// Widened pixels a row needs for `in_w` input pixels, the spare ones past its end
    /// included.
    fn row_len(&self, in_w: usize) -> usize {
        in_w + self.span
    }

    /// Each output pixel's widened input window and lane weights, both `span` long.
    fn windows<'a>(
        &'a self,
        wide: &'a [[i32; 4]],
    ) -> impl Iterator<Item = (&'a [[i32; 4]], &'a [[i32; 4]])> {
        self.starts
            .iter()
            .zip(self.weights.chunks_exact(self.span))
            .map(move |(&start, k)| (&wide[start..start + self.span], k))
    }
}

/// Pillow's `ImagingResampleHorizontal_8bpc` for RGB: output row `r` filters input row
/// `first + r` along x. `wide` holds one input row widened to four i32 lanes per pixel, and
/// [`RowTaps::row_len`] of them.
///
/// The sums are integers, so any order of adding them gives Pillow's result bit for bit; the
/// order here is the one vector units like (see [`RowTaps`]). With AVX2 on x86_64, chosen at
/// run time, two taps are one 8-lane multiply-add and four output pixels are packed to bytes
/// at once; on aarch64 NEON does the same a tap at a time. The portable version is what other
/// CPUs run (armv7, x86 without AVX2).
fn horizontal_pass(
    src: &Pixels<'_>,
    taps: &RowTaps,
    first: usize,
    dst: &mut [u8],
    row_len: usize,
    wide: &mut [[i32; 4]],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: this CPU has AVX2, checked just above.
        unsafe { horizontal_rows_avx2(src, taps, first, dst, row_len, wide) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    horizontal_rows_neon(src, taps, first, dst, row_len, wide);
    #[cfg(not(target_arch = "aarch64"))]
    horizontal_rows(src, taps, first, dst, row_len, wide);
}

/// One input row widened to four i32 lanes per pixel (the fourth is 0).
#[inline(always)]
fn widen(row: &[u8], wide: &mut [[i32; 4]]) {
    for (w, p) in wide.iter_mut().zip(row.chunks_exact(3)) {
        *w = [i32::from(p[0]), i32::from(p[1]), i32::from(p[2]), 0];
    }
}

/// The portable horizontal pass.
#[cfg_attr(all(target_arch = "aarch64", not(test)), allow(dead_code))]
fn horizontal_rows(
    src: &Pixels<'_>,
    taps: &RowTaps,
    first: usize,
    dst: &mut [u8],
    row_len: usize,
    wide: &mut [[i32; 4]],
) {
    for (r, out_row) in dst.chunks_exact_mut(row_len).enumerate() {
        widen(src.row(first + r), wide);
        for (o, (pixels, k)) in out_row.chunks_exact_mut(3).zip(taps.windows(wide)) {
            let mut sums = [HALF; 4];
            for (p, k) in pixels.iter().zip(k) {
                for lane in 0..4 {
                    sums[lane] += p[lane] * k[lane];
                }
            }
            for (o, s) in o.iter_mut().zip(sums) {
                *o = clip8(s);
            }
        }
    }
}

/// The horizontal pass with AVX2: two taps per 8-lane multiply-add, four output pixels per
/// pack to bytes. The usual spans (up to 8 taps: downscales to 1/3 and up) get a kernel each
/// with the taps unrolled; longer ones take the loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal_rows_avx2(
    src: &Pixels<'_>,
    taps: &RowTaps,
    first: usize,
    dst: &mut [u8],
    row_len: usize,
    wide: &mut [[i32; 4]],
) {
    // SAFETY: AVX2 is present, this function's own precondition.
    unsafe {
        match taps.span {
            2 => rows_avx2::<1>(src, taps, first, dst, row_len, wide),
            4 => rows_avx2::<2>(src, taps, first, dst, row_len, wide),
            6 => rows_avx2::<3>(src, taps, first, dst, row_len, wide),
            8 => rows_avx2::<4>(src, taps, first, dst, row_len, wide),
            _ => rows_avx2::<0>(src, taps, first, dst, row_len, wide),
        }
    }
}

/// [`horizontal_rows_avx2`] for `PAIRS` pairs of taps (`span == 2 * PAIRS`), or any span for
/// `PAIRS == 0`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2<const PAIRS: usize>(
    src: &Pixels<'_>,
    taps: &RowTaps,
    first: usize,
    dst: &mut [u8],
    row_len: usize,
    wide: &mut [[i32; 4]],
) {
    use std::arch::x86_64::*;
    let span = taps.span;
    let (quad_starts, rest_starts) = taps.starts.as_chunks::<4>();
    let (quad_weights, rest_weights) = taps.weights.split_at(quad_starts.len() * 4 * span);
    for (r, out_row) in dst.chunks_exact_mut(row_len).enumerate() {
        widen(src.row(first + r), wide);
        let wide: &[[i32; 4]] = wide;
        let (quads, rest) = out_row.as_chunks_mut::<12>();
        let quad_taps = quad_starts.iter().zip(quad_weights.chunks_exact(4 * span));
        for (quad, (starts, k)) in quads.iter_mut().zip(quad_taps) {
            let k = |j: usize| &k[j * span..(j + 1) * span];
            // SAFETY: AVX2 is present. The saturating packs clamp to 0..=255 as `clip8`
            // does; the shuffle drops each pixel's fourth byte; the stores write the 12
            // bytes of `quad`, unaligned.
            unsafe {
                let a = pixel_avx2::<PAIRS>(wide, starts[0], k(0));
                let b = pixel_avx2::<PAIRS>(wide, starts[1], k(1));
                let c = pixel_avx2::<PAIRS>(wide, starts[2], k(2));
                let d = pixel_avx2::<PAIRS>(wide, starts[3], k(3));
                let bytes = _mm_packus_epi16(_mm_packs_epi32(a, b), _mm_packs_epi32(c, d));
                let rgb = _mm_shuffle_epi8(
                    bytes,
                    _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1),
                );
                _mm_storel_epi64(quad.as_mut_ptr().cast(), rgb);
                let last = _mm_extract_epi32::<2>(rgb);
                quad[8..].copy_from_slice(&last.to_le_bytes());
            }
        }
        let rest_taps = rest_starts.iter().zip(rest_weights.chunks_exact(span));
        for (o, (&start, k)) in rest.chunks_exact_mut(3).zip(rest_taps) {
            let mut lanes = [0i32; 4];
            // SAFETY: AVX2 is present; the store writes the 16 bytes of `lanes`.
            unsafe {
                _mm_storeu_si128(
                    lanes.as_mut_ptr().cast(),
                    pixel_avx2::<PAIRS>(wide, start, k),
                )
            };
            for (o, s) in o.iter_mut().zip(lanes) {
                *o = s.clamp(0, 255) as u8;
            }
        }
    }
}

/// One output pixel's four lanes from the `span` widened pixels at `start` and their lane
/// weights `k`, shifted down from fixed point (not yet clamped).
///
/// # Safety
/// The CPU must have AVX2 (this is inlined into AVX2 functions only).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn pixel_avx2<const PAIRS: usize>(
    wide: &[[i32; 4]],
    start: usize,
    k: &[[i32; 4]],
) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    let (pixels, _) = wide[start..start + k.len()].as_chunks::<2>();
    let (k, _) = k.as_chunks::<2>();
    // With a fixed count the loop unrolls and its bounds checks go.
    let (pixels, k) = match (pixels.first_chunk::<PAIRS>(), k.first_chunk::<PAIRS>()) {
        (Some(p), Some(k)) if PAIRS > 0 => (p.as_slice(), k.as_slice()),
        _ => (pixels, k),
    };
    // SAFETY: AVX2 is present (the caller's promise); each load reads one pair of [i32; 4],
    // 32 contiguous bytes, unaligned.
    unsafe {
        let mut sums = _mm256_setzero_si256();
        for (p, k) in pixels.iter().zip(k) {
            let p = _mm256_loadu_si256(p.as_ptr().cast());
            let k = _mm256_loadu_si256(k.as_ptr().cast());
            sums = _mm256_add_epi32(sums, _mm256_mullo_epi32(p, k));
        }
        let halves = _mm_add_epi32(
            _mm256_castsi256_si128(sums),
            _mm256_extracti128_si256::<1>(sums),
        );
        _mm_srai_epi32::<{ PRECISION_BITS as i32 }>(_mm_add_epi32(halves, _mm_set1_epi32(HALF)))
    }
}

/// The horizontal pass with NEON, which every aarch64 CPU has. On the Cortex-A76 the portable
/// loops took 11.1 M instructions a frame to bring 640×480 frames to MobileNetV2's 224
/// (scripts/insn-profile, end to end), 6 % of the model's own. Each tap is one 4-lane
/// multiply-add of a widened pixel by its lane weights, four output pixels are narrowed to
/// bytes together (saturating, as `clip8` clamps), and rows are widened eight pixels at a time.
/// The usual spans (up to 8 taps: downscales to 1/3 and up) get a kernel each with the taps
/// unrolled; longer ones take the loop.
#[cfg(target_arch = "aarch64")]
fn horizontal_rows_neon(
    src: &Pixels<'_>,
    taps: &RowTaps,
    first: usize,
    dst: &mut [u8],
    row_len: usize,
    wide: &mut [[i32; 4]],
) {
    match taps.span {
        2 => rows_neon::<2>(src, taps, first, dst, row_len, wide),
        4 => rows_neon::<4>(src, taps, first, dst, row_len, wide),
        6 => rows_neon::<6>(src, taps, first, dst, row_len, wide),
        8 => rows_neon::<8>(src, taps, first, dst, row_len, wide),
        _ => rows_neon::<0>(src, taps, first, dst, row_len, wide),
    }
}

/// [`horizontal_rows_neon`] for `SPAN` taps (`taps.span == SPAN`), or any span for `SPAN == 0`.
#[cfg(target_arch = "aarch64")]
fn rows_neon<const SPAN: usize>(
    src: &Pixels<'_>,
    taps: &RowTaps,
    first: usize,
    dst: &mut [u8],
    row_len: usize,
    wide: &mut [[i32; 4]],
) {
    use std::arch::aarch64::*;
    // Byte indices of four [r, g, b, 0] pixels without their fourth bytes.
    const RGB_OF_RGBX: [u8; 16] = [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 16, 16, 16];
    let span = taps.span;
    let (quad_starts, rest_starts) = taps.starts.as_chunks::<4>();
    let (quad_weights, rest_weights) = taps.weights.split_at(quad_starts.len() * 4 * span);
    for (r, out_row) in dst.chunks_exact_mut(row_len).enumerate() {
        widen_neon(src.row(first + r), wide);
        let wide: &[[i32; 4]] = wide;
        let (quads, rest) = out_row.as_chunks_mut::<12>();
        let quad_taps = quad_starts.iter().zip(quad_weights.chunks_exact(4 * span));
        for (quad, (starts, k)) in quads.iter_mut().zip(quad_taps) {
            let k = |j: usize| &k[j * span..(j + 1) * span];
            let (a, b, c, d) = (
                pixel_neon::<SPAN>(wide, starts[0], k(0)),
                pixel_neon::<SPAN>(wide, starts[1], k(1)),
                pixel_neon::<SPAN>(wide, starts[2], k(2)),
                pixel_neon::<SPAN>(wide, starts[3], k(3)),
            );
            // SAFETY: NEON is part of every aarch64 CPU; the table load reads the 16 bytes of
            // RGB_OF_RGBX, the store writes 8 of the 12 bytes of `quad`.
            let last = unsafe {
                let ab = vcombine_u16(vqmovun_s32(a), vqmovun_s32(b));
                let cd = vcombine_u16(vqmovun_s32(c), vqmovun_s32(d));
                let bytes = vcombine_u8(vqmovn_u16(ab), vqmovn_u16(cd));
                let rgb = vqtbl1q_u8(bytes, vld1q_u8(RGB_OF_RGBX.as_ptr()));
                vst1_u8(quad.as_mut_ptr(), vget_low_u8(rgb));
                vgetq_lane_u32::<2>(vreinterpretq_u32_u8(rgb))
            };
            quad[8..].copy_from_slice(&last.to_le_bytes());
        }
        let rest_taps = rest_starts.iter().zip(rest_weights.chunks_exact(span));
        for (o, (&start, k)) in rest.chunks_exact_mut(3).zip(rest_taps) {
            let mut lanes = [0i32; 4];
            // SAFETY: NEON is present; the store writes the 16 bytes of `lanes`.
            unsafe { vst1q_s32(lanes.as_mut_ptr(), pixel_neon::<SPAN>(wide, start, k)) };
            for (o, s) in o.iter_mut().zip(lanes) {
                *o = s.clamp(0, 255) as u8;
            }
        }
    }
}

/// One output pixel's four lanes from the `k.len()` widened pixels at `start` and their lane
/// weights `k`, shifted down from fixed point (not yet clamped).
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn pixel_neon<const SPAN: usize>(
    wide: &[[i32; 4]],
    start: usize,
    k: &[[i32; 4]],
) -> std::arch::aarch64::int32x4_t {
    use std::arch::aarch64::*;
    let pixels = &wide[start..start + k.len()];
    // With a fixed count the loop unrolls and its bounds checks go.
    let (pixels, k) = match (pixels.first_chunk::<SPAN>(), k.first_chunk::<SPAN>()) {
        (Some(p), Some(k)) if SPAN > 0 => (p.as_slice(), k.as_slice()),
        _ => (pixels, k),
    };
    // SAFETY: NEON is present; each load reads one [i32; 4].
    unsafe {
        let mut sums = vdupq_n_s32(HALF);
        for (p, k) in pixels.iter().zip(k) {
            sums = vmlaq_s32(sums, vld1q_s32(p.as_ptr()), vld1q_s32(k.as_ptr()));
        }
        vshrq_n_s32::<{ PRECISION_BITS as i32 }>(sums)
    }
}

/// [`widen`] eight pixels at a time: NEON loads them as three planes and stores them back
/// interleaved with a zero plane, each lane widened to 32 bits.
#[cfg(target_arch = "aarch64")]
fn widen_neon(row: &[u8], wide: &mut [[i32; 4]]) {
    use std::arch::aarch64::*;
    let (eights, _) = row.as_chunks::<24>();
    let whole = eights.len().min(wide.len() / 8);
    for (bytes, out) in eights[..whole].iter().zip(wide.chunks_exact_mut(8)) {
        // SAFETY: NEON is present; the load reads the 24 bytes of `bytes`, the two stores
        // write the 8 × 16 bytes of `out`.
        unsafe {
            let planes = vld3_u8(bytes.as_ptr());
            let (r, g, b) = (vmovl_u8(planes.0), vmovl_u8(planes.1), vmovl_u8(planes.2));
            let zero = vdupq_n_u32(0);
            let out = out.as_mut_ptr().cast::<u32>();
            vst4q_u32(
                out,
                uint32x4x4_t(
                    vmovl_u16(vget_low_u16(r)),
                    vmovl_u16(vget_low_u16(g)),
                    vmovl_u16(vget_low_u16(b)),
                    zero,
                ),
            );
            vst4q_u32(
                out.add(16),
                uint32x4x4_t(
                    vmovl_high_u16(r),
                    vmovl_high_u16(g),
                    vmovl_high_u16(b),
                    zero,
                ),
            );
        }
    }
    widen(&row[whole * 24..], &mut wide[whole * 8..]);
}

/// Pillow's `ImagingResampleVertical_8bpc`: output row `i` filters input rows
/// `start - first ..` along y. Accumulating a whole row per tap (rather than a pixel over all
/// taps) gives the same integer sums, in an order the compiler can vectorise (with AVX2 on
/// x86_64 when the CPU has it, as for the horizontal pass).
fn vertical_pass(src: &Pixels<'_>, taps: &Taps, first: usize, acc: &mut [i32], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: this CPU has AVX2, checked just above.
        unsafe { vertical_pass_avx2(src, taps, first, acc, dst) };
        return;
    }
    vertical_rows(src, taps, first, acc, dst);
}

/// [`vertical_rows`] compiled with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn vertical_pass_avx2(
    src: &Pixels<'_>,
    taps: &Taps,
    first: usize,
    acc: &mut [i32],
    dst: &mut [u8],
) {
    vertical_rows(src, taps, first, acc, dst);
}

#[inline(always)]
fn vertical_rows(src: &Pixels<'_>, taps: &Taps, first: usize, acc: &mut [i32], dst: &mut [u8]) {
    for (out_row, (start, k)) in dst.chunks_exact_mut(acc.len()).zip(taps.iter()) {
        acc.fill(HALF);
        for (y, &k) in (start - first..).zip(k) {
            for (a, &p) in acc.iter_mut().zip(src.row(y)) {
                *a += i32::from(p) * k;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(acc.iter()) {
            *o = clip8(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::preprocess::tests::{image, raw, run, spec};
    use crate::frames::preprocess::Preprocessor;
    use crate::manifest::{ColorOrder, Layout, ResizeMode};

    /// 4x4 frame: R = cx[x] + ry[y] with cx = [0, 70, 140, 210], ry = [0, 7, 14, 21];
    /// G = 255 - R; B = 100.
    fn frame_pattern_4x4() -> image::RgbImage {
        let (cx, ry) = ([0u8, 70, 140, 210], [0u8, 7, 14, 21]);
        let pixels: Vec<[u8; 3]> = ry
            .iter()
            .flat_map(|r| cx.iter().map(move |c| [c + r, 255 - (c + r), 100]))
            .collect();
        image(4, 4, &pixels)
    }

    #[test]
    fn bilinear_downscale_matches_pillow() {
        // Pillow BILINEAR at 2:1: the triangle filter is stretched to support 2, so output
        // pixel 0 (centre 1.0) takes source 0, 1, 2 with weights 0.75, 0.75, 0.25 -> 3/7, 3/7,
        // 1/7, and output pixel 1 (centre 3.0) takes 1, 2, 3 with 1/7, 3/7, 3/7.
        // Rows of cx: (0*3 + 70*3 + 140)/7 = 50, (70 + 140*3 + 210*3)/7 = 160.
        // Columns of ry: (0*3 + 7*3 + 14)/7 = 5, (7 + 14*3 + 21*3)/7 = 16.
        // The filter is linear, so R = 50|160 + 5|16 and G = 255 - R, all exact integers.
        let mut p = Preprocessor::new(
            &spec(Layout::Nchw, 2, 2, 3),
            &raw(ResizeMode::Stretch, ColorOrder::Rgb),
        );
        let (out, t) = run::<u8>(&mut p, &frame_pattern_4x4(), 12);
        assert_eq!(
            out,
            [55, 165, 66, 176, 200, 90, 189, 79, 100, 100, 100, 100]
        );
        assert_eq!((t.scale_x, t.scale_y), (0.5, 0.5));
        assert!(!p.buffer_ptrs().0.is_null(), "a real downscale resamples");
    }

    #[test]
    fn bilinear_taps_are_pillows_fixed_point() {
        // 4 -> 2: weights 3/7, 3/7, 1/7 and 1/7, 3/7, 3/7 (see above), times 2^22, rounded.
        let taps = Taps::bilinear(4, 2);
        assert_eq!(taps.bounds, [(0, 3), (1, 3)]);
        let weights: Vec<&[i32]> = taps.iter().map(|(_, k)| k).collect();
        assert_eq!(
            weights,
            [
                [1_797_559, 1_797_559, 599_186],
                [599_186, 1_797_559, 1_797_559]
            ]
        );
        // They sum to exactly 1.0 in fixed point, so flat areas stay flat.
        assert_eq!(1_797_559 * 2 + 599_186, 1 << 22);
    }

    #[test]
    fn center_crop_filter_stops_at_the_crop_edge() {
        // 6x2 into 1x1: crop 2x2 at left 2 (columns 2 and 3), shrunk 2:1 on both axes. The
        // filter's support (2) reaches columns 1 and 4, but the reference crops first, so those
        // (255) must not count: the result is the plain mean of 10 and 30.
        let row = [[255; 3], [255; 3], [10; 3], [30; 3], [255; 3], [255; 3]];
        let frame = image(6, 2, &[row, row].concat());
        let mut p = Preprocessor::new(
            &spec(Layout::Nchw, 1, 1, 3),
            &raw(ResizeMode::CenterCrop, ColorOrder::Rgb),
        );
        assert_eq!(run::<u8>(&mut p, &frame, 3).0, [20, 20, 20]);
    }

    #[test]
    fn nearest_steps_by_addition_like_pillow() {
        // 2 -> 7: output pixel 3 is centred exactly on the source boundary, (3 + 0.5) * 2/7 = 1.
        // Pillow reaches it by adding 2/7 three times to 1/7, which lands just below 1 and
        // picks pixel 0; multiplying would give exactly 1 and pick pixel 1.
        let frame = image(2, 1, &[[10; 3], [200; 3]]);
        let mut pre = raw(ResizeMode::Stretch, ColorOrder::Rgb);
        pre.interpolation = Interpolation::Nearest;
        let mut p = Preprocessor::new(&spec(Layout::Nchw, 7, 1, 3), &pre);
        let (out, _) = run::<u8>(&mut p, &frame, 21);
        assert_eq!(out[..7], [10, 10, 10, 10, 200, 200, 200]);
    }

    /// Pillow's horizontal loop as it is written, one output pixel and one tap at a time: what
    /// the lane-wise passes are held to.
    fn pillow_horizontal(src: &Pixels<'_>, taps: &Taps, rows: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for y in 0..rows {
            let row = src.row(y);
            for (start, k) in taps.iter() {
                for c in 0..3 {
                    let mut sum = HALF;
                    for (x, &k) in (start..).zip(k) {
                        sum += i32::from(row[x * 3 + c]) * k;
                    }
                    out.push(clip8(sum));
                }
            }
        }
        out
    }

    /// The horizontal pass as dispatched (AVX2 where the CPU has it) and the portable one give
    /// Pillow's bytes, for even and odd tap counts, output widths with and without a remainder
    /// of four pixels, down- and upscaling, with whatever values the buffer's spare pixels hold
    /// (the windows running past a row's end read them times zero).
    #[test]
    fn horizontal_passes_equal_pillows_loop() {
        let mut wide = Vec::new();
        for (in_w, out_w) in [
            (641, 97),
            (160, 128),
            (640, 128),
            (640, 224),
            (640, 182),
            (37, 36),
            (50, 173),
            (3, 1),
            (7, 6),
        ] {
            let rows = 5;
            // A fixed, busy pattern: every byte value appears, neighbours differ.
            let bytes: Vec<u8> = (0..in_w * rows * 3)
                .map(|i| ((i * 7919 + i / 3 * 104_729) % 256) as u8)
                .collect();
            let src = Pixels {
                buffer: &bytes,
                stride: in_w * 3,
                rect: Rect {
                    left: 0,
                    top: 0,
                    width: in_w as u32,
                    height: rows as u32,
                },
            };
            let taps = Taps::bilinear(in_w, out_w);
            let want = pillow_horizontal(&src, &taps, rows);
            let row_taps = RowTaps::new(&taps);
            wide.clear();
            wide.resize(row_taps.row_len(in_w), [0x7654_3210; 4]);
            let (mut vector, mut portable) = (vec![0; out_w * rows * 3], vec![0; out_w * rows * 3]);
            horizontal_pass(&src, &row_taps, 0, &mut vector, out_w * 3, &mut wide);
            horizontal_rows(&src, &row_taps, 0, &mut portable, out_w * 3, &mut wide);
            assert_eq!(vector, want, "dispatched, {in_w} -> {out_w}");
            assert_eq!(portable, want, "portable, {in_w} -> {out_w}");
            assert!(want.iter().any(|&b| b > 0), "{in_w} -> {out_w}");
        }
    }

    #[test]
    fn pass_order_follows_pillow_13() {
        // Pixel (x, y) channel c is (37x + 91y + 53c) mod 256. 2x7 -> 1x2 shrinks the height by
        // 5 > 2 * 1 pixels, so Pillow 13 filters vertically first. The expected values are
        // Pillow 13.0.0's output (not hand-computed); horizontal-first would give
        // (103, 124, 144), (129, 135, 140), one level off in two places.
        let pixels: Vec<[u8; 3]> = (0..7u32)
            .flat_map(|y| {
                (0..2u32).map(move |x| {
                    std::array::from_fn(|c| ((37 * x + 91 * y + 53 * c as u32) % 256) as u8)
                })
            })
            .collect();
        let frame = image(2, 7, &pixels);
        let mut p = Preprocessor::new(
            &spec(Layout::Nchw, 1, 2, 3),
            &raw(ResizeMode::Stretch, ColorOrder::Rgb),
        );
        let (out, _) = run::<u8>(&mut p, &frame, 6);
        assert!(matches!(p.resampler.plan, Plan::VerticalFirst { .. }));
        assert_eq!(out, [103, 129, 123, 134, 144, 140]);

        // The same shrink with a wider loss of width keeps Pillow's usual order.
        let mut r = Resampler::default();
        r.prepare(Interpolation::Bilinear, (39, 33), (13, 16));
        assert!(matches!(r.plan, Plan::HorizontalFirst { .. }));
    }

    #[test]
    fn nearest_downscale_samples_pixel_centres() {
        // 2:1 nearest samples source (x + 0.5) * 2 = 1 and 3 on each axis, like Pillow.
        let mut pre = raw(ResizeMode::Stretch, ColorOrder::Rgb);
        pre.interpolation = Interpolation::Nearest;
        let mut p = Preprocessor::new(&spec(Layout::Nchw, 2, 2, 3), &pre);
        let (out, _) = run::<u8>(&mut p, &frame_pattern_4x4(), 12);
        // R at (1,1), (3,1), (1,3), (3,3): 70+7, 210+7, 70+21, 210+21.
        assert_eq!(
            out,
            [77, 217, 91, 231, 178, 38, 164, 24, 100, 100, 100, 100]
        );
    }
}
