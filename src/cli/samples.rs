//! `lookout samples`: the frames kept for retraining.

use super::{print_out, PlaceArgs};
use anyhow::Result;
use clap::Subcommand;
use lookout::model;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub(crate) enum SamplesCommand {
    /// Pack the sample store into one tar file for the trainer: images, YOLO labels and
    /// class names (or a folder per class), complete samples only.
    Export {
        #[command(flatten)]
        place: PlaceArgs,
        /// The store (default: the board profile's samples.dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Only this model's samples (`name@version`).
        #[arg(long)]
        model: Option<String>,
        /// The tar file to write.
        #[arg(long, short)]
        out: PathBuf,
    },
}

pub(crate) fn samples(command: SamplesCommand) -> Result<()> {
    match command {
        SamplesCommand::Export {
            place,
            dir,
            model,
            out,
        } => export_samples(&place, dir, model.as_deref(), &out),
    }
}

fn export_samples(
    place: &PlaceArgs,
    dir: Option<PathBuf>,
    model: Option<&str>,
    out: &Path,
) -> Result<()> {
    let dir = match dir {
        Some(dir) => dir,
        None => {
            model::board(place.board.as_deref(), &place.boards_dir)?
                .0
                .samples
                .dir
        }
    };
    let summary = lookout::lifecycle::samples::export::export(&dir, model, out)?;
    print_out(format_args!(
        "{}: {} images, {} label files, {} bytes from {}",
        out.display(),
        summary.images,
        summary.labels,
        summary.bytes,
        dir.display()
    ))
}
