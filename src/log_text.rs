//! Text that goes into log lines, cut to a readable length: a hostile or careless message
//! (a 400 MB argument, an error quoting it) must not write a 400 MB log line.

use std::borrow::Cow;
use std::fmt::Display;

/// How many bytes of a value a log line shows.
pub const MAX_LOG_TEXT: usize = 300;

/// `text` cut to [`MAX_LOG_TEXT`] bytes (on a character boundary), followed by
/// `... (N bytes in all)` when it was longer.
pub fn clip(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_LOG_TEXT {
        return Cow::Borrowed(text);
    }
    let mut cut = MAX_LOG_TEXT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}... ({} bytes in all)", &text[..cut], text.len()))
}

/// A value's `Display` text, clipped as [`clip`] does, without writing the whole text
/// first: writing stops past [`MAX_LOG_TEXT`] bytes, and only the length goes on.
pub fn clip_display(value: &impl Display) -> String {
    let mut writer = BoundedWriter {
        kept: String::new(),
        total: 0,
    };
    let _ = std::fmt::write(&mut writer, format_args!("{value}"));
    if writer.total <= MAX_LOG_TEXT {
        return writer.kept;
    }
    format!("{}... ({} bytes in all)", writer.kept, writer.total)
}

/// Keeps the first [`MAX_LOG_TEXT`] bytes written (on a character boundary) and counts
/// the rest.
struct BoundedWriter {
    kept: String,
    total: usize,
}

impl std::fmt::Write for BoundedWriter {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.total += text.len();
        let room = MAX_LOG_TEXT.saturating_sub(self.kept.len());
        if room > 0 {
            let mut cut = room.min(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.kept.push_str(&text[..cut]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_as_is() {
        assert_eq!(clip("boom"), "boom");
        let exact = "x".repeat(MAX_LOG_TEXT);
        assert_eq!(clip(&exact), exact.as_str());
    }

    #[test]
    fn long_text_is_cut_and_its_length_named() {
        let long = "y".repeat(400 * 1024 * 1024 / 1024);
        let clipped = clip(&long);
        assert!(clipped.len() < MAX_LOG_TEXT + 40, "{}", clipped.len());
        assert!(clipped.ends_with(&format!("... ({} bytes in all)", long.len())));
    }

    #[test]
    fn display_values_are_clipped_like_text() {
        let long = "w".repeat(10_000);
        assert_eq!(clip_display(&long), clip(&long));
        assert_eq!(clip_display(&"short"), "short");
        let accented = "é".repeat(MAX_LOG_TEXT);
        assert_eq!(clip_display(&accented), clip(&accented));
    }

    #[test]
    fn cuts_on_a_character_boundary() {
        let long = "é".repeat(MAX_LOG_TEXT);
        let clipped = clip(&long);
        assert!(clipped.starts_with("éé"));
        assert!(clipped.contains("bytes in all"));
    }
}
