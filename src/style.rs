//! Colour for people at a terminal: errors red, success green, warnings
//! yellow, diff lines `+` green and `-` red. Never in a pipe or a file, and
//! never with `NO_COLOR` set (to any value, empty included). Colour only
//! adds to the text: every line already carries its meaning in words and
//! symbols (`error:`, `warning:`, `+`, `-`, `~`).

use std::io::IsTerminal;

use anstyle::{AnsiColor, Style};

/// What a piece of text says, which decides its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// A failure: red.
    Error,
    /// Success: green.
    Success,
    /// A warning, or something stopped halfway: yellow.
    Warning,
    /// A line a diff adds: green.
    Added,
    /// A line a diff removes: red.
    Removed,
}

impl Tone {
    /// The terminal style of this tone.
    fn style(self) -> Style {
        let colour = match self {
            Tone::Error | Tone::Removed => AnsiColor::Red,
            Tone::Success | Tone::Added => AnsiColor::Green,
            Tone::Warning => AnsiColor::Yellow,
        };
        let style = Style::new().fg_color(Some(colour.into()));
        if self == Tone::Error {
            style.bold()
        } else {
            style
        }
    }
}

/// Colours text for one stream, or leaves it as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Painter {
    /// Whether to colour at all.
    on: bool,
}

impl Painter {
    /// For standard output: colour when it is a terminal and `NO_COLOR` is unset.
    pub fn stdout() -> Painter {
        Painter::new(std::io::stdout().is_terminal())
    }

    /// For standard error: colour when it is a terminal and `NO_COLOR` is unset.
    pub fn stderr() -> Painter {
        Painter::new(std::io::stderr().is_terminal())
    }

    /// For a stream that is a terminal or not, `NO_COLOR` read from the environment.
    pub fn new(terminal: bool) -> Painter {
        Painter {
            on: colour_wanted(terminal, std::env::var_os("NO_COLOR").is_some()),
        }
    }

    /// Never colours.
    pub fn plain() -> Painter {
        Painter { on: false }
    }

    /// `text` in `tone`'s colour, or as it is.
    pub fn paint(self, tone: Tone, text: &str) -> String {
        if self.on {
            let style = tone.style();
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    }

    /// A line of a unified diff, coloured by its first character: `+` added,
    /// `-` removed, others (context, `@@` hunk headers) as they are.
    pub fn diff_line(self, line: &str) -> String {
        match line.chars().next() {
            Some('+') => self.paint(Tone::Added, line),
            Some('-') => self.paint(Tone::Removed, line),
            _ => line.to_owned(),
        }
    }
}

/// Whether a stream gets colour: only a terminal, and only without `NO_COLOR`.
fn colour_wanted(terminal: bool, no_color: bool) -> bool {
    terminal && !no_color
}

/// The width of each column of a table (`header` then `rows`): its widest
/// cell, in characters, so columns line up.
pub fn column_widths<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> [usize; N] {
    std::array::from_fn(|column| {
        std::iter::once(header)
            .chain(rows)
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_gets_colour_unless_no_color_is_set() {
        assert!(colour_wanted(true, false));
        assert!(!colour_wanted(true, true), "NO_COLOR turns it off");
        assert!(!colour_wanted(false, false), "a pipe never gets colour");
        assert!(!colour_wanted(false, true));
    }

    #[test]
    fn the_terminal_painter_colours_by_tone_and_the_plain_one_not_at_all() {
        let terminal = Painter { on: true };
        assert_eq!(
            terminal.paint(Tone::Error, "error: boom"),
            "\x1b[1m\x1b[31merror: boom\x1b[0m"
        );
        assert_eq!(terminal.paint(Tone::Success, "ok"), "\x1b[32mok\x1b[0m");
        assert_eq!(
            terminal.paint(Tone::Warning, "warning: w"),
            "\x1b[33mwarning: w\x1b[0m"
        );
        assert_eq!(terminal.diff_line("+added"), "\x1b[32m+added\x1b[0m");
        assert_eq!(terminal.diff_line("-gone"), "\x1b[31m-gone\x1b[0m");
        assert_eq!(
            terminal.diff_line(" - item"),
            " - item",
            "context, not removed"
        );
        let plain = Painter::plain();
        assert_eq!(plain.paint(Tone::Error, "error: boom"), "error: boom");
        assert_eq!(plain.diff_line("+added"), "+added");
    }
}
