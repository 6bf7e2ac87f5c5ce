//! `lookout import MODEL.onnx`: writes the manifest beside a model someone already has, says
//! where each value came from, then runs the deployment check on it.

use super::{check, print_out, ModelArgs, PlaceArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use lookout::manifest::{ColorOrder, Layout, ResizeMode};
use lookout::model::import::{import, ImportOptions, Origin};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The ONNX file; the manifest is written beside it as <stem>.toml.
    pub(crate) model: PathBuf,
    #[command(flatten)]
    pub(crate) place: PlaceArgs,
    /// Model version written to the manifest.
    #[arg(long = "model-version", default_value = "1")]
    pub(crate) model_version: String,
    /// Labels file, one per line (default: the file's metadata, else labels.txt beside it).
    #[arg(long)]
    pub(crate) labels: Option<PathBuf>,
    /// Input size WIDTHxHEIGHT, for a model whose graph leaves it open.
    #[arg(long, value_parser = parse_size)]
    pub(crate) size: Option<(usize, usize)>,
    /// Input layout: nchw or nhwc.
    #[arg(long, value_parser = parse_layout)]
    pub(crate) layout: Option<Layout>,
    /// Channel order the model was trained on: rgb, bgr or gray.
    #[arg(long, value_parser = parse_color)]
    pub(crate) color: Option<ColorOrder>,
    /// How frames were fitted to the input in training: stretch, letterbox or center-crop.
    #[arg(long, value_parser = parse_resize)]
    pub(crate) resize: Option<ResizeMode>,
    /// Multiplier of the 0–255 pixel value (e.g. 0.00392156862745098 for / 255).
    #[arg(long)]
    pub(crate) scale: Option<f32>,
    /// Per-channel mean subtracted after scaling, comma-separated (e.g. 0.485,0.456,0.406).
    #[arg(long, value_delimiter = ',')]
    pub(crate) mean: Option<Vec<f32>>,
    /// Per-channel divisor, comma-separated (e.g. 0.229,0.224,0.225).
    #[arg(long, value_delimiter = ',')]
    pub(crate) std: Option<Vec<f32>>,
    /// Decoder, instead of the one chosen from metadata and output shapes: classify, yolov8,
    /// yolov5, end2end, ssd or raw.
    #[arg(long)]
    pub(crate) decoder: Option<String>,
    /// Replace a manifest already beside the model.
    #[arg(long)]
    pub(crate) force: bool,
    /// Print the manifest instead of writing it (no check runs).
    #[arg(long)]
    pub(crate) dry_run: bool,
}

fn parse_size(text: &str) -> Result<(usize, usize), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{text:?} is not WIDTHxHEIGHT"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{text:?}: {v:?} is not a positive whole number"))
    };
    Ok((parse(w)?, parse(h)?))
}

fn parse_layout(text: &str) -> Result<Layout, String> {
    match text {
        "nchw" => Ok(Layout::Nchw),
        "nhwc" => Ok(Layout::Nhwc),
        _ => Err(format!("{text:?} is not nchw or nhwc")),
    }
}

fn parse_color(text: &str) -> Result<ColorOrder, String> {
    match text {
        "rgb" => Ok(ColorOrder::Rgb),
        "bgr" => Ok(ColorOrder::Bgr),
        "gray" => Ok(ColorOrder::Gray),
        _ => Err(format!("{text:?} is not rgb, bgr or gray")),
    }
}

fn parse_resize(text: &str) -> Result<ResizeMode, String> {
    match text {
        "stretch" => Ok(ResizeMode::Stretch),
        "letterbox" => Ok(ResizeMode::Letterbox),
        "center-crop" => Ok(ResizeMode::CenterCrop),
        _ => Err(format!("{text:?} is not stretch, letterbox or center-crop")),
    }
}

pub(crate) fn import_model(args: ImportArgs) -> Result<()> {
    let options = ImportOptions {
        version: Some(args.model_version.clone()),
        labels: args.labels.clone(),
        size: args.size,
        layout: args.layout,
        color: args.color,
        resize: args.resize,
        scale: args.scale,
        mean: args.mean.clone(),
        std: args.std.clone(),
        decoder: args.decoder.clone(),
    };
    let imported = import(&args.model, &options)?;
    if args.dry_run {
        return print_out(imported.text.trim_end());
    }
    if imported.path.exists() && !args.force {
        bail!(
            "{}: a manifest is already there; --force replaces it (--dry-run shows what import \
             would write)",
            imported.path.display()
        );
    }
    write_atomically(&imported.path, imported.text.as_bytes())?;
    let mut report = format!("wrote {}\n", imported.path.display());
    for note in &imported.notes {
        let origin = match &note.origin {
            Origin::Graph => "graph".to_owned(),
            Origin::Metadata(key) => format!("metadata `{key}`"),
            Origin::File(path) => path.display().to_string(),
            Origin::Flag => "flag".to_owned(),
            Origin::Convention => "exporter's convention".to_owned(),
            Origin::Guess => "GUESS".to_owned(),
        };
        report.push_str(&format!(
            "  {:<15} {} [{origin}]: {}\n",
            note.field, note.value, note.reason
        ));
    }
    let guesses = imported.notes.iter().filter(|n| n.is_guess()).count();
    if guesses > 0 {
        report.push_str(&format!(
            "  {guesses} value(s) are guesses, marked GUESS in the manifest: check them, or \
             state them with flags and import again with --force\n"
        ));
    }
    print_out(report.trim_end())?;
    let check_args = ModelArgs {
        place: args.place,
        model: Some(imported.path.display().to_string()),
    };
    let verdict = check::verdict(&check_args).with_context(|| {
        format!(
            "the deployment check of {} failed (the manifest stays written, to edit)",
            imported.path.display()
        )
    })?;
    print_out(format_args!("check: {verdict}"))
}

/// Writes through a temporary file in the same folder, so a crash leaves the old manifest or
/// the new one, never half of one.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("toml.tmp");
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("{}: cannot write the manifest", path.display()));
    }
    Ok(())
}
