//! The manifest as TOML text, with the import's notes as comments and guesses marked.

use super::pixels::{Pixels, IMAGENET_MEAN};
use super::Note;
use crate::manifest::{
    BoxUnits, ColorOrder, ExternalFile, InputDtype, InputSpec, Layout, OutputSpec, ResizeMode,
};
use std::fmt::Write as _;

pub(super) fn layout_key(l: Layout) -> &'static str {
    match l {
        Layout::Nchw => "nchw",
        Layout::Nhwc => "nhwc",
    }
}

pub(super) fn dtype_key(d: InputDtype) -> &'static str {
    match d {
        InputDtype::F32 => "f32",
        InputDtype::U8 => "u8",
    }
}

pub(super) fn resize_key(r: ResizeMode) -> &'static str {
    match r {
        ResizeMode::Stretch => "stretch",
        ResizeMode::Letterbox => "letterbox",
        ResizeMode::CenterCrop => "center-crop",
    }
}

pub(super) fn color_key(c: ColorOrder) -> &'static str {
    match c {
        ColorOrder::Rgb => "rgb",
        ColorOrder::Bgr => "bgr",
        ColorOrder::Gray => "gray",
    }
}

pub(super) struct Header<'a> {
    pub(super) file: &'a str,
    /// How the weights are stored, as the graph shows it (the check holds the file to it).
    pub(super) quantization: crate::onnx_meta::QuantForm,
    pub(super) producer: &'a str,
    pub(super) opset: Option<i64>,
}

/// `text` with control characters (line breaks above all) as spaces, for a comment line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn floats(values: &[f32]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", items.join(", "))
}

const GUESS: &str = "  # GUESS:";

#[allow(clippy::too_many_arguments)]
pub(super) fn render(
    name: &str,
    version: &str,
    header: &Header<'_>,
    labels: &[String],
    (sha256, bytes): (&str, u64),
    external: &[ExternalFile],
    input: &InputSpec,
    pixels: &Pixels,
    output: &OutputSpec,
    notes: &[Note],
) -> String {
    let mut t = String::new();
    let producer = if header.producer.is_empty() {
        "an unnamed exporter".to_owned()
    } else {
        one_line(header.producer)
    };
    let opset = header
        .opset
        .map_or_else(|| "no standard opset".to_owned(), |o| format!("opset {o}"));
    let _ = writeln!(
        t,
        "# Written by `lookout import` from {} ({producer}, {opset}).",
        one_line(header.file)
    );
    if notes.iter().any(Note::is_guess) {
        let _ = writeln!(
            t,
            "# Lines marked GUESS could not be read from the file: check them before trusting \
             results."
        );
    }
    for note in notes {
        let mark = if note.is_guess() { " (GUESS)" } else { "" };
        // Values come from the model (tensor names, metadata): a line break in one must not
        // end the comment and write keys of the model's choosing.
        let _ = writeln!(
            t,
            "# {}{mark}: {} — {}",
            note.field,
            one_line(&note.value),
            one_line(&note.reason)
        );
    }
    let _ = writeln!(t, "name = {}", quoted(name));
    let _ = writeln!(t, "version = {}", quoted(version));
    let _ = writeln!(
        t,
        "description = {}",
        quoted(&format!(
            "Imported from {} ({producer}, {opset}).",
            header.file
        ))
    );
    let guessed_labels = notes.iter().any(|n| n.field == "labels" && n.is_guess());
    let items: Vec<String> = labels.iter().map(|l| quoted(l)).collect();
    let _ = write!(t, "labels = [{}]", items.join(", "));
    if guessed_labels {
        let _ = write!(t, "{GUESS} placeholders, the file names no classes");
    }
    t.push('\n');
    let _ = writeln!(t, "\n[model]");
    let _ = writeln!(t, "file = {}", quoted(header.file));
    let _ = writeln!(t, "sha256 = {}", quoted(sha256));
    let _ = writeln!(t, "bytes = {bytes}");
    let _ = writeln!(t, "quantization = {}", quoted(header.quantization.key()));
    if !external.is_empty() {
        let items: Vec<String> = external
            .iter()
            .map(|f| {
                format!(
                    "{{ file = {}, sha256 = {}, bytes = {} }}",
                    quoted(&f.file),
                    quoted(&f.sha256),
                    f.bytes
                )
            })
            .collect();
        let _ = writeln!(t, "external = [\n    {},\n]", items.join(",\n    "));
    }
    let _ = writeln!(t, "\n[input]");
    let _ = writeln!(t, "name = {}", quoted(&input.name));
    let _ = writeln!(
        t,
        "shape = [{}]",
        input.shape.map(|d| d.to_string()).join(", ")
    );
    let _ = writeln!(t, "dtype = {}", quoted(dtype_key(input.dtype)));
    let _ = write!(t, "layout = {}", quoted(layout_key(input.layout)));
    if notes.iter().any(|n| n.field == "input.layout") {
        let _ = write!(t, "{GUESS} no dimension is a channel count");
    }
    t.push('\n');
    let _ = writeln!(t, "\n[preprocess]");
    let line = |t: &mut String, key: &str, value: String, guessed: bool, why: &str| {
        let _ = write!(t, "{key} = {value}");
        if guessed {
            let _ = write!(t, "{GUESS} {why}");
        }
        t.push('\n');
    };
    let [resize_guess, color_guess, values_guess] = pixels.guessed;
    line(
        &mut t,
        "resize",
        quoted(resize_key(pixels.resize)),
        resize_guess,
        "how frames were fitted in training (stretch, letterbox, center-crop)",
    );
    line(
        &mut t,
        "color",
        quoted(color_key(pixels.color)),
        color_guess,
        "bgr for models trained on OpenCV frames",
    );
    line(
        &mut t,
        "scale",
        format!("{:?}", pixels.scale),
        values_guess,
        "pixels / 255",
    );
    let imagenet = pixels.mean == IMAGENET_MEAN;
    line(
        &mut t,
        "mean",
        floats(&pixels.mean),
        values_guess,
        if imagenet {
            "ImageNet's, the torchvision convention for classifiers"
        } else {
            "no mean subtracted"
        },
    );
    line(
        &mut t,
        "std",
        floats(&pixels.std),
        values_guess,
        if imagenet {
            "ImageNet's"
        } else {
            "no division"
        },
    );
    let _ = writeln!(t, "\n[output]");
    let _ = writeln!(t, "decoder = {}", quoted(output.decoder_name()));
    match output {
        OutputSpec::Classify { softmax, top_k } => {
            let _ = writeln!(t, "softmax = {softmax}");
            let _ = writeln!(t, "top_k = {top_k}");
        }
        OutputSpec::Yolov5 { box_units }
        | OutputSpec::Yolov8 { box_units, .. }
        | OutputSpec::End2end { box_units, .. } => {
            let _ = writeln!(
                t,
                "box_units = {}",
                quoted(match box_units {
                    BoxUnits::Pixels => "pixels",
                    BoxUnits::Normalized => "normalized",
                })
            );
            if let Some([k, d]) = output.keypoints() {
                let _ = writeln!(t, "keypoints = [{k}, {d}]");
            }
        }
        OutputSpec::Ssd { scores, boxes, .. } => {
            let _ = writeln!(t, "scores = {}", quoted(scores));
            let _ = writeln!(t, "boxes = {}", quoted(boxes));
            let _ = writeln!(t, "box_encoding = \"corners\"{GUESS} decoded corners; center-offsets with priors for raw SSD heads");
            let _ = writeln!(t, "box_units = \"normalized\"");
        }
        OutputSpec::Raw { values } => {
            let _ = writeln!(t, "values = {values}");
        }
    }
    t
}
