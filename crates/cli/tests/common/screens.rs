//! Screens the tests look at: a terminal program under tmux (read back with `capture-pane`) and
//! a page in headless Chromium (a PNG screenshot, decoded and measured). Both tools are system
//! packages that `scripts/install-test-tools.sh` installs; a missing one fails the test with
//! that hint.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn tool(name: &str, args: &[&str]) -> Output {
    Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {name} ({e}): run scripts/install-test-tools.sh (Debian packages tmux, chromium-headless-shell)")
    })
}

/// A detached tmux session running one command in a `cols`×`rows` terminal; killed on drop.
pub struct Tmux {
    pub session: String,
}

impl Tmux {
    pub fn start(session: &str, cols: u16, rows: u16, command: &str) -> Tmux {
        let _ = tool("tmux", &["kill-session", "-t", session]);
        let (c, r) = (cols.to_string(), rows.to_string());
        let out = tool(
            "tmux",
            &[
                "new-session",
                "-d",
                "-s",
                session,
                "-x",
                &c,
                "-y",
                &r,
                command,
            ],
        );
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Keep the pane after the command exits, so its last screen can still be read.
        tool(
            "tmux",
            &["set-option", "-t", session, "remain-on-exit", "on"],
        );
        Tmux {
            session: session.into(),
        }
    }

    /// The screen as plain text.
    pub fn text(&self) -> String {
        self.capture(false)
    }

    /// The screen with its colours as ANSI escape sequences.
    pub fn ansi(&self) -> String {
        self.capture(true)
    }

    fn capture(&self, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", &self.session];
        if escapes {
            args.push("-e");
        }
        String::from_utf8_lossy(&tool("tmux", &args).stdout).into_owned()
    }

    pub fn keys(&self, keys: &str) {
        tool("tmux", &["send-keys", "-t", &self.session, keys]);
    }

    /// Whether the pane's command is still running.
    pub fn alive(&self) -> bool {
        let out = tool(
            "tmux",
            &["display-message", "-p", "-t", &self.session, "#{pane_dead}"],
        );
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0"
    }

    /// Waits until the screen satisfies `ok` (returns it) or `timeout` passes (panics with it).
    pub fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.text();
            if ok(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < timeout,
                "the screen never showed {what} within {timeout:?}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .output();
    }
}

/// Headless Chromium's screenshot of `page` (a local file) at `width`×`height`, written to `png`.
pub fn screenshot(page: &Path, png: &Path, width: u32, height: u32) {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let size = format!("--window-size={width},{height}");
    let shot = format!("--screenshot={}", png.display());
    let out = tool(
        "chromium-headless-shell",
        &[
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            &size,
            &shot,
            &url,
        ],
    );
    assert!(
        out.status.success() && png.is_file(),
        "chromium-headless-shell failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A decoded RGB(A) screenshot.
pub struct Image {
    pub width: u32,
    pub height: u32,
    /// RGB per pixel.
    pub pixels: Vec<[u8; 3]>,
}

impl Image {
    pub fn read(path: &Path) -> Image {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        let step = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => panic!("unexpected screenshot colour type {other:?}"),
        };
        let pixels = buf[..info.buffer_size()]
            .chunks_exact(step)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        Image {
            width: info.width,
            height: info.height,
            pixels,
        }
    }

    /// Pixels within `tol` of `rgb` in every channel.
    pub fn count_near(&self, rgb: [u8; 3], tol: u8) -> usize {
        self.pixels
            .iter()
            .filter(|p| (0..3).all(|i| p[i].abs_diff(rgb[i]) <= tol))
            .count()
    }

    /// The share of pixels that are not (near) white.
    pub fn inked(&self) -> f64 {
        let white = self.count_near([255, 255, 255], 8);
        1.0 - white as f64 / self.pixels.len() as f64
    }
}

/// An ANSI-coloured terminal capture as an HTML page (light text on a dark background,
/// monospace), for a screenshot of a terminal program.
pub fn ansi_to_html(ansi: &str, title: &str) -> String {
    let mut body = String::new();
    let mut sgr = Sgr::default();
    let mut open = false;
    let mut chars = ansi.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            let mut code = String::new();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    if d == 'm' {
                        sgr.apply(&code);
                        if open {
                            body.push_str("</span>");
                        }
                        let css = sgr.css();
                        open = !css.is_empty();
                        if open {
                            body.push_str(&format!("<span style=\"{css}\">"));
                        }
                    }
                    break;
                }
                code.push(d);
            }
            continue;
        }
        // Each cell in a box one character wide, so glyphs from fallback fonts (braille,
        // box drawing) keep the terminal's grid.
        match c {
            '\n' => body.push('\n'),
            '<' => body.push_str("<i>&lt;</i>"),
            '>' => body.push_str("<i>&gt;</i>"),
            '&' => body.push_str("<i>&amp;</i>"),
            _ => {
                body.push_str("<i>");
                body.push(c);
                body.push_str("</i>");
            }
        }
    }
    if open {
        body.push_str("</span>");
    }
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{margin:0;background:#1e1e1e}}pre{{margin:0;padding:8px;color:#ddd;\
         font:14px/1.0 'DejaVu Sans Mono',monospace}}\
         i{{display:inline-block;width:1ch;font-style:normal}}</style></head><body><pre>{body}</pre></body></html>"
    )
}

const PALETTE: [&str; 16] = [
    "#1e1e1e", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
    "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
];

/// The graphic rendition in force (SGR state).
#[derive(Default)]
struct Sgr {
    bold: bool,
    underline: bool,
    reverse: bool,
    fg: Option<String>,
    bg: Option<String>,
}

impl Sgr {
    fn apply(&mut self, code: &str) {
        let nums: Vec<u32> = code.split(';').map(|n| n.parse().unwrap_or(0)).collect();
        let mut i = 0;
        while i < nums.len() {
            match nums[i] {
                0 => *self = Sgr::default(),
                1 => self.bold = true,
                22 => self.bold = false,
                4 => self.underline = true,
                24 => self.underline = false,
                7 => self.reverse = true,
                27 => self.reverse = false,
                n @ 30..=37 => self.fg = Some(PALETTE[(n - 30) as usize].into()),
                n @ 90..=97 => self.fg = Some(PALETTE[(n - 90 + 8) as usize].into()),
                39 => self.fg = None,
                n @ 40..=47 => self.bg = Some(PALETTE[(n - 40) as usize].into()),
                n @ 100..=107 => self.bg = Some(PALETTE[(n - 100 + 8) as usize].into()),
                49 => self.bg = None,
                n @ (38 | 48) => {
                    let (col, used) = extended_colour(&nums[i + 1..]);
                    if n == 38 {
                        self.fg = col;
                    } else {
                        self.bg = col;
                    }
                    i += used;
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn css(&self) -> String {
        let (mut fg, mut bg) = (self.fg.clone(), self.bg.clone());
        if self.reverse {
            let f = fg.take().unwrap_or_else(|| "#dddddd".into());
            fg = Some(bg.take().unwrap_or_else(|| "#1e1e1e".into()));
            bg = Some(f);
        }
        let mut css = Vec::new();
        if self.bold {
            css.push("font-weight:bold".to_string());
        }
        if self.underline {
            css.push("text-decoration:underline".to_string());
        }
        css.extend(fg.map(|c| format!("color:{c}")));
        css.extend(bg.map(|c| format!("background:{c}")));
        css.join(";")
    }
}

/// A `5;N` or `2;R;G;B` colour after 38/48, and how many numbers it used.
fn extended_colour(rest: &[u32]) -> (Option<String>, usize) {
    match rest {
        [5, n, ..] => (PALETTE.get(*n as usize).map(|s| s.to_string()), 2),
        [2, r, g, b, ..] => (Some(format!("rgb({r},{g},{b})")), 4),
        _ => (None, rest.len()),
    }
}

/// Where the tests' screenshots are kept: `$COVENANT_SCREENSHOTS` (the README's images are made
/// with `COVENANT_SCREENSHOTS=docs/images`), else nowhere beyond the test's own directory.
pub fn keep(png: &Path, name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("COVENANT_SCREENSHOTS")?);
    let dir = if dir.is_relative() {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir)
    } else {
        dir
    };
    std::fs::create_dir_all(&dir).unwrap();
    let to = dir.join(name);
    std::fs::copy(png, &to).unwrap();
    Some(to)
}
