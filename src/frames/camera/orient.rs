//! Turning and mirroring a camera's frames (`[camera] rotate` and `flip`), for a camera mounted
//! sideways or upside down: a Camera Module on a ribbon cable is often fixed upside down in its
//! case, and a doorbell camera on its side for a portrait view.
//!
//! The frame is turned on the capture thread, right after it is converted to RGB and before
//! the pipeline sees it, so the "source frame" of everything downstream (boxes in the records,
//! zones and masks, snapshots, samples) is the upright picture. Turning costs one copy of the
//! frame on the capture thread (a 640x480 frame is 900 kB), not on the frame loop; a camera
//! whose driver can flip in hardware (V4L2 `hflip`/`vflip` controls) saves even that, and
//! lookout leaves those controls as the camera has them.

use image::{imageops, RgbImage};
use lookout_contract::board::{CameraDefaults, Flip};

/// How captured frames are turned: `rotate` degrees clockwise, then mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Orientation {
    /// 0, 90, 180 or 270 (checked when the board profile is read).
    pub rotate: u16,
    /// Applied after turning.
    pub flip: Flip,
}

impl Orientation {
    /// The board profile's `[camera]` `rotate` and `flip`.
    pub fn of(camera: &CameraDefaults) -> Self {
        Self {
            rotate: camera.rotate,
            flip: camera.flip,
        }
    }

    /// Whether frames are left as captured.
    pub fn is_identity(&self) -> bool {
        self.rotate.is_multiple_of(360) && self.flip == Flip::None
    }

    /// `image` turned and mirrored; the same image when there is nothing to do.
    pub fn apply(&self, image: RgbImage) -> RgbImage {
        let turned = match self.rotate % 360 {
            90 => imageops::rotate90(&image),
            180 => imageops::rotate180(&image),
            270 => imageops::rotate270(&image),
            _ => image,
        };
        match self.flip {
            Flip::None => turned,
            Flip::Horizontal => imageops::flip_horizontal(&turned),
            Flip::Vertical => imageops::flip_vertical(&turned),
        }
    }

    /// The camera frame's (width, height) that covers `need` (width, height) of the turned
    /// frame: sideways, the camera's height becomes the frame's width.
    pub fn need_in_camera(&self, need: (u32, u32)) -> (u32, u32) {
        if self.rotate % 180 == 90 {
            (need.1, need.0)
        } else {
            need
        }
    }

    /// For logs: `rotated 90°, mirrored horizontally`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.rotate.is_multiple_of(360) {
            parts.push(format!("rotated {}° clockwise", self.rotate % 360));
        }
        match self.flip {
            Flip::None => {}
            Flip::Horizontal => parts.push("mirrored left to right".into()),
            Flip::Vertical => parts.push("mirrored top to bottom".into()),
        }
        if parts.is_empty() {
            "as captured".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// A 3x2 image whose pixels say where they were: red = x, green = y.
    fn marked() -> RgbImage {
        RgbImage::from_fn(3, 2, |x, y| Rgb([x as u8, y as u8, 0]))
    }

    fn at(image: &RgbImage, x: u32, y: u32) -> (u8, u8) {
        let p = image.get_pixel(x, y);
        (p[0], p[1])
    }

    #[test]
    fn turning_moves_each_pixel_where_a_clockwise_turn_puts_it() {
        let o = |rotate, flip| Orientation { rotate, flip };
        let image = marked();
        assert_eq!(o(0, Flip::None).apply(image.clone()), image);
        // 90° clockwise: the top-left corner goes to the top-right; a 3x2 frame becomes 2x3.
        let r90 = o(90, Flip::None).apply(image.clone());
        assert_eq!(r90.dimensions(), (2, 3));
        assert_eq!(at(&r90, 1, 0), (0, 0));
        assert_eq!(at(&r90, 0, 0), (0, 1));
        assert_eq!(at(&r90, 0, 2), (2, 1));
        let r180 = o(180, Flip::None).apply(image.clone());
        assert_eq!(at(&r180, 0, 0), (2, 1));
        let r270 = o(270, Flip::None).apply(image.clone());
        assert_eq!(r270.dimensions(), (2, 3));
        assert_eq!(at(&r270, 0, 2), (0, 0));
        // Mirrors come after the turn.
        let h = o(0, Flip::Horizontal).apply(image.clone());
        assert_eq!(at(&h, 0, 0), (2, 0));
        let v = o(0, Flip::Vertical).apply(image.clone());
        assert_eq!(at(&v, 0, 0), (0, 1));
        let r90h = o(90, Flip::Horizontal).apply(image.clone());
        assert_eq!(at(&r90h, 0, 0), (0, 0), "a transpose");
        // Turning four times, or 90 then 270, gives the frame back.
        assert_eq!(o(270, Flip::None).apply(r90), image);
        assert_eq!(o(180, Flip::None).apply(r180), image);
        assert_eq!(
            o(90, Flip::Vertical).describe(),
            "rotated 90° clockwise, mirrored top to bottom"
        );
        // Sideways, a 320x240 model input needs a camera frame 240 wide and 320 high.
        assert_eq!(o(90, Flip::None).need_in_camera((320, 240)), (240, 320));
        assert_eq!(
            o(270, Flip::Horizontal).need_in_camera((320, 240)),
            (240, 320)
        );
        assert_eq!(o(180, Flip::None).need_in_camera((320, 240)), (320, 240));
        // A vertical mirror swaps top and bottom only.
        let v = o(0, Flip::Vertical).apply(image.clone());
        assert_eq!((at(&v, 2, 0), at(&v, 2, 1)), ((2, 1), (2, 0)));
    }
}
