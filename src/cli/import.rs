//! `lookout import MODEL.onnx`: writes the manifest beside a model someone already has, says
//! where each value came from, then runs the deployment check on it.

use super::{check, print_out, ModelArgs, PlaceArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use lookout::manifest::{ColorOrder, Layout, ResizeMode};
use lookout::model::import::{import, ImportOptions, Origin};
use lookout::model::ModelBundle;
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
    #[arg(long, conflicts_with = "int8_weights")]
    pub(crate) dry_run: bool,
    /// Also write <stem>-int8.onnx, its Conv/Gemm/MatMul weights per-channel int8 behind
    /// DequantizeLinear (about a quarter of the size, the same speed on tract), and import that.
    #[arg(long)]
    pub(crate) int8_weights: bool,
    /// With --int8-weights: run both forms on the images in DIR and report how far they differ.
    #[arg(long, value_name = "DIR", requires = "int8_weights")]
    pub(crate) check_on: Option<PathBuf>,
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
    let mut report = String::new();
    let target = if args.int8_weights {
        let (path, text) = write_int8_weights(&args, &options)?;
        report.push_str(&text);
        path
    } else {
        args.model.clone()
    };
    let imported = import(&target, &options)?;
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
    report.push_str(&format!("wrote {}\n", imported.path.display()));
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
    let (board, _) = lookout::model::board(args.place.board.as_deref(), &args.place.boards_dir)?;
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
    print_out(format_args!("check: {verdict}"))?;
    if board.computes_f16() {
        print_out(half_precision_offer(&board.name, &check_args))?;
    }
    Ok(())
}

/// What import says about computing in f16 on a board whose CPU has it
/// ([`half_precision_offer_for`]). Advice only: what cannot be assessed is said, not an error,
/// since the manifest is written and checked by now.
fn half_precision_offer(board: &str, model: &ModelArgs) -> String {
    match super::load(model) {
        Ok((_, bundle)) => half_precision_offer_for(board, &bundle).line,
        Err(e) => format!(
            "f16: not assessed for board {board}: {}",
            super::one_line(&e)
        ),
    }
}

/// What `import` and `select` say about f16 for a model on a board whose CPU computes half
/// precision.
pub(super) struct HalfPrecisionOffer {
    /// The model computes in f16 there, or would gain from it: offered or already asked for.
    pub in_f16: bool,
    /// The line printed, with the reason.
    pub line: String,
}

/// Whether computing `bundle` in f16 is offered for a board whose CPU computes half precision,
/// and why: offered for float models with few multiply-accumulates in grouped (depthwise)
/// convolutions, where it paid on the Pi 5's Cortex-A76 (docs/speed.md).
pub(super) fn half_precision_offer_for(board: &str, bundle: &ModelBundle) -> HalfPrecisionOffer {
    let not = |line: String| HalfPrecisionOffer {
        in_f16: false,
        line,
    };
    if !bundle.asked_compute.is_f32() {
        return HalfPrecisionOffer {
            in_f16: true,
            line: format!(
                "f16: board {board} computes this model in half precision (its manifest's \
                 compute = \"f16\")"
            ),
        };
    }
    use lookout::onnx_meta::QuantForm;
    if let Some(form @ (QuantForm::Qdq | QuantForm::QOperator | QuantForm::DynamicInteger)) =
        bundle.manifest.model.quantization
    {
        return not(format!(
            "f16: not offered for board {board}: this model is quantized ({}), computed in \
             integers or with quantization steps, not in floats",
            form.key()
        ));
    }
    // The multiply-accumulates at the input the manifest fixes (the bundle's bytes carry any
    // external data), counted by tract in this process as `inspect` counts them.
    let probe = match lookout::model::engine::probe(&bundle.onnx, &bundle.origin) {
        Ok(probe) => probe,
        Err(e) => return not(format!("f16: not assessed for board {board}: {e}")),
    };
    // Grouped convolutions, depthwise ones included, stay in f32 between casts (tract has no
    // fast f16 kernel for them), so f16 pays by the dense share. Measured on the Cortex-A76
    // (docs/speed.md): MobileNetV2, 6.9 % depthwise, 1.56x fewer instructions;
    // MobileNetV3-Small, 13.2 %, none fewer.
    if probe.macs == 0 {
        return not(format!(
            "f16: not offered for board {board}: this model has no convolutions or matrix \
             products, the work half precision speeds up"
        ));
    }
    let depthwise_percent = 100.0 * probe.grouped_macs as f64 / probe.macs as f64;
    if depthwise_percent > MAX_DEPTHWISE_PERCENT_FOR_F16 {
        return not(format!(
            "f16: not offered for board {board}: {depthwise_percent:.1} % of this model's \
             multiply-accumulates are in grouped (depthwise) convolutions, which lookout \
             computes in f32 (tract 0.23.9 has no fast f16 kernel for them); MobileNetV3-Small, \
             13.2 %, took as many instructions in f16 as in f32 on the Pi 5's Cortex-A76 \
             (docs/speed.md)"
        ));
    }
    HalfPrecisionOffer {
        in_f16: true,
        line: format!(
            "f16: board {board} computes in half precision (cpu_features: asimdhp): add \
             `compute = \"f16\"` under [model] to run this model in f16 there (models with at \
             most {MAX_DEPTHWISE_PERCENT_FOR_F16} % of their multiply-accumulates in grouped \
             (depthwise) convolutions took 1.3-1.7x fewer instructions a frame on the Pi 5's \
             Cortex-A76, within 0.1 point of f32's accuracy; docs/speed.md)"
        ),
    }
}

/// Above this share of multiply-accumulates in grouped (depthwise) convolutions `import` and
/// `select` do not offer f16: the measured models on either side are MobileNetV2 (6.9 %,
/// gains) and MobileNetV3-Small (13.2 %, does not).
const MAX_DEPTHWISE_PERCENT_FOR_F16: f64 = 10.0;

/// Writes the int8-weights form beside the model (and compares it with the original on
/// `--check-on` images); returns its path and what to report.
fn write_int8_weights(args: &ImportArgs, options: &ImportOptions) -> Result<(PathBuf, String)> {
    let model = &args.model;
    let bytes = std::fs::read(model).with_context(|| format!("{}", model.display()))?;
    let meta = lookout::onnx_meta::OnnxMeta::parse(&bytes)
        .with_context(|| format!("{}", model.display()))?;
    let whole = lookout::model::inspect::whole_model(&bytes, &meta, model)?;
    let origin = model.display().to_string();
    let converted = lookout::model::int8::int8_weights(&whole, &origin)?;
    let stem = model
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the model's file name has no stem")?;
    let out = model.with_file_name(format!("{stem}-int8.onnx"));
    if out.exists() && !args.force {
        bail!("{}: already there; --force replaces it", out.display());
    }
    write_atomically(&out, &converted.onnx)?;
    let before = whole.len();
    let after = converted.onnx.len();
    let pairs = match converted.activation_pairs {
        0 => String::new(),
        n => format!("{n} activation QuantizeLinear/DequantizeLinear pairs removed, "),
    };
    let mut text = format!(
        "int8 weights: {pairs}{} weight tensors ({} values) of {} now per-channel int8: \
         {before} -> {after} bytes ({:.2}x)\n",
        converted.tensors,
        converted.values,
        model.display(),
        after as f64 / before.max(1) as f64,
    );
    if let Some(dir) = &args.check_on {
        let original = import(model, options)?;
        let images = lookout::frames::source::image_files(dir)?;
        if images.is_empty() {
            bail!("{}: no images to compare on", dir.display());
        }
        let a =
            lookout::lab::agreement::compare(&original.manifest, &whole, &converted.onnx, &images)?;
        text.push_str(&format!(
            "check on {} images of {}: outputs within {:.3e} of the original's (largest |value| \
             {:.3e}, {:.2}%); decoded results agree on {} of {}\n",
            a.images,
            dir.display(),
            a.max_abs,
            a.max_ref,
            100.0 * f64::from(a.max_abs) / f64::from(a.max_ref).max(f64::MIN_POSITIVE),
            a.decoded_same,
            a.images
        ));
    }
    Ok((out, text))
}

/// Writes through a temporary file in the same folder, so a crash leaves the old manifest or
/// the new one, never half of one.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("{}: cannot write it", path.display()));
    }
    Ok(())
}
