//! Frame sources: where images come from.
//!
//! Everything upstream of pre-processing hides behind [`FrameSource`], so the pipeline runs the
//! same on a camera, a folder of photos or a generated pattern. Files and patterns live here;
//! the camera gets its own module and implements the same trait.
//!
//! A source hands out decoded RGB frames with the time they were captured (for files: when they
//! were read) and an identifier that shows up in every result (file name, or frame counter).

use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Errors opening or reading a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A path does not exist or cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not a decodable image.
    #[error("{path}: not a readable image: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// A directory holds no image files.
    #[error("{path}: directory has no image files (.jpg, .jpeg, .png, .bmp)")]
    EmptyDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// A live source has no new frame yet (camera starting, or down and being reopened): not
    /// a failed frame; the run loop asks again.
    #[error("{name}: waiting for a frame")]
    Waiting {
        /// The source.
        name: String,
    },
    /// A live source has stopped for good (its capture thread ended).
    #[error("{name}: {message}")]
    Stopped {
        /// The source.
        name: String,
        /// Why.
        message: String,
    },
    /// The `--source` text is not understood.
    #[error("source {spec:?}: {message}")]
    Spec {
        /// What was given.
        spec: String,
        /// What is wrong.
        message: String,
    },
}

impl SourceError {
    /// Whether the source can go on after this error (one bad file in a folder) or is done.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, SourceError::Decode { .. } | SourceError::Io { .. })
    }
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Identifies the frame in results: file name, or `pattern-<n>`.
    pub id: String,
    /// When the frame was captured (read, for files).
    pub captured_at: SystemTime,
    /// The pixels, RGB, 8 bits per channel.
    pub image: RgbImage,
}

/// Something that yields frames.
pub trait FrameSource {
    /// The next frame; `Ok(None)` when the source is exhausted. A recoverable error concerns
    /// one frame only: the caller may call again for the next.
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;

    /// A short description for logs (`dir:tests/images (12 files)`).
    fn describe(&self) -> String;

    /// Starts over as if just opened (the console's `reboot-pipeline`): a camera is reopened.
    /// Files and patterns carry on where they are.
    fn restart(&mut self) -> Result<(), SourceError> {
        Ok(())
    }

    /// Events since the last call (a camera lost or restored), for the sinks.
    fn take_events(&mut self) -> Vec<crate::results::record::EventRecord> {
        Vec::new()
    }

    /// Frames captured but replaced by newer ones before the pipeline took them.
    fn dropped_frames(&self) -> u64 {
        0
    }
}

/// File extensions read as images.
const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "bmp"];

/// Whether a folder source reads `path` as an image, by its extension (any case).
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn decode(path: &Path) -> Result<RgbImage, SourceError> {
    let bytes = std::fs::read(path).map_err(|source| SourceError::Io {
        path: path.to_owned(),
        source,
    })?;
    decode_image(&bytes, None).map_err(|e| SourceError::Decode {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Widest and tallest image decoded, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Most memory one decoded image may take: a 40-megapixel photo in RGB. A file's header can
/// claim any size; without a cap a few bytes would ask for gigabytes, more than a Pi Zero 2 W
/// has, before a single pixel is read.
pub const MAX_IMAGE_BYTES: u64 = 128 << 20;

/// Decodes an image file's bytes (the format from `format`, else guessed from the bytes) to
/// RGB, within [`MAX_IMAGE_SIDE`] and [`MAX_IMAGE_BYTES`]: the decoded image and, for any other
/// pixel type than 8-bit RGB, its RGB copy together.
pub fn decode_image(
    bytes: &[u8],
    format: Option<image::ImageFormat>,
) -> Result<RgbImage, image::ImageError> {
    use image::ImageDecoder as _;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    match format {
        Some(format) => reader.set_format(format),
        None => reader = reader.with_guessed_format()?,
    }
    let reader_format = reader.format();
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    let rgb = u64::from(width) * u64::from(height) * 3;
    let copy = if decoder.color_type() == image::ColorType::Rgb8 {
        0
    } else {
        rgb
    };
    // A progressive JPEG is decoded from its coefficients for the whole image, two bytes a
    // sample of up to four components, which the JPEG decoder does not count against the cap.
    let coefficients = if reader_format == Some(image::ImageFormat::Jpeg) && progressive_jpeg(bytes)
    {
        u64::from(width) * u64::from(height) * 8
    } else {
        0
    };
    if decoder
        .total_bytes()
        .saturating_add(copy)
        .saturating_add(coefficients)
        > MAX_IMAGE_BYTES
    {
        return Err(image::ImageError::Limits(
            image::error::LimitError::from_kind(image::error::LimitErrorKind::InsufficientMemory),
        ));
    }
    decoder.set_limits(limits)?;
    let image = image::DynamicImage::from_decoder(decoder)?;
    Ok(match image {
        image::DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.into_rgb8(),
    })
}

/// Whether a JPEG's frame header, before its first scan, is a progressive one (SOF2, SOF6,
/// SOF10, SOF14). A stream that does not read as markers is not.
fn progressive_jpeg(bytes: &[u8]) -> bool {
    let mut at = 2;
    while let [0xFF, marker, high, low, ..] = bytes.get(at..).unwrap_or_default() {
        match marker {
            0xC2 | 0xC6 | 0xCA | 0xCE => return true,
            // The first scan: every frame header comes before it.
            0xDA => return false,
            _ => at += 2 + usize::from(u16::from_be_bytes([*high, *low])),
        }
    }
    false
}

fn file_id(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A list of image files, read in order, optionally looped.
#[derive(Debug)]
pub struct ImageFiles {
    label: String,
    files: Vec<PathBuf>,
    next: usize,
    looping: bool,
}

impl ImageFiles {
    /// A single image file. It must exist; it is decoded when read.
    pub fn single(path: &Path) -> Result<Self, SourceError> {
        std::fs::metadata(path).map_err(|source| SourceError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            label: format!("file:{}", path.display()),
            files: vec![path.to_owned()],
            next: 0,
            looping: false,
        })
    }

    /// The files given, in that order, described as `label`.
    pub fn list(label: String, files: Vec<PathBuf>) -> Self {
        Self {
            label,
            files,
            next: 0,
            looping: false,
        }
    }

    /// All image files of a directory (not recursive), sorted by name.
    pub fn directory(path: &Path, looping: bool) -> Result<Self, SourceError> {
        let files = image_files(path)?;
        Ok(Self {
            label: format!("dir:{} ({} files)", path.display(), files.len()),
            files,
            next: 0,
            looping,
        })
    }
}

/// The image files of a directory (not recursive), sorted by name; an error if there are none.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let io = |source| SourceError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry_path = entry.map_err(io)?.path();
        if entry_path.is_file() && is_image_file(&entry_path) {
            files.push(entry_path);
        }
    }
    if files.is_empty() {
        return Err(SourceError::EmptyDirectory {
            path: dir.to_owned(),
        });
    }
    files.sort();
    Ok(files)
}

/// The image files under `dir` and its sub-folders, sorted by path; an error if there are none.
pub fn image_files_under(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        let io = |source| SourceError::Io {
            path: folder.clone(),
            source,
        };
        for entry in std::fs::read_dir(&folder).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            // The entry's own type, not its target's: a symlinked folder is not followed, so a
            // link loop cannot make this walk forever.
            if entry.file_type().map_err(io)?.is_dir() {
                folders.push(path);
            } else if path.is_file() && is_image_file(&path) {
                files.push(path);
            }
        }
    }
    if files.is_empty() {
        return Err(SourceError::EmptyDirectory {
            path: dir.to_owned(),
        });
    }
    files.sort();
    Ok(files)
}

/// Reads and decodes one image file into a frame named by its file name.
pub fn read_frame(path: &Path) -> Result<Frame, SourceError> {
    Ok(Frame {
        id: file_id(path),
        captured_at: SystemTime::now(),
        image: decode(path)?,
    })
}

impl FrameSource for ImageFiles {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.next == self.files.len() {
            if !self.looping {
                return Ok(None);
            }
            self.next = 0;
        }
        let path = &self.files[self.next];
        self.next += 1;
        read_frame(path).map(Some)
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

/// A generated test pattern: colour bars with a bright square that moves one step per frame.
/// Deterministic, so a board can be checked end to end without a camera or files.
#[derive(Debug)]
pub struct TestPattern {
    width: u32,
    height: u32,
    count: u64,
}

impl TestPattern {
    /// A pattern of the given size (each side 8 to 16384 pixels).
    pub fn new(width: u32, height: u32) -> Result<Self, SourceError> {
        if !(8..=16384).contains(&width) || !(8..=16384).contains(&height) {
            return Err(SourceError::Spec {
                spec: format!("pattern:{width}x{height}"),
                message: "each side must be 8 to 16384 pixels".into(),
            });
        }
        Ok(Self {
            width,
            height,
            count: 0,
        })
    }

    /// The frame with index `n`.
    pub fn render(&self, n: u64) -> RgbImage {
        const BARS: [[u8; 3]; 8] = [
            [255, 255, 255],
            [255, 255, 0],
            [0, 255, 255],
            [0, 255, 0],
            [255, 0, 255],
            [255, 0, 0],
            [0, 0, 255],
            [0, 0, 0],
        ];
        let (w, h) = (self.width, self.height);
        let mut image = RgbImage::from_fn(w, h, |x, _| {
            Rgb(BARS[(x as usize * BARS.len()) / w as usize])
        });
        let side = (w.min(h) / 4).max(2);
        let travel = u64::from(w - side);
        let x0 = (n * 4 % (travel + 1)) as u32;
        let y0 = (h - side) / 2;
        for y in y0..y0 + side {
            for x in x0..x0 + side {
                image.put_pixel(x, y, Rgb([128, 128, 128]));
            }
        }
        image
    }
}

impl FrameSource for TestPattern {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let frame = Frame {
            id: format!("pattern-{}", self.count),
            captured_at: SystemTime::now(),
            image: self.render(self.count),
        };
        self.count += 1;
        Ok(Some(frame))
    }

    fn describe(&self) -> String {
        format!("pattern:{}x{}", self.width, self.height)
    }
}

/// Opens a source from its command-line text: a path to an image or a directory, or
/// `pattern[:WIDTHxHEIGHT]` (default 640x480). `looping` repeats a directory forever.
pub fn open(spec: &str, looping: bool) -> Result<Box<dyn FrameSource>, SourceError> {
    if let Some(rest) = spec.strip_prefix("pattern") {
        let size = rest.strip_prefix(':').unwrap_or(rest);
        let (w, h) = if size.is_empty() {
            (640, 480)
        } else {
            parse_size(size).ok_or_else(|| SourceError::Spec {
                spec: spec.to_owned(),
                message: "expected pattern:WIDTHxHEIGHT, e.g. pattern:640x480".into(),
            })?
        };
        return Ok(Box::new(TestPattern::new(w, h)?));
    }
    let path = Path::new(spec);
    let meta = std::fs::metadata(path).map_err(|source| SourceError::Io {
        path: path.to_owned(),
        source,
    })?;
    if meta.is_dir() {
        Ok(Box::new(ImageFiles::directory(path, looping)?))
    } else {
        Ok(Box::new(ImageFiles::single(path)?))
    }
}

fn parse_size(text: &str) -> Option<(u32, u32)> {
    let (w, h) = text.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, color: [u8; 3]) {
        RgbImage::from_pixel(4, 3, Rgb(color))
            .save(path)
            .expect("write test png");
    }

    #[test]
    fn directory_is_sorted_filtered_and_loops() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_png(&dir.path().join("b.png"), [0, 255, 0]);
        write_png(&dir.path().join("a.png"), [255, 0, 0]);
        std::fs::write(dir.path().join("notes.txt"), "not an image").expect("write");
        let mut source = ImageFiles::directory(dir.path(), true).expect("open");
        let ids: Vec<String> = (0..3)
            .map(|_| source.next_frame().expect("frame").expect("some").id)
            .collect();
        assert_eq!(ids, ["a.png", "b.png", "a.png"]);
        let mut once = ImageFiles::directory(dir.path(), false).expect("open");
        let first = once.next_frame().expect("frame").expect("some");
        assert_eq!(first.image.get_pixel(0, 0), &Rgb([255, 0, 0]));
        assert_eq!(first.image.dimensions(), (4, 3));
        assert!(once.next_frame().expect("frame").is_some());
        assert!(once.next_frame().expect("end").is_none());
    }

    #[test]
    fn empty_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("readme.md"), "x").expect("write");
        let err = ImageFiles::directory(dir.path(), false).expect_err("no images");
        assert!(err.to_string().contains(&dir.path().display().to_string()));
        assert!(err.to_string().contains("no image files"));
    }

    #[test]
    fn a_file_that_is_not_an_image_is_a_recoverable_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("broken.jpg");
        std::fs::write(&bad, b"this is text, not a jpeg").expect("write");
        write_png(&dir.path().join("good.png"), [1, 2, 3]);
        let mut source = ImageFiles::directory(dir.path(), false).expect("open");
        let err = source.next_frame().expect_err("broken first");
        assert!(err.is_recoverable());
        assert!(err.to_string().starts_with(&bad.display().to_string()));
        let next = source.next_frame().expect("good next").expect("some");
        assert_eq!(next.id, "good.png");
    }

    #[test]
    fn pattern_is_deterministic_and_moves() {
        let pattern = TestPattern::new(64, 32).expect("pattern");
        assert_eq!(pattern.render(3), pattern.render(3));
        assert_ne!(pattern.render(0), pattern.render(1));
        let frame = pattern.render(0);
        assert_eq!(frame.get_pixel(0, 0), &Rgb([255, 255, 255]));
        assert_eq!(frame.get_pixel(0, 12), &Rgb([128, 128, 128]));
        assert_eq!(pattern.render(1).get_pixel(0, 12), &Rgb([255, 255, 255]));
        assert_eq!(frame.get_pixel(63, 0), &Rgb([0, 0, 0]));
        assert_eq!(frame.get_pixel(20, 0), &Rgb([0, 255, 255]));
    }

    #[test]
    fn spec_parsing() {
        assert_eq!(
            open("pattern:32x16", false).expect("pattern").describe(),
            "pattern:32x16"
        );
        assert_eq!(
            open("pattern", false).expect("pattern").describe(),
            "pattern:640x480"
        );
        let err = open("pattern:100000x100000", false).err().expect("too big");
        assert!(err.to_string().contains("8 to 16384"), "{err}");
        let err = open("pattern:big", false).err().expect("bad size");
        assert!(err.to_string().contains("pattern:WIDTHxHEIGHT"));
        let err = open("/no/such/file.png", false).err().expect("missing");
        assert!(err.to_string().starts_with("/no/such/file.png"));
    }

    #[test]
    fn an_image_whose_header_claims_more_than_the_cap_is_refused_unread() {
        // A 54-byte BMP claiming 20000 x 20000 pixels of 24 bits (1.1 GiB decoded).
        let mut bmp = Vec::new();
        bmp.extend_from_slice(b"BM");
        bmp.extend_from_slice(&54u32.to_le_bytes());
        bmp.extend_from_slice(&[0; 4]);
        bmp.extend_from_slice(&54u32.to_le_bytes());
        bmp.extend_from_slice(&40u32.to_le_bytes());
        bmp.extend_from_slice(&20_000i32.to_le_bytes());
        bmp.extend_from_slice(&20_000i32.to_le_bytes());
        bmp.extend_from_slice(&1u16.to_le_bytes());
        bmp.extend_from_slice(&24u16.to_le_bytes());
        bmp.extend_from_slice(&[0; 24]);
        let err = decode_image(&bmp, None).expect_err("over the cap");
        assert!(matches!(err, image::ImageError::Limits(_)), "{err}");
    }

    #[test]
    fn a_progressive_jpeg_is_told_by_its_frame_header_before_the_first_scan() {
        // SOI, an APP0 of 4 bytes, then the frame header.
        let head = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00];
        let with = |rest: &[u8]| [&head[..], rest].concat();
        assert!(progressive_jpeg(&with(&[0xFF, 0xC2, 0x00, 0x02])));
        assert!(!progressive_jpeg(&with(&[
            0xFF, 0xC0, 0x00, 0x02, 0xFF, 0xDA
        ])));
        // A progressive-looking marker after the first scan, or bytes that are not markers.
        assert!(!progressive_jpeg(&with(&[
            0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xC2
        ])));
        assert!(!progressive_jpeg(&with(&[0x12, 0x34])));
        assert!(!progressive_jpeg(&[0xFF, 0xD8, 0xFF]));
        // The test sequence's frames are baseline JPEGs.
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images/sequence/frame_001.jpg");
        assert!(!progressive_jpeg(&std::fs::read(path).expect("frame")));
    }

    /// A PNG chunk with its CRC-32.
    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut crc = !0u32;
        for &b in kind.iter().chain(data) {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&(!crc).to_be_bytes());
        out
    }

    /// A PNG of `width` x `height` 8-bit grey pixels with no pixel data.
    fn grey_png_header(width: u32, height: u32) -> Vec<u8> {
        let mut header = Vec::new();
        header.extend_from_slice(&width.to_be_bytes());
        header.extend_from_slice(&height.to_be_bytes());
        header.extend_from_slice(&[8, 0, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &header));
        png.extend(chunk(b"IDAT", &[]));
        png.extend(chunk(b"IEND", &[]));
        png
    }

    #[test]
    fn a_grey_image_within_the_cap_whose_rgb_copy_is_not_is_refused_unread() {
        // 16384 x 8192 grey is 128 MiB as decoded, the cap itself; its RGB copy 384 MiB more.
        let err = decode_image(&grey_png_header(16_384, 8_192), None).expect_err("over the cap");
        assert!(matches!(err, image::ImageError::Limits(_)), "{err}");
        // A quarter of that passes the check, and then fails on its missing pixels.
        let err = decode_image(&grey_png_header(4_096, 8_192), None).expect_err("no pixels");
        assert!(!matches!(err, image::ImageError::Limits(_)), "{err}");
    }
}
