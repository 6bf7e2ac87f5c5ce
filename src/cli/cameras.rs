//! `lookout cameras`: the V4L2 cameras and their modes.

use super::print_out;
use anyhow::{bail, Result};
use lookout::frames::camera;

pub(crate) fn list_cameras() -> Result<()> {
    let cameras = camera::v4l::list_cameras()?;
    if cameras.is_empty() {
        bail!(
            "no camera found: plug in a USB (UVC) camera and check `ls /dev/video*` and that this user \
             is in group video; a Pi CSI camera on Bookworm needs libcamera's V4L2 layer: \
             `libcamerify lookout cameras` (package libcamera-v4l2), and `kind = \"csi\"` under \
             [camera] in the board profile for `lookout run`"
        );
    }
    let mut text = String::new();
    for c in &cameras {
        text.push_str(&format!("{}  {}\n", c.id, c.name));
        match &c.modes {
            Ok(modes) => {
                for m in modes {
                    text.push_str(&format!("    {m}\n"));
                }
            }
            Err(e) => text.push_str(&format!("    modes unreadable: {e}\n")),
        }
    }
    print_out(format_args!("{}", text.trim_end()))
}
