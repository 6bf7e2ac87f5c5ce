//! The integration tests that run natively only: the command line, cameras and network
//! cameras, the console and GPIO, the sample store, model updates, drift, MQTT against a real
//! broker and the web preview in a real browser. They orchestrate the real `lookout` binary
//! with processes, files, pseudo-terminals and sockets, which compile to the same calls on
//! every target (docs/development.md, "Tests and CI": what runs where).
//!
//! One test binary rather than one per file: each links the whole library and tract, and on
//! two cores those links and the shared helpers compiled once per binary were minutes of a
//! cold CI run.

#[path = "../common/mod.rs"]
mod common;

mod build_budget;
mod camera;
mod cli;
mod drift;
mod faults;
mod fuzz_corpora;
mod gpio;
mod health;
mod http;
mod import;
mod mqtt;
mod retrain;
mod samples;
mod scene;
mod stop;
mod untrusted;
mod update;
mod walk;
