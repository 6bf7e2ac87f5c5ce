//! The pixel conversion: flags, the exporter's convention, or a guess marked as one.

use super::render::{color_key, resize_key};
use super::{ImportOptions, Note, Origin, Ultralytics};
use crate::manifest::{ColorOrder, InputDtype, InputSpec, OutputSpec, ResizeMode};

/// Labels per ImageNet-normalised channel, the torchvision convention guessed for a classifier
/// without metadata.
pub(super) const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub(super) const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The pixel conversion: flags, the exporter's convention, or a marked guess.
pub(super) struct Pixels {
    pub(super) resize: ResizeMode,
    pub(super) color: ColorOrder,
    pub(super) scale: f32,
    pub(super) mean: Vec<f32>,
    pub(super) std: Vec<f32>,
    /// Which of resize, color, scale/mean/std are guesses.
    pub(super) guessed: [bool; 3],
}

pub(super) fn preprocess(
    input: &InputSpec,
    output: &OutputSpec,
    ultralytics: Option<&Ultralytics>,
    options: &ImportOptions,
    notes: &mut Vec<Note>,
) -> Result<Pixels, (&'static str, String)> {
    let channels = input.channels();
    let classifier = matches!(output, OutputSpec::Classify { .. });
    let (convention, why) = match ultralytics {
        Some(u) if u.is_classifier() => (
            true,
            "Ultralytics classifiers: centre crop, RGB, pixels / 255",
        ),
        Some(_) => (
            true,
            "Ultralytics detectors: letterbox with 114, RGB, pixels / 255",
        ),
        None => (false, ""),
    };
    let mut guessed = [false; 3];
    let resize = match options.resize {
        Some(r) => r,
        None if convention => {
            if classifier {
                ResizeMode::CenterCrop
            } else {
                ResizeMode::Letterbox
            }
        }
        None => {
            guessed[0] = true;
            if classifier {
                ResizeMode::CenterCrop
            } else {
                ResizeMode::Stretch
            }
        }
    };
    let color = match options.color {
        Some(c) => c,
        None if channels == 1 => ColorOrder::Gray,
        None if convention => ColorOrder::Rgb,
        None => {
            guessed[1] = true;
            ColorOrder::Rgb
        }
    };
    let raw_pixels = input.dtype == InputDtype::U8;
    let stated = options.scale.is_some() || options.mean.is_some() || options.std.is_some();
    let all_stated = options.scale.is_some() && options.mean.is_some() && options.std.is_some();
    if raw_pixels && stated {
        return Err((
            "--scale",
            "the input is uint8: lookout feeds it raw pixels, without scale, mean or std".into(),
        ));
    }
    let (scale, mean, std) = if raw_pixels {
        (1.0, vec![0.0; channels], vec![1.0; channels])
    } else if convention && !stated {
        (1.0 / 255.0, vec![0.0; channels], vec![1.0; channels])
    } else {
        // What a flag leaves out of scale, mean and std is a guess too.
        if !all_stated && !convention {
            guessed[2] = true;
        }
        let imagenet = classifier && channels == 3 && !stated;
        let scale = options.scale.unwrap_or(1.0 / 255.0);
        let mean = options.mean.clone().unwrap_or_else(|| {
            if imagenet {
                IMAGENET_MEAN.to_vec()
            } else {
                vec![0.0; channels]
            }
        });
        let std = options.std.clone().unwrap_or_else(|| {
            if imagenet {
                IMAGENET_STD.to_vec()
            } else {
                vec![1.0; channels]
            }
        });
        (scale, mean, std)
    };
    for (flag, values) in [("--mean", &mean), ("--std", &std)] {
        if values.len() != channels {
            return Err((
                flag,
                format!(
                    "has {} values, the input has {channels} channels",
                    values.len()
                ),
            ));
        }
    }
    let guesses: Vec<&str> = ["resize", "color", "scale/mean/std"]
        .into_iter()
        .zip(guessed)
        .filter_map(|(part, g)| g.then_some(part))
        .collect();
    let flagged = options.resize.is_some() || options.color.is_some() || stated;
    let (origin, reason) = if raw_pixels {
        (Origin::Graph, "uint8 input: raw pixels".to_owned())
    } else if !guesses.is_empty() {
        (
            Origin::Guess,
            format!(
                "the file does not say how pixels were prepared: {} guessed (--resize, --color, \
                 --scale, --mean, --std state them)",
                guesses.join(", ")
            ),
        )
    } else if flagged {
        (Origin::Flag, "stated by flags".to_owned())
    } else if convention {
        (Origin::Convention, why.to_owned())
    } else {
        (Origin::Graph, "gray input: one channel".to_owned())
    };
    notes.push(Note {
        field: "preprocess",
        value: format!(
            "{}, {}, scale {scale}, mean {mean:?}, std {std:?}",
            resize_key(resize),
            color_key(color)
        ),
        origin,
        reason,
    });
    Ok(Pixels {
        resize,
        color,
        scale,
        mean,
        std,
        guessed,
    })
}
