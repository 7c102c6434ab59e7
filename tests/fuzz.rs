//! Property tests over hostile input: the CSV reader and the value validators never panic,
//! whatever the bytes, and a normalised value normalises to itself. `cargo test` runs a few
//! hundred cases; `.ci/run` runs many more (`PROPTEST_CASES`).

use std::io::Read;

use proptest::prelude::*;
use syncdesk::fields::model::FieldType;
use syncdesk::fields::validate::{normalize, PhoneCountry};
use syncdesk::sync::csvfile::{detect, detect_file, DecodingReader};

/// Bytes shaped like CSV now and then: delimiters, quotes, line breaks, stray and multibyte
/// UTF-8, NUL and other control bytes.
fn csvish() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(b"abcXYZ019 ,;\t\"\r\n".to_vec()),
            1 => any::<u8>(),
            1 => prop::sample::select(vec![0xC3, 0xA9, 0xE9, 0xEF, 0xBB, 0xBF, 0x00, 0x7F]),
        ],
        0..600,
    )
}

/// A reader that hands out `step` bytes at a time.
struct Trickle<'a> {
    bytes: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

proptest! {
    #[test]
    fn the_csv_reader_reads_a_trickle_as_the_whole(bytes in csvish(), step in 1usize..8) {
        let format = detect(&bytes);
        let records = |input: &mut dyn Read| -> Vec<Result<Vec<String>, String>> {
            csv::ReaderBuilder::new()
                .delimiter(format.delimiter)
                .flexible(true)
                .from_reader(DecodingReader::new(input, format.encoding))
                .records()
                .map(|r| {
                    r.map(|r| r.iter().map(str::to_string).collect())
                        .map_err(|e| e.to_string())
                })
                .collect()
        };
        // Read a few bytes at a time (characters cut at every place) or all at once: the same
        // rows, and never a panic.
        let whole = records(&mut bytes.as_slice());
        let trickled = records(&mut Trickle { bytes: &bytes, step });
        prop_assert_eq!(whole, trickled);
    }

    #[test]
    fn detecting_a_file_never_panics(bytes in csvish()) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let path = dir.path().join("f.csv");
        std::fs::write(&path, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Ok((_, Some(doubt))) = detect_file(&path) {
            prop_assert!(doubt.invalid > 0 && doubt.line >= 1);
        }
    }

    #[test]
    fn validators_never_panic_and_are_idempotent(
        raw in prop_oneof![
            ".{0,40}",
            "[+0-9 ().-]{0,20}",
            "[a-z.]{1,10}@[a-z]{1,8}\\.[a-z]{2,3}",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}",
            "-?[0-9]{0,6}([.,][0-9]{0,4})?",
        ],
        kind in prop::sample::select(FieldType::ALL.to_vec()),
    ) {
        let options = vec!["Gold".to_string(), "Silver".to_string()];
        let country = PhoneCountry::parse("GB").map_err(TestCaseError::fail)?;
        if let Ok(value) = normalize(kind, &options, &raw, country) {
            prop_assert_eq!(normalize(kind, &options, &value, country), Ok(value.clone()));
        }
    }

    /// The edge's check finds a stray control character in a form or a JSON body exactly when
    /// a value or a name holds one, however it was encoded, and never panics on bytes.
    #[test]
    fn the_edge_finds_every_stray_control_and_only_those(
        pairs in prop::collection::vec((texty(), texty()), 0..5),
        bytes in csvish(),
    ) {
        use syncdesk::text::{is_stray_control, stray_in_json, stray_in_path, stray_in_urlencoded};
        let holds = pairs
            .iter()
            .any(|(k, v)| k.chars().chain(v.chars()).any(is_stray_control));
        let form = serde_urlencoded::to_string(&pairs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(stray_in_urlencoded(form.as_bytes()).is_some(), holds, "{}", form);
        let object: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!([v, {"x": v}])))
            .collect();
        let holds = object.iter().any(|(k, v)| {
            let value = v[0].as_str().unwrap_or_default();
            k.chars().chain(value.chars()).any(is_stray_control)
        });
        let json = serde_json::to_vec(&object).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(stray_in_json(&json).is_some(), holds, "{}", String::from_utf8_lossy(&json));
        let _ = (stray_in_json(&bytes), stray_in_urlencoded(&bytes));
        let _ = stray_in_path(&String::from_utf8_lossy(&bytes));
    }
}

/// Text with now and then a control character, a backslash, `%`, `+` or `&`.
fn texty() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(vec!['a', 'Z', ' ', '\\', '%', '+', '&', '=', 'é', '\t', '\n', '\r', 'u']),
            1 => (0u32..0xa0).prop_filter_map("a char", char::from_u32),
        ],
        0..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}
