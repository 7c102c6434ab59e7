//! Text that can be stored and shown whatever a file held.

use std::borrow::Cow;

/// A control character other than tab and line breaks: never part of a value people typed
/// (a NUL byte means a binary file), and PostgreSQL text cannot hold NUL at all.
pub fn is_stray_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// `text` with stray control characters written out (`\u{0}`), so a message or a report
/// line that quotes a file's bytes can always be saved.
pub fn storable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_stray_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if is_stray_control(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// `value` encoded for a URL's query string.
pub fn url_encode(value: &str) -> String {
    serde_urlencoded::to_string([("", value)])
        .map(|s| s.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

/// A UTC time in JSON as RFC 3339 (`2026-11-30T18:00:00Z`): times are stored in UTC without
/// a zone, and a reader must not take them for local times.
pub fn utc<S: serde::Serializer>(
    time: &chrono::NaiveDateTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&time.format("%Y-%m-%dT%H:%M:%SZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_written_out() {
        assert_eq!(storable("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(storable("a\0b\u{7f}"), "a\\u{0}b\\u{7f}");
    }
}
