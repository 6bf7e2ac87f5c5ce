//! `lookout model`: installed model versions (install, use, rollback, list).

use super::{print_out, PlaceArgs};
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use lookout::board::Board;
use lookout::lifecycle::slots::act_as_owner;
use lookout::model;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(crate) enum ModelCommand {
    /// Every installed version, the one in use marked `*` and the one rollback returns to `<`.
    List(SlotsArgs),
    /// Check a model against its manifest and the board (as the build does) and install it as
    /// `<name>/<version>`; a refused model changes nothing.
    Install {
        /// The manifest (.toml), its model file beside it.
        manifest: PathBuf,
        #[command(flatten)]
        slots: SlotsArgs,
        /// Switch to it once installed.
        #[arg(long = "use")]
        use_it: bool,
    },
    /// Switch to an installed version; the one in use becomes the one rollback returns to.
    Use {
        /// Model name.
        name: String,
        /// Version.
        version: String,
        #[command(flatten)]
        slots: SlotsArgs,
    },
    /// Switch back to the version used before.
    Rollback {
        /// Model name.
        name: String,
        #[command(flatten)]
        slots: SlotsArgs,
    },
}

#[derive(Debug, Args)]
pub(crate) struct SlotsArgs {
    #[command(flatten)]
    place: PlaceArgs,
    /// The installed models. Default: the board profile's `models.dir`.
    #[arg(long)]
    root: Option<PathBuf>,
}

impl SlotsArgs {
    /// The board, its profile's path, and the slots.
    fn open(&self) -> Result<(Board, PathBuf, lookout::lifecycle::slots::Slots)> {
        let (board, board_file) =
            model::board(self.place.board.as_deref(), &self.place.boards_dir)?;
        let root = self
            .root
            .clone()
            .unwrap_or_else(|| board.models.dir.clone());
        Ok((
            board,
            board_file,
            lookout::lifecycle::slots::Slots::new(root),
        ))
    }
}

pub(crate) fn manage_models(command: ModelCommand) -> Result<()> {
    use lookout::lifecycle::slots::Slot;
    let line = |s: &Slot| {
        let mark = if s.current {
            "*"
        } else if s.previous {
            "<"
        } else {
            " "
        };
        format!("{mark} {}@{}  {}", s.name, s.version, s.manifest.display())
    };
    match command {
        ModelCommand::List(args) => {
            let (_, _, slots) = args.open()?;
            let listed = slots.list()?;
            if listed.is_empty() {
                return print_out(format_args!(
                    "no model installed in {}",
                    slots.root().display()
                ));
            }
            print_out(listed.iter().map(line).collect::<Vec<_>>().join("\n"))
        }
        ModelCommand::Install {
            manifest,
            slots,
            use_it,
        } => {
            let (board, board_file, slots_dir) = slots.open()?;
            // Loaded and run once in a child process first: a model tract cannot load, or
            // that makes it panic, is never installed where a running service would load it.
            super::verifier(&slots.place)?
                .run_once(&manifest.to_string_lossy())
                .with_context(|| format!("installing {}", manifest.display()))?;
            let slots = slots_dir;
            let installed = slots
                .install(&board, &board_file, &manifest)
                .with_context(|| format!("installing {}", manifest.display()))?;
            let slot = if use_it {
                slots.use_version(&installed.name, &installed.version)?
            } else {
                installed
            };
            print_out(format_args!("installed: {}", line(&slot)))
        }
        ModelCommand::Use {
            name,
            version,
            slots,
        } => {
            let slots = slots.open()?.2;
            // Under sudo, the links are made as the slots' owner (see act_as_owner).
            act_as_owner(slots.root())?;
            print_out(format_args!(
                "in use: {}",
                line(&slots.use_version(&name, &version)?)
            ))
        }
        ModelCommand::Rollback { name, slots } => {
            let slots = slots.open()?.2;
            act_as_owner(slots.root())?;
            print_out(format_args!(
                "rolled back: {}",
                line(&slots.rollback(&name)?)
            ))
        }
    }
}
