//! What frames looked like and what the model said about them, counted the same way for the
//! reference profile and for the device's own windows, so that the two can be compared.
//!
//! Input statistics are taken from the model's view of the frame (the resized image, before
//! padding and normalisation; [`crate::frames::preprocess::ImageView`]): it is small, it is already in
//! cache, and it is what the model judged. Letterbox padding, which depends on the camera's
//! aspect ratio and not on the scene, is not part of it. Pixels are sampled on a grid of at
//! most [`SAMPLES_PER_SIDE`] per side.
//!
//! Sharpness is the mean absolute luma difference between neighbours on that grid,
//! horizontally and vertically (a gradient energy). A blurred lens, fog or a camera out of
//! focus lowers it; it is binned on a log scale, `bin = ⌊2·log2(1 + s)⌋`, so halving it moves a
//! frame about two bins down whatever the scene's own detail.

use crate::frames::preprocess::ImageView;
use crate::manifest::{
    Profile, BRIGHTNESS_BINS, CHANNEL_BINS, DETECTION_BINS, SCORE_BINS, SHARPNESS_BINS,
};
use crate::results::record::FrameRecord;

/// Sampled pixels per side of the model's view, at most.
pub const SAMPLES_PER_SIDE: usize = 32;

/// Counts over some frames: a reference data set, or one window on the device.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    frames: u64,
    samples: u64,
    brightness: [u64; BRIGHTNESS_BINS],
    channels: [[u64; CHANNEL_BINS]; 3],
    rgb_sum: [f64; 3],
    rgb_sq_sum: [f64; 3],
    contrast_sum: f64,
    sharpness: [u64; SHARPNESS_BINS],
    top_score: [u64; SCORE_BINS],
    classes: Vec<u64>,
    /// Frames per detection count, and all detections (detectors only).
    detections: Option<([u64; DETECTION_BINS], u64)>,
}

impl Tally {
    /// Empty counts for a model with `labels` labels; `detector` adds detections per frame.
    pub fn new(labels: usize, detector: bool) -> Self {
        Self {
            frames: 0,
            samples: 0,
            brightness: [0; BRIGHTNESS_BINS],
            channels: [[0; CHANNEL_BINS]; 3],
            rgb_sum: [0.0; 3],
            rgb_sq_sum: [0.0; 3],
            contrast_sum: 0.0,
            sharpness: [0; SHARPNESS_BINS],
            top_score: [0; SCORE_BINS],
            classes: vec![0; labels],
            detections: detector.then_some(([0; DETECTION_BINS], 0)),
        }
    }

    /// Frames counted.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Back to empty, keeping the allocation.
    pub fn clear(&mut self) {
        let classes = std::mem::take(&mut self.classes);
        *self = Self::new(0, self.detections.is_some());
        self.classes = classes;
        self.classes.fill(0);
    }

    /// Counts one frame: `view` is what the model saw, `record` what it reported.
    pub fn add(&mut self, view: &ImageView<'_>, record: &FrameRecord) {
        self.frames += 1;
        self.add_pixels(view);
        self.add_answer(record);
    }

    fn add_pixels(&mut self, view: &ImageView<'_>) {
        let (w, h) = (view.width, view.height);
        if w == 0 || h == 0 {
            return;
        }
        let (step_x, step_y) = (
            w.div_ceil(SAMPLES_PER_SIDE).max(1),
            h.div_ceil(SAMPLES_PER_SIDE).max(1),
        );
        // Integer arithmetic throughout (luma in thousandths: 299 R + 587 G + 114 B), so a
        // frame costs a few instructions per sampled pixel and any CPU counts alike.
        let mut above = [0u32; SAMPLES_PER_SIDE];
        let (mut n, mut sum, mut sum_sq) = (0u64, 0u64, 0u64);
        let (mut rgb, mut rgb_sq) = ([0u64; 3], [0u64; 3]);
        let (mut gradient, mut pairs) = (0u64, 0u64);
        for (row_index, y) in (0..h).step_by(step_y).enumerate() {
            let row = view.row(y);
            let mut left: Option<u32> = None;
            for (column, p) in row.chunks_exact(3).step_by(step_x).enumerate() {
                let [r, g, b] = [p[0], p[1], p[2]].map(u32::from);
                let luma = 299 * r + 587 * g + 114 * b;
                self.brightness
                    [(luma as usize * BRIGHTNESS_BINS / 256_000).min(BRIGHTNESS_BINS - 1)] += 1;
                for (c, v) in [r, g, b].into_iter().enumerate() {
                    self.channels[c][v as usize * CHANNEL_BINS / 256] += 1;
                    rgb[c] += u64::from(v);
                    rgb_sq[c] += u64::from(v * v);
                }
                if let Some(l) = left {
                    gradient += u64::from(luma.abs_diff(l));
                    pairs += 1;
                }
                if row_index > 0 {
                    gradient += u64::from(luma.abs_diff(above[column]));
                    pairs += 1;
                }
                above[column] = luma;
                left = Some(luma);
                n += 1;
                sum += u64::from(luma);
                sum_sq += u64::from(luma) * u64::from(luma);
            }
        }
        self.samples += n;
        for c in 0..3 {
            self.rgb_sum[c] += rgb[c] as f64;
            self.rgb_sq_sum[c] += rgb_sq[c] as f64;
        }
        let (n, thousandths) = (n as f64, 1000.0);
        let mean = sum as f64 / n;
        let variance = (sum_sq as f64 / n - mean * mean).max(0.0);
        self.contrast_sum += variance.sqrt() / thousandths;
        let sharpness = if pairs > 0 {
            gradient as f64 / pairs as f64 / thousandths
        } else {
            0.0
        };
        self.sharpness[sharpness_bin(sharpness)] += 1;
    }

    fn add_answer(&mut self, record: &FrameRecord) {
        let mut best = 0.0f32;
        let mut count = |id: usize| {
            if let Some(c) = self.classes.get_mut(id) {
                *c += 1;
            }
        };
        if let Some(top) = record.classes.as_ref().and_then(|c| c.first()) {
            best = top.score;
            count(top.label_id);
        }
        if let Some(dets) = &record.detections {
            for d in dets {
                best = best.max(d.score);
                count(d.label_id);
            }
            if let Some((per_frame, total)) = &mut self.detections {
                per_frame[dets.len().min(DETECTION_BINS - 1)] += 1;
                *total += dets.len() as u64;
            }
        }
        let bin = ((best.clamp(0.0, 1.0) * SCORE_BINS as f32) as usize).min(SCORE_BINS - 1);
        self.top_score[bin] += 1;
    }

    /// The counts as a reference profile; `data` says what they were measured on.
    pub fn to_profile(&self, data: String) -> Profile {
        let frames = self.frames.max(1) as f64;
        let samples = self.samples.max(1) as f64;
        let mean = self.rgb_sum.map(|s| s / samples);
        let std: [f64; 3] = std::array::from_fn(|c| {
            (self.rgb_sq_sum[c] / samples - mean[c] * mean[c])
                .max(0.0)
                .sqrt()
        });
        Profile {
            data,
            frames: self.frames,
            brightness: shares(&self.brightness),
            rgb_mean: mean.map(round6),
            contrast: round6(self.contrast_sum / frames),
            top_score: shares(&self.top_score),
            class_share: shares(&self.classes),
            detections_per_frame: self
                .detections
                .map(|(_, total)| round6(total as f64 / frames)),
            rgb_std: Some(std.map(round6)),
            red: shares(&self.channels[0]),
            green: shares(&self.channels[1]),
            blue: shares(&self.channels[2]),
            sharpness: shares(&self.sharpness),
            detections: self
                .detections
                .map(|(per_frame, _)| shares(&per_frame))
                .unwrap_or_default(),
        }
    }
}

/// The sharpness bin of a mean gradient `s` (0..=255 luma units).
pub fn sharpness_bin(s: f64) -> usize {
    ((2.0 * (1.0 + s.max(0.0)).log2()) as usize).min(SHARPNESS_BINS - 1)
}

/// Counts as shares of their total, six decimals; all zero when there is nothing.
fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total == 0 {
                0.0
            } else {
                round6(c as f64 / total as f64)
            }
        })
        .collect()
}

/// Six decimals: more is noise in a manifest someone reads.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Shares below this count as this in [`psi`]: an empty bin would make the index infinite, and
/// a bin that held one pixel in ten thousand is not worth an alarm of its own.
pub const PSI_FLOOR: f64 = 1e-4;

/// Population Stability Index of `actual` against `expected` (two histograms of shares over
/// the same bins): `Σ (a − e) · ln(a / e)`, each share raised to [`PSI_FLOOR`] first. 0 for
/// identical histograms; by the usual reading, under 0.1 is stable, 0.1–0.25 a moderate shift,
/// over 0.25 a significant one. `None` when the bins differ or either histogram is empty.
pub fn psi(expected: &[f64], actual: &[f64]) -> Option<f64> {
    if expected.len() != actual.len()
        || expected.iter().sum::<f64>() <= 0.0
        || actual.iter().sum::<f64>() <= 0.0
    {
        return None;
    }
    Some(
        expected
            .iter()
            .zip(actual)
            .map(|(&e, &a)| {
                let (e, a) = (e.max(PSI_FLOOR), a.max(PSI_FLOOR));
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::results::record::{ClassRecord, DetectionRecord, StageLatency};
    use image::RgbImage;

    pub(crate) fn record(
        classes: Option<Vec<ClassRecord>>,
        detections: Option<Vec<DetectionRecord>>,
    ) -> FrameRecord {
        FrameRecord {
            seq: 0,
            timestamp: String::new(),
            model: "m@1".into(),
            frame: "f".into(),
            frame_size: [4, 4],
            latency_ms: StageLatency::default(),
            classes,
            detections,
            outputs: None,
            values: None,
            zones: None,
            health: None,
        }
    }

    pub(crate) fn det(label_id: usize, score: f32) -> DetectionRecord {
        DetectionRecord {
            label_id,
            label: String::new(),
            score,
            bbox: [0.0; 4],
            keypoints: None,
            track_id: None,
        }
    }

    #[test]
    fn detector_counts_frames_scores_classes_and_detections() {
        let mut t = Tally::new(3, true);
        let dark = RgbImage::from_pixel(8, 8, image::Rgb([10, 10, 10]));
        let bright = RgbImage::from_pixel(8, 8, image::Rgb([250, 250, 250]));
        t.add(
            &ImageView::of(&dark),
            &record(None, Some(vec![det(0, 0.95), det(2, 0.5)])),
        );
        t.add(&ImageView::of(&bright), &record(None, Some(vec![])));
        let p = t.to_profile("test".into());
        assert_eq!(p.frames, 2);
        assert_eq!(p.brightness[0], 0.5);
        assert_eq!(p.brightness[15], 0.5);
        assert_eq!(p.red[0], 0.5, "10 is in the first of 16 levels");
        assert_eq!(p.blue[15], 0.5, "250 is in the last");
        assert_eq!(p.rgb_mean, [130.0, 130.0, 130.0]);
        assert_eq!(p.rgb_std, Some([120.0; 3]), "half at 10, half at 250");
        assert_eq!(p.contrast, 0.0, "flat frames have no contrast");
        assert_eq!(p.sharpness[0], 1.0, "nor any edge");
        assert_eq!(p.top_score[9], 0.5, "0.95 lands in the top bin");
        assert_eq!(p.top_score[0], 0.5, "an empty frame counts as score 0");
        assert_eq!(p.class_share, [0.5, 0.0, 0.5]);
        assert_eq!(p.detections_per_frame, Some(1.0));
        assert_eq!(p.detections[0], 0.5);
        assert_eq!(p.detections[2], 0.5);
        assert_eq!(p.check(3), Ok(()));
    }

    #[test]
    fn classifier_counts_the_top_class_and_measures_contrast() {
        let mut t = Tally::new(2, false);
        let mut img = RgbImage::from_pixel(2, 1, image::Rgb([0, 0, 0]));
        img.put_pixel(1, 0, image::Rgb([200, 200, 200]));
        let top = |id, score| ClassRecord {
            label_id: id,
            label: String::new(),
            score,
        };
        t.add(
            &ImageView::of(&img),
            &record(Some(vec![top(1, 0.7), top(0, 0.3)]), None),
        );
        let p = t.to_profile("test".into());
        assert_eq!(p.class_share, [0.0, 1.0]);
        assert_eq!(p.top_score[7], 1.0);
        assert!((p.contrast - 100.0).abs() < 1e-4, "{}", p.contrast);
        assert_eq!(p.detections_per_frame, None);
        assert!(p.detections.is_empty());
        // One horizontal pair, 200 levels apart: 2·log2(201) = 15.3.
        assert_eq!(p.sharpness[15], 1.0);
    }

    #[test]
    fn large_views_are_sampled_on_a_grid_and_blur_lowers_sharpness() {
        // A 256x256 checkerboard of 1-pixel squares sampled every 8th pixel sees only one
        // colour: a grid, not every pixel.
        let board = RgbImage::from_fn(256, 256, |x, y| image::Rgb([((x + y) % 2 * 255) as u8; 3]));
        let mut t = Tally::new(1, false);
        t.add(&ImageView::of(&board), &record(Some(vec![]), None));
        assert_eq!(t.samples as usize, SAMPLES_PER_SIDE * SAMPLES_PER_SIDE);
        assert_eq!(t.to_profile(String::new()).brightness[0], 1.0);

        // Stripes 8 pixels wide, then the same blurred: sharpness falls by bins.
        let stripes = RgbImage::from_fn(128, 128, |x, _| image::Rgb([(x / 8 % 2 * 200) as u8; 3]));
        let blurred = image::imageops::blur(&stripes, 4.0);
        let bin = |img: &RgbImage| {
            let mut t = Tally::new(1, false);
            t.add(&ImageView::of(img), &record(Some(vec![]), None));
            t.sharpness.iter().position(|&c| c == 1).expect("one frame")
        };
        let (sharp, soft) = (bin(&stripes), bin(&blurred));
        assert!(sharp >= soft + 2, "sharp bin {sharp}, blurred bin {soft}");
    }

    #[test]
    fn clear_keeps_the_shape() {
        let mut t = Tally::new(3, true);
        let img = RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]));
        t.add(&ImageView::of(&img), &record(None, Some(vec![det(1, 0.9)])));
        t.clear();
        assert_eq!(t, Tally::new(3, true));
    }

    #[test]
    fn psi_is_zero_for_the_same_histogram_and_grows_with_the_shift() {
        let reference = [0.25, 0.25, 0.25, 0.25];
        assert_eq!(psi(&reference, &reference), Some(0.0));
        let slight = psi(&reference, &[0.3, 0.25, 0.25, 0.2]).expect("psi");
        let strong = psi(&reference, &[0.7, 0.1, 0.1, 0.1]).expect("psi");
        // (0.05·ln 1.2 + 0.05·ln 1.25) and the textbook value for the larger shift.
        assert!((slight - (0.05 * 1.2f64.ln() + 0.05 * 1.25f64.ln())).abs() < 1e-12);
        assert!(strong > 0.25 && slight < 0.1, "{slight} {strong}");
        // Mass where the reference had none is floored, not infinite.
        let new_bin = psi(&[1.0, 0.0], &[0.5, 0.5]).expect("psi");
        assert!(new_bin.is_finite() && new_bin > 1.0, "{new_bin}");
        assert_eq!(psi(&reference, &[0.5, 0.5]), None, "different bins");
        assert_eq!(psi(&reference, &[0.0; 4]), None, "nothing counted");
    }
}
