//! Reference statistics of what a model sees and says, for drift monitoring.
//!
//! A model is only right on frames like the ones it was judged on. The manifest's `[profile]`
//! records, for held-out data, what those frames looked like (brightness histogram, colour,
//! contrast) and what the model answered (histogram of each frame's best score, share of each
//! class, detections per frame). A device computes the same statistics over its own recent
//! frames with the same code ([`ProfileBuilder`]) so the two can be compared: a lens covered in
//! dust, night falling or a new kind of object shows up as a shifted histogram long before
//! anyone reads the results. (The on-device comparison is the drift-monitoring issue's work.)
//!
//! Statistics are taken from the source frame (not the model input) so that letterbox padding,
//! which depends on the frame's aspect ratio rather than the scene, cannot count as drift.

use crate::manifest::{Manifest, ManifestError, Profile, BRIGHTNESS_BINS, SCORE_BINS};
use crate::pipeline::{Pipeline, PipelineError};
use crate::record::FrameRecord;
use crate::source::{read_frame, SourceError};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a profile could not be measured or stored.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// An image cannot be read: a reference with holes would be a wrong baseline.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The model failed on an image.
    #[error("{path}: {source}")]
    Pipeline {
        /// The image.
        path: PathBuf,
        /// What failed (boxed: a pipeline error is large and this one is rare).
        source: Box<PipelineError>,
    },
    /// The manifest cannot be rewritten.
    #[error("{path}: {source}")]
    Write {
        /// The manifest.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The rewritten manifest does not load back.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Runs `pipeline` on every image of `files` at the manifest's own thresholds (what a
/// deployment reports) and returns their statistics. `progress(done, total)` after each.
pub fn measure(
    pipeline: &mut Pipeline,
    files: &[PathBuf],
    data: String,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Profile, ProfileError> {
    let manifest = pipeline.manifest();
    let mut builder = ProfileBuilder::new(manifest.labels.len(), manifest.output.is_detector());
    for (done, path) in files.iter().enumerate() {
        let frame = read_frame(path)?;
        let record =
            pipeline
                .process(&frame, Duration::ZERO)
                .map_err(|source| ProfileError::Pipeline {
                    path: path.clone(),
                    source: Box::new(source),
                })?;
        builder.add(&frame.image, &record);
        progress(done + 1, files.len());
    }
    Ok(builder.finish(data))
}

/// `profile` as a TOML `[profile]` table, as manifests store it.
pub fn to_toml(profile: &Profile) -> Result<String, toml::ser::Error> {
    #[derive(serde::Serialize)]
    struct Table<'a> {
        profile: &'a Profile,
    }
    toml::to_string(&Table { profile })
}

/// The table a TOML header line opens (`[output.priors]  # note` → `output.priors`), or `None`
/// for any other line.
fn table_header(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix('[')?;
    let name = rest.strip_prefix('[').unwrap_or(rest).split(']').next()?;
    Some(
        name.chars()
            .filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'')
            .collect(),
    )
}

/// Stores `profile` as the `[profile]` table of the manifest at `path`, replacing any there,
/// and keeps the rest of the file as written (line endings become `\n`). The new text must
/// load as a manifest before it replaces the file, which happens by rename, so a mistake, a
/// full disk or a crash cannot leave a broken manifest behind.
pub fn write_into_manifest(path: &Path, profile: &Profile) -> Result<(), ProfileError> {
    let io = |source| ProfileError::Write {
        path: path.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut kept = String::new();
    let mut in_profile = false;
    for line in text.lines() {
        if let Some(table) = table_header(line) {
            in_profile = table == "profile" || table.starts_with("profile.");
        }
        if !in_profile {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    let table = to_toml(profile).map_err(|e| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.to_string(),
        ))
    })?;
    let updated = format!("{}\n\n{table}", kept.trim_end());
    Manifest::parse(&updated, path)?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, updated).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Pixels sampled per frame side at most; a 1080p frame is not read in full for a histogram.
const SAMPLES_PER_SIDE: u32 = 64;

/// Accumulates a [`Profile`] frame by frame.
#[derive(Debug, Clone)]
pub struct ProfileBuilder {
    frames: u64,
    brightness: [u64; BRIGHTNESS_BINS],
    samples: u64,
    rgb_sum: [f64; 3],
    contrast_sum: f64,
    top_score: [u64; SCORE_BINS],
    class_counts: Vec<u64>,
    detections: Option<u64>,
}

impl ProfileBuilder {
    /// A builder for a model with `labels` labels; `detector` adds detections per frame.
    pub fn new(labels: usize, detector: bool) -> Self {
        Self {
            frames: 0,
            brightness: [0; BRIGHTNESS_BINS],
            samples: 0,
            rgb_sum: [0.0; 3],
            contrast_sum: 0.0,
            top_score: [0; SCORE_BINS],
            class_counts: vec![0; labels],
            detections: detector.then_some(0),
        }
    }

    /// Adds one frame and what the model reported for it.
    pub fn add(&mut self, image: &RgbImage, record: &FrameRecord) {
        self.frames += 1;
        let (w, h) = image.dimensions();
        let (step_x, step_y) = (
            w.div_ceil(SAMPLES_PER_SIDE).max(1),
            h.div_ceil(SAMPLES_PER_SIDE).max(1),
        );
        let (mut n, mut sum, mut sum_sq) = (0u64, 0.0f64, 0.0f64);
        for y in (0..h).step_by(step_y as usize) {
            for x in (0..w).step_by(step_x as usize) {
                let [r, g, b] = image.get_pixel(x, y).0.map(f64::from);
                let luma = 0.299 * r + 0.587 * g + 0.114 * b;
                let bin =
                    ((luma / 256.0 * BRIGHTNESS_BINS as f64) as usize).min(BRIGHTNESS_BINS - 1);
                self.brightness[bin] += 1;
                self.rgb_sum[0] += r;
                self.rgb_sum[1] += g;
                self.rgb_sum[2] += b;
                n += 1;
                sum += luma;
                sum_sq += luma * luma;
            }
        }
        self.samples += n;
        if n > 0 {
            let mean = sum / n as f64;
            self.contrast_sum += (sum_sq / n as f64 - mean * mean).max(0.0).sqrt();
        }

        let mut best = 0.0f32;
        let mut count = |id: usize| {
            if let Some(c) = self.class_counts.get_mut(id) {
                *c += 1;
            }
        };
        if let Some(classes) = &record.classes {
            if let Some(top) = classes.first() {
                best = top.score;
                count(top.label_id);
            }
        }
        if let Some(dets) = &record.detections {
            for d in dets {
                best = best.max(d.score);
                count(d.label_id);
            }
            if let Some(total) = &mut self.detections {
                *total += dets.len() as u64;
            }
        }
        let bin = ((best.clamp(0.0, 1.0) * SCORE_BINS as f32) as usize).min(SCORE_BINS - 1);
        self.top_score[bin] += 1;
    }

    /// The statistics so far; `data` says what they were measured on.
    pub fn finish(&self, data: String) -> Profile {
        let shares = |counts: &[u64]| -> Vec<f64> {
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
        };
        let frames = self.frames.max(1) as f64;
        let samples = self.samples.max(1) as f64;
        Profile {
            data,
            frames: self.frames,
            brightness: shares(&self.brightness),
            rgb_mean: self.rgb_sum.map(|s| round6(s / samples)),
            contrast: round6(self.contrast_sum / frames),
            top_score: shares(&self.top_score),
            class_share: shares(&self.class_counts),
            detections_per_frame: self.detections.map(|d| round6(d as f64 / frames)),
        }
    }
}

/// Six decimals: more is noise in a manifest someone reads.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ClassRecord, DetectionRecord, StageLatency};

    fn record(
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
        }
    }

    fn det(label_id: usize, score: f32) -> DetectionRecord {
        DetectionRecord {
            label_id,
            label: String::new(),
            score,
            bbox: [0.0; 4],
        }
    }

    #[test]
    fn detector_profile_counts_frames_scores_and_classes() {
        let mut b = ProfileBuilder::new(3, true);
        let dark = RgbImage::from_pixel(8, 8, image::Rgb([10, 10, 10]));
        let bright = RgbImage::from_pixel(8, 8, image::Rgb([250, 250, 250]));
        b.add(&dark, &record(None, Some(vec![det(0, 0.95), det(2, 0.5)])));
        b.add(&bright, &record(None, Some(vec![])));
        let p = b.finish("test".into());
        assert_eq!(p.frames, 2);
        assert_eq!(p.brightness[0], 0.5);
        assert_eq!(p.brightness[15], 0.5);
        assert_eq!(p.rgb_mean, [130.0, 130.0, 130.0]);
        assert_eq!(p.contrast, 0.0, "flat frames have no contrast");
        assert_eq!(p.top_score[9], 0.5, "0.95 lands in the top bin");
        assert_eq!(p.top_score[0], 0.5, "an empty frame counts as score 0");
        assert_eq!(p.class_share, [0.5, 0.0, 0.5]);
        assert_eq!(p.detections_per_frame, Some(1.0));
        assert_eq!(p.check(3), Ok(()));
    }

    #[test]
    fn classifier_profile_counts_the_top_class_and_measures_contrast() {
        let mut b = ProfileBuilder::new(2, false);
        let mut img = RgbImage::from_pixel(2, 1, image::Rgb([0, 0, 0]));
        img.put_pixel(1, 0, image::Rgb([200, 200, 200]));
        let top = |id, score| ClassRecord {
            label_id: id,
            label: String::new(),
            score,
        };
        b.add(&img, &record(Some(vec![top(1, 0.7), top(0, 0.3)]), None));
        let p = b.finish("test".into());
        assert_eq!(p.class_share, [0.0, 1.0]);
        assert_eq!(p.top_score[7], 1.0);
        assert!((p.contrast - 100.0).abs() < 1e-9, "{}", p.contrast);
        assert_eq!(p.detections_per_frame, None);
    }

    #[test]
    fn headers_are_recognised_with_spaces_quotes_and_comments() {
        assert_eq!(table_header("[profile]").as_deref(), Some("profile"));
        assert_eq!(
            table_header("  [ profile ]  # statistics").as_deref(),
            Some("profile")
        );
        assert_eq!(table_header("[\"profile\"]").as_deref(), Some("profile"));
        assert_eq!(
            table_header("[output.priors]").as_deref(),
            Some("output.priors")
        );
        assert_eq!(table_header("min_sizes = [[1.0]]"), None);
        assert_eq!(
            table_header("  [32.0, 48.0],").as_deref(),
            Some("32.0,48.0")
        );
    }

    #[test]
    fn a_profile_table_in_the_middle_is_replaced_and_a_bad_result_never_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shapes-detector.toml");
        let text = std::fs::read_to_string(&src).expect("manifest");
        let start = text
            .find("[profile]")
            .expect("shipped manifests carry a profile");
        let (head, profile) = text.split_at(start);
        // Profile first, with a commented header, then the rest: the old table must go whole.
        let (top, rest) = head.split_at(head.find("[model]").expect("model table"));
        let moved = format!(
            "{top}[ profile ] # old\n{}\n{rest}",
            &profile["[profile]".len()..]
        );
        let path = dir.path().join("shapes-detector.toml");
        std::fs::write(&path, &moved).expect("write");
        let mut b = ProfileBuilder::new(3, true);
        b.add(&RgbImage::new(4, 4), &record(None, Some(vec![det(1, 0.9)])));
        write_into_manifest(&path, &b.finish("one frame".into())).expect("rewritten");
        let written = std::fs::read_to_string(&path).expect("read");
        assert_eq!(written.matches("profile]").count(), 1, "{written}");
        let m = Manifest::load(&path).expect("loads");
        assert_eq!(m.profile.expect("profile").frames, 1);

        // A profile that does not fit the model (2 shares for 3 labels) is refused, and the
        // file on disk stays as it was.
        let before = std::fs::read_to_string(&path).expect("read");
        let mut b = ProfileBuilder::new(2, true);
        b.add(&RgbImage::new(4, 4), &record(None, Some(vec![])));
        let err = write_into_manifest(&path, &b.finish("x".into())).expect_err("2 labels");
        assert!(err.to_string().contains("profile.class_share"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), before);
    }

    #[test]
    fn a_malformed_profile_names_its_field() {
        let mut b = ProfileBuilder::new(2, false);
        b.add(&RgbImage::new(2, 2), &record(Some(vec![]), None));
        let mut p = b.finish("x".into());
        assert_eq!(p.check(3).unwrap_err().0, "profile.class_share");
        p.top_score[0] = 0.5;
        assert_eq!(p.check(2).unwrap_err().0, "profile.top_score");
        p.brightness.pop();
        assert_eq!(p.check(2).unwrap_err().0, "profile.brightness");
    }
}
