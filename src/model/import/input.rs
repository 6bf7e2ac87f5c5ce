//! The input tensor, from the graph: name, layout, batch, and a size left symbolic filled from
//! the metadata or `--size`.

use super::render::{dtype_key, layout_key};
use super::{fixed, ImportOptions, Note, Origin, Ultralytics};
use crate::manifest::{ColorOrder, InputDtype, InputSpec, Layout};
use crate::onnx_meta::{Dim, OnnxMeta};

/// The input tensor from the graph, sizes left symbolic filled from metadata or `--size`.
pub(super) fn input_spec(
    meta: &OnnxMeta,
    ultralytics: Option<&Ultralytics>,
    options: &ImportOptions,
    notes: &mut Vec<Note>,
) -> Result<InputSpec, String> {
    let input = match meta.inputs.as_slice() {
        [only] => only,
        [] => return Err("the graph has no input".into()),
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|i| format!("`{}` {}", i.name, i.shape_text()))
                .collect();
            return Err(format!(
                "the graph has {} inputs ({}); lookout feeds one image tensor",
                many.len(),
                names.join(", ")
            ));
        }
    };
    let dtype = match input.elem_type {
        "float" => InputDtype::F32,
        "uint8" => InputDtype::U8,
        other => {
            return Err(format!(
                "`{}` is {other}; lookout feeds float or uint8 pixels",
                input.name
            ))
        }
    };
    let dims = &input.shape;
    if dims.len() != 4 {
        return Err(format!(
            "`{}` is {}, rank {}; lookout feeds a 4-d image tensor",
            input.name,
            input.shape_text(),
            dims.len()
        ));
    }
    if let Some(zero) = dims.iter().position(|d| *d == Dim::Fixed(0)) {
        return Err(format!(
            "`{}` is {}: dimension {zero} is 0",
            input.name,
            input.shape_text()
        ));
    }
    let channels_at = |i: usize| matches!(fixed(&dims[i]), Some(1 | 3));
    let (layout, layout_origin, layout_reason) = match options.layout {
        Some(layout) => (layout, Origin::Flag, "--layout".to_owned()),
        None if channels_at(1) => (
            Layout::Nchw,
            Origin::Graph,
            "dimension 1 holds the channels".to_owned(),
        ),
        None if channels_at(3) => (
            Layout::Nhwc,
            Origin::Graph,
            "dimension 3 holds the channels".to_owned(),
        ),
        None => (
            Layout::Nchw,
            Origin::Guess,
            "neither dimension 1 nor 3 is a channel count of 1 or 3 (--layout nhwc if wrong)"
                .to_owned(),
        ),
    };
    let (c, h, w) = match layout {
        Layout::Nchw => (1, 2, 3),
        Layout::Nhwc => (3, 1, 2),
    };
    let batch = match &dims[0] {
        Dim::Fixed(1) => "1".to_owned(),
        Dim::Fixed(b) => {
            return Err(format!(
                "`{}` is {}: batch {b}; lookout runs batch 1",
                input.name,
                input.shape_text()
            ))
        }
        symbolic => format!("symbolic `{symbolic}`, fixed to 1"),
    };
    let graph_size = (fixed(&dims[w]), fixed(&dims[h]));
    let (width, height, size_origin, size_reason) = match (graph_size, options.size) {
        ((Some(gw), Some(gh)), Some((fw, fh))) if (gw, gh) != (fw, fh) => {
            return Err(format!(
                "`{}` is {}: {gw}x{gh}, not the --size {fw}x{fh}",
                input.name,
                input.shape_text()
            ));
        }
        ((Some(gw), Some(gh)), _) => (gw, gh, Origin::Graph, "fixed in the graph".to_owned()),
        (_, Some((fw, fh))) => (fw, fh, Origin::Flag, "--size".to_owned()),
        _ => match ultralytics.and_then(|u| u.imgsz) {
            Some([ih, iw]) if ih > 0 && iw > 0 => (
                iw,
                ih,
                Origin::Metadata("imgsz".into()),
                "symbolic in the graph".to_owned(),
            ),
            _ => {
                return Err(format!(
                    "`{}` is {}: its height and width are not fixed and the file does not say \
                     them; give --size WIDTHxHEIGHT (the size the model was trained at)",
                    input.name,
                    input.shape_text()
                ))
            }
        },
    };
    let channels = match fixed(&dims[c]) {
        Some(n @ (1 | 3)) => n,
        Some(n) => {
            return Err(format!(
                "`{}` is {}: {n} channels; lookout feeds 1 (gray) or 3 (colour)",
                input.name,
                input.shape_text()
            ))
        }
        None if options.color == Some(ColorOrder::Gray) => 1,
        None => 3,
    };
    let shape = match layout {
        Layout::Nchw => [1, channels, height, width],
        Layout::Nhwc => [1, height, width, channels],
    };
    notes.push(Note {
        field: "input",
        value: format!(
            "`{}` {shape:?} {} {}",
            input.name,
            layout_key(layout),
            dtype_key(dtype)
        ),
        origin: if size_origin == Origin::Graph {
            layout_origin.clone()
        } else {
            size_origin
        },
        reason: format!(
            "declared {}; batch {batch}; {width}x{height} {size_reason}; layout {layout_reason}",
            input.shape_text()
        ),
    });
    if layout_origin == Origin::Guess {
        notes.push(Note {
            field: "input.layout",
            value: layout_key(layout).into(),
            origin: Origin::Guess,
            reason: layout_reason,
        });
    }
    Ok(InputSpec {
        name: input.name.clone(),
        shape,
        dtype,
        layout,
    })
}
