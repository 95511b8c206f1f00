//! Saving a part of the window as a PNG file (a plot, the comparison's bars): the window is
//! captured by egui's screenshot command, the part cut out, and the file encoded and written on
//! a thread of its own. The encoder is a minimal one (8-bit RGBA, deflate's stored blocks, so
//! a few times larger than a compressing encoder): the project has no image crate, and a plot
//! of a few hundred thousand pixels does not need one.

use crossbeam_channel::Receiver;
use std::path::{Path, PathBuf};

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in bytes.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// `rgba` (`width * height * 4` bytes, rows top to bottom) as a PNG file's bytes.
pub fn encode_rgba(width: u32, height: u32, rgba: &[u8]) -> Vec<u8> {
    assert_eq!(rgba.len(), width as usize * height as usize * 4);
    // Each row starts with filter type 0 (none).
    let mut raw = Vec::with_capacity(rgba.len() + height as usize);
    for row in rgba.chunks(width as usize * 4) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    // zlib: header, deflate stored blocks of at most 65535 bytes, Adler-32.
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let n = block.len() as u16;
        z.extend_from_slice(&n.to_le_bytes());
        z.extend_from_slice(&(!n).to_le_bytes());
        z.extend_from_slice(block);
    }
    if blocks.is_empty() {
        z.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // 8 bits per channel, colour type 6 (RGBA), deflate, filter set 0, no interlace.
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// The pixels of `rect` (in points) cut out of a window capture taken at `pixels_per_point`.
pub fn crop(
    image: &egui::ColorImage,
    rect: egui::Rect,
    pixels_per_point: f32,
) -> (u32, u32, Vec<u8>) {
    let [w, h] = image.size;
    let px = |v: f32, max: usize| ((v * pixels_per_point).round().max(0.0) as usize).min(max);
    let (x0, x1) = (px(rect.min.x, w), px(rect.max.x, w));
    let (y0, y1) = (px(rect.min.y, h), px(rect.max.y, h));
    let mut rgba = Vec::with_capacity((x1 - x0) * (y1 - y0) * 4);
    for y in y0..y1 {
        for c in &image.pixels[y * w + x0..y * w + x1] {
            rgba.extend_from_slice(&c.to_srgba_unmultiplied());
        }
    }
    ((x1 - x0) as u32, (y1 - y0) as u32, rgba)
}

/// A PNG export under way, or how the last one went.
#[derive(Default)]
pub struct Export {
    pending: Option<Receiver<Result<PathBuf, String>>>,
    pub last: Option<Result<PathBuf, String>>,
}

impl Export {
    /// Asks for a capture of the window; `rect` of it is written to `path` on another thread.
    pub fn start(&mut self, ctx: &egui::Context, rect: egui::Rect, path: PathBuf) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let ppp = ctx.pixels_per_point();
        let repaint = ctx.clone();
        ctx.request_screenshot(move |image| {
            // The capture arrives on the window's thread: encode and write elsewhere.
            std::thread::spawn(move || {
                let (w, h, rgba) = crop(&image, rect, ppp);
                let done = if w == 0 || h == 0 {
                    Err("the plot was not on screen when the window was captured".to_string())
                } else {
                    write_png(&path, w, h, &rgba).map(|()| path)
                };
                let _ = tx.send(done);
                repaint.request_repaint();
            });
        });
        self.pending = Some(rx);
        self.last = None;
    }

    /// Whether an export is under way.
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    /// Picks up the result of an export; true while one is under way.
    pub fn poll(&mut self) -> bool {
        if let Some(rx) = &self.pending {
            match rx.try_recv() {
                Ok(r) => {
                    self.last = Some(r);
                    self.pending = None;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => return true,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.pending = None;
                    self.last = Some(Err(
                        "the window could not be captured (this display gives no screenshots)"
                            .into(),
                    ));
                }
            }
        }
        false
    }

    /// A button that starts the export of `rect` into `path`, and how the last one went.
    pub fn ui(&mut self, ui: &mut egui::Ui, label: &str, rect: egui::Rect, path: PathBuf) {
        let busy = self.poll();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!busy, egui::Button::new(label).small())
                .on_hover_text(format!("writes {}", path.display()))
                .clicked()
            {
                self.start(ui.ctx(), rect, path);
            }
            match &self.last {
                Some(Ok(p)) => {
                    ui.weak(format!("saved {}", p.display()));
                }
                Some(Err(e)) => {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                None if busy => {
                    ui.spinner();
                }
                None => {}
            }
        });
    }
}

fn write_png(path: &Path, w: u32, h: u32, rgba: &[u8]) -> Result<(), String> {
    crate::atomic::write_file(path, &encode_rgba(w, h, rgba)).map_err(|e| format!("{e:#}"))
}

/// A file name for an export made now: `<what>-<unix ms>.png`.
pub fn file_name(what: &str) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{what}-{ms}.png")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_png_has_its_signature_header_and_checksummed_chunks() {
        let rgba: Vec<u8> = (0..3 * 2 * 4).map(|i| i as u8).collect();
        let png = encode_rgba(3, 2, &rgba);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 3);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 2);
        // Every chunk's CRC covers its type and data.
        let mut at = 8;
        let mut kinds = Vec::new();
        while at < png.len() {
            let n = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            let crc = u32::from_be_bytes(png[at + 8 + n..at + 12 + n].try_into().unwrap());
            assert_eq!(crc32(&png[at + 4..at + 8 + n]), crc);
            kinds.push(String::from_utf8_lossy(&png[at + 4..at + 8]).to_string());
            at += 12 + n;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        // The known CRC of "IEND" with no data.
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    #[test]
    fn a_crop_takes_the_rect_in_pixels() {
        let mut image = egui::ColorImage::filled([4, 4], egui::Color32::BLACK);
        image.pixels[2 * 4 + 2] = egui::Color32::WHITE;
        let rect = egui::Rect::from_min_max(egui::pos2(1.0, 1.0), egui::pos2(2.0, 2.0));
        let (w, h, rgba) = crop(&image, rect, 2.0);
        assert_eq!((w, h), (2, 2));
        assert_eq!(&rgba[..4], &[255, 255, 255, 255]);
    }
}
