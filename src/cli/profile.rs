//! `lookout profile`: the reference statistics drift monitoring compares against.

use super::{load, pipeline_for, print_out, progress_bar, ModelArgs};
use anyhow::{bail, Result};
use clap::Args;
use lookout::frames::source;
use lookout::lab::profile;
use lookout::model;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(crate) struct ProfileArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder of held-out images (sub-folders included).
    #[arg(long, short)]
    data: PathBuf,
    /// Store the result as the `[profile]` table of the model's manifest (needs --model).
    #[arg(long)]
    write: bool,
    /// What the images are, recorded with the statistics (default: the folder and its size).
    #[arg(long)]
    describe: Option<String>,
}

pub(crate) fn run_profile(args: ProfileArgs) -> Result<()> {
    let (board, bundle) = load(&args.model)?;
    let manifest_path = match (&args.model.model, args.write) {
        (Some(arg), true) => {
            let path =
                model::manifest_path_for(arg, &args.model.place.models_dir, &board.models.dir);
            if lookout::lifecycle::slots::Slots::of_current_file(&path).is_some() {
                bail!(
                    "{}: an installed version is never changed; profile the manifest it was \
                     installed from and install that as a new version",
                    path.display()
                );
            }
            Some(path)
        }
        (None, true) => bail!("--write needs --model: the embedded manifest cannot be rewritten"),
        (_, false) => None,
    };
    let mut pipeline = pipeline_for(bundle)?;
    let files = source::image_files_under(&args.data)?;
    let bar = progress_bar("images");
    let data = args
        .describe
        .unwrap_or_else(|| format!("{} ({} images)", args.data.display(), files.len()));
    let profile = profile::measure(&mut pipeline, &files, data, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    match manifest_path {
        Some(path) => {
            profile::write_into_manifest(&path, &profile)?;
            print_out(format_args!(
                "wrote [profile] of {} frames into {}",
                profile.frames,
                path.display()
            ))
        }
        None => print_out(profile::to_toml(&profile)?.trim_end()),
    }
}
