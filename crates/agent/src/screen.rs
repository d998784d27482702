//! The PC's own screen: what the PXE-booted agent says goes to its standard output (the kernel's
//! `/dev/console`, the last `console=` of the command line, the serial port in the lab) and to the
//! display (`/dev/tty0`) when the command line names it too, so a technician standing in the room
//! reads progress and, in large letters, the outcome.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

/// Where the agent writes for the people in the room.
pub struct Screen {
    display: Option<Mutex<File>>,
}

impl Screen {
    /// Standard output, plus `/dev/tty0` when `console=tty0` is on the command line and is not
    /// the console standard output already goes to (the last `console=`).
    pub fn open(cmdline: &str) -> Screen {
        let consoles: Vec<&str> = cmdline
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("console="))
            .map(|c| c.split(',').next().unwrap_or(c))
            .collect();
        let display = consoles.contains(&"tty0") && consoles.last() != Some(&"tty0");
        Screen {
            display: display
                .then(|| {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open("/dev/tty0")
                        .ok()
                })
                .flatten()
                .map(Mutex::new),
        }
    }

    /// Standard output only (tests, a technician's shell).
    pub fn stdout() -> Screen {
        Screen { display: None }
    }

    /// One line.
    pub fn line(&self, text: &str) {
        println!("{text}");
        let _ = std::io::stdout().flush();
        if let Some(d) = &self.display {
            let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(d, "{text}\r");
        }
    }

    /// The outcome: `headline` in block letters, then each line of `why`, framed.
    pub fn banner(&self, headline: &str, why: &[String]) {
        for l in banner_lines(headline, why) {
            self.line(&l);
        }
    }
}

const WIDTH: usize = 76;

/// The framed block-letter banner, as lines.
pub fn banner_lines(headline: &str, why: &[String]) -> Vec<String> {
    let bar = "#".repeat(WIDTH);
    let frame = |s: &str| format!("#  {s:<w$}#", w = WIDTH - 4);
    let mut out = vec![String::new(), bar.clone(), frame("")];
    for row in big(headline) {
        out.push(frame(&row));
    }
    out.push(frame(""));
    for w in why {
        for l in wrap(w, WIDTH - 6) {
            out.push(frame(&l));
        }
    }
    out.push(frame(""));
    out.push(bar);
    out.push(String::new());
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        while word.chars().count() > width {
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            if !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
            }
            lines.push(head);
        }
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// Five rows of block letters (A–Z as far as roomcast's headlines need; others as plain text).
fn big(word: &str) -> Vec<String> {
    let glyph = |c: char| -> Option<[&str; 5]> {
        Some(match c {
            'A' => [" ### ", "#   #", "#####", "#   #", "#   #"],
            'D' => ["#### ", "#   #", "#   #", "#   #", "#### "],
            'E' => ["#####", "#    ", "#### ", "#    ", "#####"],
            'F' => ["#####", "#    ", "#### ", "#    ", "#    "],
            'I' => ["#####", "  #  ", "  #  ", "  #  ", "#####"],
            'L' => ["#    ", "#    ", "#    ", "#    ", "#####"],
            'N' => ["#   #", "##  #", "# # #", "#  ##", "#   #"],
            'O' => [" ### ", "#   #", "#   #", "#   #", " ### "],
            ' ' => ["   ", "   ", "   ", "   ", "   "],
            _ => return None,
        })
    };
    let up = word.to_ascii_uppercase();
    let glyphs: Option<Vec<[&str; 5]>> = up.chars().map(glyph).collect();
    match glyphs {
        Some(g) => (0..5)
            .map(|r| g.iter().map(|x| x[r]).collect::<Vec<_>>().join(" "))
            .collect(),
        None => vec![up],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_is_framed_big_and_wrapped() {
        let why = vec![
            "no driver for network card PCI 1022:2000 (slot 0000:00:03.0): module pcnet32 is not \
             in this boot environment"
                .to_string(),
        ];
        let lines = banner_lines("failed", &why);
        assert!(
            lines
                .iter()
                .all(|l| l.is_empty() || l.chars().count() == WIDTH),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("#####  ###  ##### #     ##### ####")),
            "{lines:#?}"
        );
        let text = lines.join("\n");
        assert!(
            text.contains("1022:2000") && text.contains("pcnet32"),
            "{text}"
        );
        assert_eq!(big("ok?"), ["OK?"]);
    }
}
