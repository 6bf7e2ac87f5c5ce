//! Labelled image sets, the ground truth `lookout eval` measures a model against.
//!
//! Two common layouts, chosen by the kind of model:
//! - **Detection, YOLO txt**: images with one `.txt` per image holding `class cx cy w h` per
//!   object, normalised to the image size. Either side by side in one folder, or the
//!   Ultralytics layout `DIR/images/*` + `DIR/labels/*.txt`. An image without a label file has
//!   no objects (Ultralytics' "background image"). Class names may be given in `labels.txt` or
//!   `classes.txt` in `DIR`, one per line; they must then agree with the model's labels.
//! - **Classification, image folder**: `DIR/<label>/*.png|jpg…`, one sub-folder per class, named
//!   as in the model's labels (the torchvision `ImageFolder` and Ultralytics classify layout).
//!
//! The whole set is read and checked before any image reaches a model, so a typo on line 3 of
//! one label file stops an evaluation at once with the file and line, not after an hour.

use crate::frames::source::{image_files, SourceError};
use std::path::{Path, PathBuf};

/// A labelled set is missing, unreadable or contradicts the model.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file or folder cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Listing images failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A label line is malformed.
    #[error("{path}:{line}: {message}")]
    Label {
        /// The label file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The set's classes do not fit the model's labels.
    #[error("{path}: {message}")]
    Classes {
        /// The class-name file or class folder.
        path: PathBuf,
        /// What disagrees.
        message: String,
    },
}

/// One ground-truth object, YOLO style: class id and centre/size normalised to the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YoloBox {
    /// Class id, an index into the model's labels.
    pub class_id: usize,
    /// Centre x / image width.
    pub cx: f32,
    /// Centre y / image height.
    pub cy: f32,
    /// Width / image width.
    pub w: f32,
    /// Height / image height.
    pub h: f32,
}

impl YoloBox {
    /// Corners `[x0, y0, x1, y1]` in pixels of a `width`×`height` image.
    pub fn to_pixels(&self, width: u32, height: u32) -> [f32; 4] {
        let (w, h) = (width as f32, height as f32);
        [
            (self.cx - self.w / 2.0) * w,
            (self.cy - self.h / 2.0) * h,
            (self.cx + self.w / 2.0) * w,
            (self.cy + self.h / 2.0) * h,
        ]
    }
}

/// One image of a detection set and its objects.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionSample {
    /// The image file.
    pub image: PathBuf,
    /// Its objects (empty for a background image).
    pub objects: Vec<YoloBox>,
}

/// A detection set in YOLO txt layout.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionSet {
    /// Images in name order, with their objects.
    pub samples: Vec<DetectionSample>,
    /// Images that had no label file (counted as having no objects).
    pub unlabelled: usize,
}

/// Slack for normalised coordinates: exporters round, and a box touching the border may end a
/// hair past 1.0. Anything beyond this is a real mistake (pixel units, swapped fields).
const NORMALISED_SLACK: f32 = 0.01;

impl DetectionSet {
    /// Reads and checks a YOLO txt set at `dir` for a model with these `labels`.
    pub fn open(dir: &Path, labels: &[String]) -> Result<Self, DatasetError> {
        check_class_names(dir, labels)?;
        let (image_dir, label_dir) = if dir.join("images").is_dir() {
            let labels = dir.join("labels");
            if !labels.is_dir() {
                return Err(DatasetError::Classes {
                    path: labels,
                    message: "is missing: an `images/` folder needs its `labels/` beside it".into(),
                });
            }
            (dir.join("images"), labels)
        } else {
            (dir.to_owned(), dir.to_owned())
        };
        let mut samples = Vec::new();
        let mut unlabelled = 0;
        for image in image_files(&image_dir)? {
            // `a.b.png` → `a.b.txt`: only the image extension is replaced, as Ultralytics does.
            let stem = image.file_stem().unwrap_or_default().to_string_lossy();
            let label_file = label_dir.join(format!("{stem}.txt"));
            let objects = match std::fs::read_to_string(&label_file) {
                Ok(text) => parse_yolo_labels(&text, &label_file, labels.len())?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    unlabelled += 1;
                    Vec::new()
                }
                Err(source) => {
                    return Err(DatasetError::Io {
                        path: label_file,
                        source,
                    })
                }
            };
            samples.push(DetectionSample { image, objects });
        }
        if unlabelled == samples.len() {
            // Most likely labels in another place or layout; an mAP of 0 would hide that.
            return Err(DatasetError::Classes {
                path: label_dir,
                message: format!(
                    "none of the {} images has a YOLO label file (<image stem>.txt) here",
                    samples.len()
                ),
            });
        }
        Ok(Self {
            samples,
            unlabelled,
        })
    }

    /// Number of ground-truth objects.
    pub fn objects(&self) -> usize {
        self.samples.iter().map(|s| s.objects.len()).sum()
    }
}

/// Parses one YOLO label file; `path` names it in errors.
pub fn parse_yolo_labels(
    text: &str,
    path: &Path,
    classes: usize,
) -> Result<Vec<YoloBox>, DatasetError> {
    let mut objects = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fail = |message: String| DatasetError::Label {
            path: path.to_owned(),
            line: index + 1,
            message,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() != 5 {
            return Err(fail(format!(
                "expected `class cx cy w h` (5 fields), found {} in {line:?}",
                fields.len()
            )));
        }
        let class_id: usize = fields[0]
            .parse()
            .map_err(|_| fail(format!("class {:?} is not a class id", fields[0])))?;
        if class_id >= classes {
            return Err(fail(format!(
                "class {class_id} is out of range: the model has {classes} labels"
            )));
        }
        let mut values = [0.0f32; 4];
        for (value, (name, text)) in values
            .iter_mut()
            .zip(["cx", "cy", "w", "h"].into_iter().zip(&fields[1..]))
        {
            *value = text
                .parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| fail(format!("{name} {text:?} is not a number")))?;
            if !(-NORMALISED_SLACK..=1.0 + NORMALISED_SLACK).contains(value) {
                return Err(fail(format!(
                    "{name} {text} is outside 0..1: YOLO labels are normalised to the image size"
                )));
            }
        }
        let [cx, cy, w, h] = values;
        if w <= 0.0 || h <= 0.0 {
            return Err(fail(format!("box has zero or negative size ({w} x {h})")));
        }
        objects.push(YoloBox {
            class_id,
            cx,
            cy,
            w,
            h,
        });
    }
    Ok(objects)
}

/// If the set names its classes, they must be the model's, in the model's order.
fn check_class_names(dir: &Path, labels: &[String]) -> Result<(), DatasetError> {
    let Some(path) = ["labels.txt", "classes.txt"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
    else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path).map_err(|source| DatasetError::Io {
        path: path.clone(),
        source,
    })?;
    let names: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if names.len() > labels.len() {
        return Err(DatasetError::Classes {
            path,
            message: format!(
                "names {} classes, the model has {} labels ({})",
                names.len(),
                labels.len(),
                labels.join(", ")
            ),
        });
    }
    for (id, (name, label)) in names.iter().zip(labels).enumerate() {
        if name != label {
            return Err(DatasetError::Classes {
                path,
                message: format!("class {id} is {name:?} but the model's label {id} is {label:?}"),
            });
        }
    }
    Ok(())
}

/// A classification set in image-folder layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationSet {
    /// Images and their true class ids, by class folder then file name.
    pub samples: Vec<(PathBuf, usize)>,
}

impl ClassificationSet {
    /// Reads `dir/<label>/*` for a model with these `labels`.
    pub fn open(dir: &Path, labels: &[String]) -> Result<Self, DatasetError> {
        let io = |source| DatasetError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut folders = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.is_dir() {
                folders.push(path);
            }
        }
        folders.sort();
        if folders.is_empty() {
            return Err(DatasetError::Classes {
                path: dir.to_owned(),
                message: format!(
                    "has no class folders; expected one sub-folder per label ({})",
                    labels.join(", ")
                ),
            });
        }
        let mut samples = Vec::new();
        for folder in folders {
            let name = folder.file_name().unwrap_or_default().to_string_lossy();
            let Some(class_id) = labels.iter().position(|l| *l == name) else {
                return Err(DatasetError::Classes {
                    message: format!(
                        "folder {name:?} is not one of the model's labels ({})",
                        labels.join(", ")
                    ),
                    path: folder,
                });
            };
            match image_files(&folder) {
                Ok(files) => samples.extend(files.into_iter().map(|f| (f, class_id))),
                // An empty class folder is allowed: that class is simply not measured.
                Err(SourceError::EmptyDirectory { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if samples.is_empty() {
            return Err(SourceError::EmptyDirectory {
                path: dir.to_owned(),
            }
            .into());
        }
        Ok(Self { samples })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["circle", "square", "triangle"].map(String::from).to_vec()
    }

    fn png(path: &Path) {
        image::RgbImage::new(4, 3).save(path).expect("png");
    }

    #[test]
    fn yolo_lines_parse_and_convert_to_pixels() {
        let boxes = parse_yolo_labels(
            "1 0.5 0.5 0.25 0.5\n\n2 0.1 0.2 0.2 0.2\n",
            Path::new("a.txt"),
            3,
        )
        .expect("valid");
        assert_eq!(boxes.len(), 2);
        assert_eq!(boxes[0].class_id, 1);
        assert_eq!(boxes[0].to_pixels(200, 100), [75.0, 25.0, 125.0, 75.0]);
        let p = boxes[1].to_pixels(100, 100);
        assert!(
            (p[0] - 0.0).abs() < 1e-5 && (p[3] - 30.0).abs() < 1e-4,
            "{p:?}"
        );
    }

    #[test]
    fn bad_yolo_lines_name_file_line_and_field() {
        let cases = [
            (
                "0 0.5 0.5 0.2\n",
                "a.txt:1: expected `class cx cy w h` (5 fields), found 4",
            ),
            (
                "0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n",
                "a.txt:2: class 3 is out of range",
            ),
            (
                "x 0.5 0.5 0.2 0.2\n",
                "a.txt:1: class \"x\" is not a class id",
            ),
            ("0 0.5 nan 0.2 0.2\n", "a.txt:1: cy \"nan\" is not a number"),
            ("0 64 48 10 10\n", "a.txt:1: cx 64 is outside 0..1"),
            (
                "0 0.5 0.5 0 0.2\n",
                "a.txt:1: box has zero or negative size",
            ),
        ];
        for (text, want) in cases {
            let err = parse_yolo_labels(text, Path::new("a.txt"), 3)
                .expect_err(text)
                .to_string();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
    }

    #[test]
    fn detection_set_side_by_side_with_a_background_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        png(&dir.path().join("b.png"));
        png(&dir.path().join("a.png"));
        std::fs::write(dir.path().join("a.txt"), "2 0.5 0.5 0.5 0.5\n").expect("write");
        std::fs::write(dir.path().join("labels.txt"), "circle\nsquare\ntriangle\n").expect("write");
        let set = DetectionSet::open(dir.path(), &labels()).expect("valid set");
        assert_eq!(set.samples.len(), 2);
        assert!(set.samples[0].image.ends_with("a.png"));
        assert_eq!(set.samples[0].objects[0].class_id, 2);
        assert!(set.samples[1].objects.is_empty());
        assert_eq!((set.unlabelled, set.objects()), (1, 1));
    }

    #[test]
    fn detection_set_in_ultralytics_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("images")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("labels")).expect("mkdir");
        png(&dir.path().join("images/x.jpg.png"));
        std::fs::write(dir.path().join("labels/x.jpg.txt"), "0 0.5 0.5 0.1 0.1\n").expect("write");
        let set = DetectionSet::open(dir.path(), &labels()).expect("valid set");
        assert_eq!(set.samples[0].objects.len(), 1);
        assert_eq!(set.unlabelled, 0);
    }

    #[test]
    fn a_set_without_any_label_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        png(&dir.path().join("a.png"));
        let err = DetectionSet::open(dir.path(), &labels())
            .expect_err("no labels")
            .to_string();
        assert!(
            err.contains("none of the 1 images has a YOLO label file"),
            "{err}"
        );
        std::fs::create_dir(dir.path().join("images")).expect("mkdir");
        png(&dir.path().join("images/a.png"));
        let err = DetectionSet::open(dir.path(), &labels())
            .expect_err("no labels/")
            .to_string();
        assert!(err.contains("labels: is missing"), "{err}");
    }

    #[test]
    fn class_names_must_match_the_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        png(&dir.path().join("a.png"));
        std::fs::write(dir.path().join("classes.txt"), "circle\ntriangle\n").expect("write");
        let err = DetectionSet::open(dir.path(), &labels())
            .expect_err("order differs")
            .to_string();
        assert!(
            err.ends_with(
                "classes.txt: class 1 is \"triangle\" but the model's label 1 is \"square\""
            ),
            "{err}"
        );
    }

    #[test]
    fn classification_folders_are_labels() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (folder, file) in [
            ("square", "1.png"),
            ("circle", "2.png"),
            ("circle", "1.png"),
        ] {
            std::fs::create_dir_all(dir.path().join(folder)).expect("mkdir");
            png(&dir.path().join(folder).join(file));
        }
        std::fs::create_dir_all(dir.path().join("triangle")).expect("mkdir");
        let set = ClassificationSet::open(dir.path(), &labels()).expect("valid set");
        let got: Vec<(String, usize)> = set
            .samples
            .iter()
            .map(|(p, c)| (p.file_name().unwrap().to_string_lossy().into_owned(), *c))
            .collect();
        assert_eq!(
            got,
            [
                ("1.png".into(), 0),
                ("2.png".into(), 0),
                ("1.png".into(), 1)
            ]
        );

        std::fs::create_dir_all(dir.path().join("hexagon")).expect("mkdir");
        let err = ClassificationSet::open(dir.path(), &labels())
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("hexagon: folder \"hexagon\" is not one of the model's labels (circle, square, triangle)"),
            "{err}"
        );
    }
}
