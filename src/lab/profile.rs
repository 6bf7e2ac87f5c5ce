//! Reference statistics of what a model sees and says, for drift monitoring.
//!
//! A model is only right on frames like the ones it was judged on. The manifest's `[profile]`
//! records, for held-out data, what those frames looked like (brightness and colour histograms,
//! sharpness, contrast) and what the model answered (histogram of each frame's best score,
//! share of each class, detections per frame). A device counts the same statistics over its
//! own recent frames with the same code ([`crate::lifecycle::drift::stats::Tally`], on the model's view of
//! the frame) and compares the two ([`crate::lifecycle::drift`]): a lens covered in dust, night falling or
//! a new kind of object shows up as a shifted histogram long before anyone reads the results.

use crate::frames::preprocess::ImageView;
use crate::frames::source::{read_frame, SourceError};
use crate::lifecycle::drift::stats::Tally;
use crate::manifest::{Manifest, Profile};
use crate::pipeline::{Pipeline, PipelineError};
use lookout_contract::ConfigError;
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
    Manifest(#[from] ConfigError),
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
    let mut tally = Tally::new(manifest.labels.len(), manifest.output.is_detector());
    for (done, path) in files.iter().enumerate() {
        let frame = read_frame(path)?;
        let record =
            pipeline
                .process(&frame, Duration::ZERO)
                .map_err(|source| ProfileError::Pipeline {
                    path: path.clone(),
                    source: Box::new(source),
                })?;
        let view = pipeline
            .model_view(&frame)
            .unwrap_or_else(|| ImageView::of(&frame.image));
        tally.add(&view, &record);
        progress(done + 1, files.len());
    }
    Ok(tally.to_profile(data))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::drift::stats::tests::{det, record};
    use image::RgbImage;

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
        let mut t = Tally::new(3, true);
        let frame = RgbImage::new(4, 4);
        t.add(
            &ImageView::of(&frame),
            &record(None, Some(vec![det(1, 0.9)])),
        );
        write_into_manifest(&path, &t.to_profile("one frame".into())).expect("rewritten");
        let written = std::fs::read_to_string(&path).expect("read");
        assert_eq!(written.matches("profile]").count(), 1, "{written}");
        let m = Manifest::load(&path).expect("loads");
        assert_eq!(m.profile.expect("profile").frames, 1);

        // A profile that does not fit the model (2 shares for 3 labels) is refused, and the
        // file on disk stays as it was.
        let before = std::fs::read_to_string(&path).expect("read");
        let mut t = Tally::new(2, true);
        t.add(&ImageView::of(&frame), &record(None, Some(vec![])));
        let err = write_into_manifest(&path, &t.to_profile("x".into())).expect_err("2 labels");
        assert!(err.to_string().contains("profile.class_share"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), before);
    }

    #[test]
    fn a_malformed_profile_names_its_field() {
        let mut t = Tally::new(2, false);
        let frame = RgbImage::new(2, 2);
        t.add(&ImageView::of(&frame), &record(Some(vec![]), None));
        let mut p = t.to_profile("x".into());
        assert_eq!(p.check(3).unwrap_err().0, "profile.class_share");
        p.top_score[0] = 0.5;
        assert_eq!(p.check(2).unwrap_err().0, "profile.top_score");
        p.brightness.pop();
        assert_eq!(p.check(2).unwrap_err().0, "profile.brightness");
    }
}
