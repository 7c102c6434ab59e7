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

/// Where a request holds a stray control character, and which one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stray {
    /// The path (decoded).
    Path(char),
    /// A query string's or url-encoded form's parameter, or a JSON body's field
    /// (`attributes.outcome`, `rows[2].name`), named as `storable` writes it.
    Parameter(String, char),
    /// A body that holds one where no field can be named (not JSON).
    Body(char),
}

fn percent_decode(input: &[u8], plus_is_space: bool) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The first stray control character of `bytes` read as UTF-8 (a byte that is not UTF-8
/// reads as U+FFFD, as every reader of the request takes it).
fn first_stray(bytes: &[u8]) -> Option<char> {
    String::from_utf8_lossy(bytes)
        .chars()
        .find(|c| is_stray_control(*c))
}

/// A stray control character of a path, raw or percent-encoded.
pub fn stray_in_path(path: &str) -> Option<char> {
    first_stray(&percent_decode(path.as_bytes(), false))
}

/// The first parameter of a query string or url-encoded form whose name or value holds a
/// stray control character, raw or percent-encoded.
pub fn stray_in_urlencoded(input: &[u8]) -> Option<Stray> {
    input.split(|b| *b == b'&').find_map(|pair| {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let name = percent_decode(name, true);
        let c = first_stray(&name).or_else(|| first_stray(&percent_decode(value, true)))?;
        let name = String::from_utf8_lossy(&name);
        Some(Stray::Parameter(storable(&name).into_owned(), c))
    })
}

/// A stray control character of a JSON body, raw or written as an escape (`\u0000`, `\b`,
/// `\f`), with the field holding it. One pass over the bytes; the body is parsed only to
/// name the field when there is one.
pub fn stray_in_json(body: &[u8]) -> Option<Stray> {
    let c = first_stray_json(body)?;
    let named = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| stray_field(&value, &mut String::new()));
    Some(match named {
        Some((name, c)) => Stray::Parameter(name, c),
        None => Stray::Body(c),
    })
}

fn first_stray_json(body: &[u8]) -> Option<char> {
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\\' => {
                let escaped = match body.get(i + 1) {
                    Some(b'b') => Some('\u{8}'),
                    Some(b'f') => Some('\u{c}'),
                    Some(b'u') => body
                        .get(i + 2..i + 6)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .and_then(char::from_u32),
                    _ => None,
                };
                if let Some(c) = escaped.filter(|c| is_stray_control(*c)) {
                    return Some(c);
                }
                // The escaped character is never the start of another escape.
                i += 2;
                continue;
            }
            b if (b < 0x20 || b == 0x7f) && is_stray_control(char::from(b)) => {
                return Some(char::from(b));
            }
            // C1 controls (U+0080 to U+009F) in UTF-8.
            0xc2 if body.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)) => {
                return Some(char::from(body[i + 1]));
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The first key or string value holding a stray control character, with its path.
fn stray_field(value: &serde_json::Value, path: &mut String) -> Option<(String, char)> {
    use serde_json::Value;
    let here = |path: &str| {
        if path.is_empty() {
            "body".to_string()
        } else {
            path.to_string()
        }
    };
    match value {
        Value::String(s) => s
            .chars()
            .find(|c| is_stray_control(*c))
            .map(|c| (here(path), c)),
        Value::Array(items) => items.iter().enumerate().find_map(|(n, item)| {
            let len = path.len();
            path.push_str(&format!("[{n}]"));
            let found = stray_field(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&storable(key));
            let found = match key.chars().find(|c| is_stray_control(*c)) {
                Some(c) => Some((path.clone(), c)),
                None => stray_field(item, path),
            };
            path.truncate(len);
            found
        }),
        _ => None,
    }
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

    #[test]
    fn stray_controls_are_found_raw_or_encoded_and_named() {
        let param = |name: &str, c: char| Some(Stray::Parameter(name.into(), c));
        assert_eq!(stray_in_urlencoded(b"q=a%00b"), param("q", '\0'));
        assert_eq!(
            stray_in_urlencoded(b"a=1&cf_tag1=%7f"),
            param("cf_tag1", '\u{7f}')
        );
        assert_eq!(stray_in_urlencoded(b"q%01=x"), param("q\\u{1}", '\u{1}'));
        assert_eq!(stray_in_urlencoded(b"q=%C2%85"), param("q", '\u{85}'));
        assert_eq!(stray_in_urlencoded(b"q=a\x1bb"), param("q", '\u{1b}'));
        for fine in [
            &b"q=a%09b%0D%0A+c"[..],
            b"q=%",
            b"q=%0",
            b"q=%zz",
            b"",
            b"&&=",
            b"q=%FF",
        ] {
            assert_eq!(stray_in_urlencoded(fine), None, "{fine:?}");
        }
        assert_eq!(stray_in_path("/records/1%00"), Some('\0'));
        assert_eq!(stray_in_path("/a+b/%20/%09"), None);

        let json = |body: &str| stray_in_json(body.as_bytes());
        assert_eq!(json(r#"{"subject":"a\u0000"}"#), param("subject", '\0'));
        assert_eq!(
            json(r#"{"rows":[{"name":"x"},{"name":"\b"}]}"#),
            param("rows[1].name", '\u{8}')
        );
        assert_eq!(json(r#"{"a\u001fb":1}"#), param("a\\u{1f}b", '\u{1f}'));
        assert_eq!(json("{\"a\":\"\u{85}\"}"), param("a", '\u{85}'));
        assert_eq!(json(r#""\u007F""#), param("body", '\u{7f}'));
        assert_eq!(json("{\"a\":\"x\u{0}"), Some(Stray::Body('\0')));
        for fine in [
            r#"{"a":"C:\\u0000 \t\n\r\"\\"}"#,
            "{\"a\":\n\t\"b\"\r\n}",
            r#"{"a":"\ud83d\ude00 \u00e9"}"#,
            "not json",
            r#""\u00"#,
        ] {
            assert_eq!(json(fine), None, "{fine}");
        }
    }
}
