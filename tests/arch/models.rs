//! The committed models: every file matches its manifest, every variant is the form it claims
//! and loads in tract, and the bundled models are the variants `tools/model-table` chose.
//! CI does not retrain; this is how it knows the files in `models/` are the ones described.

use crate::common;
use crate::common::{lookout, repo, stdout};
use std::path::PathBuf;

const BASES: [&str; 2] = ["shapes-classifier", "shapes-detector"];
const FORMS: [&str; 5] = ["fp32", "fp16", "int8-weights", "int8-qdq", "int8-qoperator"];

fn manifests(dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    out.sort();
    out
}

#[test]
fn every_committed_model_passes_the_deployment_check() {
    let all: Vec<PathBuf> = [manifests("models"), manifests("models/variants")].concat();
    assert_eq!(all.len(), BASES.len() * (1 + FORMS.len()), "{all:?}");
    for manifest in all {
        let out = lookout(&["check", "--model", manifest.to_str().expect("utf8")]);
        assert!(
            out.status.success(),
            "{}: {}",
            manifest.display(),
            common::stderr(&out)
        );
    }
}

#[test]
fn every_variant_is_the_form_it_claims_and_tract_runs_it() {
    for base in BASES {
        for form in FORMS {
            let onnx = format!("models/variants/{base}-{form}.onnx");
            let out = lookout(&["inspect", &onnx]);
            let text = stdout(&out);
            assert!(out.status.success(), "{onnx}: {}", common::stderr(&out));
            let quant = text
                .lines()
                .find_map(|l| l.strip_prefix("quantization:"))
                .unwrap_or_else(|| panic!("{onnx}: no quantization line in {text}"))
                .trim();
            let expected = match form {
                "fp32" => "fp32",
                "fp16" => "fp16 weights",
                "int8-weights" => "weight-only int8",
                "int8-qdq" => "static QDQ int8",
                _ => "QOperator int8",
            };
            assert!(quant.starts_with(expected), "{onnx}: {quant}");
            assert!(
                text.contains("tract:        loads and optimizes"),
                "{onnx}: {text}"
            );
            assert!(!text.contains("non-standard:"), "{onnx}: {text}");
        }
    }
}

#[test]
fn the_bundled_models_are_the_chosen_variants() {
    let table: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("models/variants/model-table.json"))
            .expect("model-table.json"),
    )
    .expect("JSON");
    for base in BASES {
        let form = table["chosen"][base].as_str().expect("a chosen form");
        let shipped = std::fs::read(repo(&format!("models/{base}.onnx"))).expect("bundled model");
        let variant = std::fs::read(repo(&format!("models/variants/{base}-{form}.onnx")))
            .expect("chosen variant");
        assert!(
            shipped == variant,
            "models/{base}.onnx is not the {form} variant"
        );
        let manifest =
            std::fs::read_to_string(repo(&format!("models/{base}.toml"))).expect("manifest");
        assert!(
            manifest.contains(&format!("quantization = \"{form}\"")),
            "models/{base}.toml does not declare {form}"
        );
    }
}

/// The compute line of `lookout inspect` (tract's graph) against the count from the ONNX graph
/// alone (`tools/count_macs.py`, on the fp32 form): every stored form of a model does the same
/// arithmetic, so all must show the same multiply-accumulates, and the float-compute forms the
/// same weights and biases. The quantized forms may differ by a head's biases, which tract
/// folds into its quantized operators differently; by no more than 0.05 %.
#[test]
fn every_form_shows_the_multiply_accumulates_its_graph_implies() {
    for base in BASES {
        let fp32 = format!("models/variants/{base}-fp32.onnx");
        let out = common::python_tool("count_macs.py", [&fp32]);
        let counted: Vec<u64> = stdout(&out)
            .split_whitespace()
            .take(2)
            .filter_map(|n| n.parse().ok())
            .collect();
        let [expected_macs, expected_parameters] = counted[..] else {
            panic!("count_macs.py printed {}", stdout(&out));
        };
        assert!(expected_macs > 1_000_000, "{base}: {expected_macs}");
        assert!(
            expected_parameters > 10_000,
            "{base}: {expected_parameters}"
        );
        for form in FORMS {
            let onnx = format!("models/variants/{base}-{form}.onnx");
            let out = lookout(&["inspect", &onnx]);
            let text = stdout(&out);
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix("compute:"))
                .unwrap_or_else(|| panic!("{onnx}: no compute line in {text}"));
            let numbers: Vec<u64> = line
                .split(|c: char| !c.is_ascii_digit() && c != '.')
                .filter_map(|n| n.parse().ok())
                .collect();
            // "<macs> multiply-accumulates per inference (<M>), <parameters> weights and biases"
            let (macs, parameters) = (numbers[0], numbers[numbers.len() - 1]);
            assert_eq!(macs, expected_macs, "{onnx}");
            if form.starts_with("int8-q") {
                let off = parameters.abs_diff(expected_parameters) as f64;
                assert!(off / expected_parameters as f64 <= 5e-4, "{onnx}: {line}");
            } else {
                assert_eq!(parameters, expected_parameters, "{onnx}: {line}");
            }
        }
    }
}
