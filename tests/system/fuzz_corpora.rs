//! The fuzz corpora (`fuzz/corpus/<target>/`) replayed through the entry points the fuzz
//! targets call ([`lookout::fuzz`]): every input a fuzzing run kept, and every one that once
//! crashed lookout, must still be handled. scripts/fuzz runs the targets themselves.

use lookout::fuzz::{Outcome, Target, TARGETS};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn target(name: &str) -> Target {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
}

/// Runs every input of a target's corpus; returns each file's outcome.
fn replay(name: &str) -> Vec<(String, Outcome)> {
    let dir = fuzz_dir().join("corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    let run = target(name);
    let outcomes: Vec<(String, Outcome)> = files
        .iter()
        .map(|file| {
            let data = std::fs::read(file).expect("a corpus file");
            let label = file.file_name().expect("a name").to_string_lossy();
            // A panic here fails the test; this line says which input it was.
            eprintln!("{name}: {label} ({} bytes)", data.len());
            (label.into_owned(), run(&data))
        })
        .collect();
    // A corpus that only ever took one branch would prove little.
    for wanted in [Outcome::Accepted, Outcome::Refused] {
        assert!(
            outcomes.iter().any(|(_, o)| *o == wanted),
            "{name}: no input of {} is {wanted:?}",
            dir.display()
        );
    }
    outcomes
}

/// The outcome of one named input.
fn outcome<'a>(outcomes: &'a [(String, Outcome)], file: &str) -> &'a Outcome {
    &outcomes
        .iter()
        .find(|(f, _)| f == file)
        .unwrap_or_else(|| panic!("no corpus input {file}"))
        .1
}

#[test]
fn every_target_has_its_file_and_a_corpus() {
    let files: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(files.len(), TARGETS.len(), "targets: {files:?}");
    for (name, _) in TARGETS {
        let source =
            std::fs::read_to_string(fuzz_dir().join("fuzz_targets").join(format!("{name}.rs")))
                .unwrap_or_else(|e| panic!("fuzz target {name}: {e}"));
        assert!(
            source.contains(&format!("lookout::fuzz::{name}(data)")),
            "fuzz_targets/{name}.rs does not call lookout::fuzz::{name}"
        );
        let inputs = std::fs::read_dir(fuzz_dir().join("corpus").join(name))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(inputs >= 2, "fuzz/corpus/{name} holds {inputs} inputs");
    }
}

#[test]
fn manifest_corpus() {
    let outcomes = replay("manifest");
    // Every manifest the repository ships is valid.
    assert_eq!(
        *outcome(&outcomes, "shapes-detector.toml"),
        Outcome::Accepted
    );
}

#[test]
fn board_corpus() {
    let outcomes = replay("board");
    // A profile is named after its file, which the fuzz target calls `fuzzed.toml`.
    assert_eq!(*outcome(&outcomes, "rpi-zero-2w.toml"), Outcome::Refused);
    assert_eq!(*outcome(&outcomes, "fuzzed.toml"), Outcome::Accepted);
}

#[test]
fn console_corpus() {
    let outcomes = replay("console");
    assert_eq!(*outcome(&outcomes, "editing"), Outcome::Accepted);
    assert_eq!(*outcome(&outcomes, "not-utf8"), Outcome::Refused);
}

#[test]
fn compact_corpus() {
    let outcomes = replay("compact");
    assert_eq!(*outcome(&outcomes, "object-zone"), Outcome::Accepted);
}

#[test]
fn pixels_corpus() {
    let outcomes = replay("pixels");
    assert_eq!(*outcome(&outcomes, "nv12-4x2"), Outcome::Accepted);
    assert_eq!(*outcome(&outcomes, "yuyv-short"), Outcome::Refused);
}

#[test]
fn image_file_corpus() {
    let outcomes = replay("image_file");
    assert_eq!(*outcome(&outcomes, "frame_001.jpg"), Outcome::Accepted);
}

#[test]
fn onnx_meta_corpus() {
    let outcomes = replay("onnx_meta");
    assert_eq!(*outcome(&outcomes, "two-inputs.onnx"), Outcome::Accepted);
}

#[test]
fn model_corpus() {
    let outcomes = replay("model");
    assert_eq!(*outcome(&outcomes, "four-classes.onnx"), Outcome::Accepted);
    // Each panic a dependency raised on a corpus input is listed, with its input's sha256.
    let listed = std::fs::read_to_string(fuzz_dir().join("dependency-panics.md"))
        .expect("fuzz/dependency-panics.md");
    let corpus = fuzz_dir().join("corpus").join("model");
    for (file, outcome) in &outcomes {
        if let Outcome::DependencyPanic(message) = outcome {
            let sha = lookout::budget::sha256_hex(&std::fs::read(corpus.join(file)).expect("read"));
            assert!(
                listed.contains(&sha),
                "{file} ({sha}) makes a dependency panic and is not in fuzz/dependency-panics.md: {message}"
            );
        }
    }
}

#[test]
fn mqtt_command_corpus() {
    let outcomes = replay("mqtt_command");
    assert_eq!(*outcome(&outcomes, "two-lines"), Outcome::Refused);
}

#[test]
fn http_request_corpus() {
    let outcomes = replay("http_request");
    assert_eq!(*outcome(&outcomes, "command"), Outcome::Accepted);
    assert_eq!(*outcome(&outcomes, "command-no-token"), Outcome::Refused);
    assert_eq!(*outcome(&outcomes, "rebinding"), Outcome::Refused);
}
