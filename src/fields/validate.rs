//! Checks and normalises one value by its field's type. Pure: every write path (form, import,
//! API, review) calls it, so the same value is stored the same way whichever path brings it.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;

use chrono::NaiveDate;
use phonenumber::country;

use super::model::{FieldDef, FieldType};

/// Longest text value, in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Longest external id (a source's id column), in characters.
pub const MAX_ID_CHARS: usize = 255;

/// The country assumed for phone numbers written without an international prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneCountry(pub country::Id);

impl PhoneCountry {
    /// An ISO 3166 two-letter code such as `FR`, `US` or `AU`.
    pub fn parse(code: &str) -> Result<Self, String> {
        country::Id::from_str(&code.trim().to_ascii_uppercase())
            .map(PhoneCountry)
            .map_err(|_| format!("'{code}' is not a two-letter country code such as FR, US or AU"))
    }

    pub fn code(&self) -> String {
        format!("{:?}", self.0)
    }
}

impl Default for PhoneCountry {
    fn default() -> Self {
        PhoneCountry(country::Id::US)
    }
}

/// Normalises `raw` for a field of type `field_type`. A blank value is `Ok("")`: whether a
/// field may be blank is the caller's rule. The error is a sentence without the field's name.
pub fn normalize(
    field_type: FieldType,
    options: &[String],
    raw: &str,
    country: PhoneCountry,
) -> Result<String, String> {
    let value = raw.trim();
    if value.is_empty() {
        return Ok(String::new());
    }
    match field_type {
        FieldType::Text => {
            if value.chars().count() > MAX_TEXT_CHARS {
                return Err(format!("is longer than {MAX_TEXT_CHARS} characters"));
            }
            if value.chars().any(crate::text::is_stray_control) {
                return Err("contains control characters".into());
            }
            Ok(value.to_string())
        }
        FieldType::Email => normalize_email(value),
        FieldType::Phone => normalize_phone(value, country),
        FieldType::Date => NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .map(|d| d.format("%Y-%m-%d").to_string())
            .map_err(|_| format!("'{value}' is not a date written as YYYY-MM-DD")),
        FieldType::Number => normalize_number(value),
        FieldType::List => options
            .iter()
            .find(|o| o.eq_ignore_ascii_case(value))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "'{value}' is not one of the options: {}",
                    if options.is_empty() {
                        "(none defined)".to_string()
                    } else {
                        options.join(", ")
                    }
                )
            }),
        FieldType::Document => match value.parse::<i64>() {
            Ok(id) if id > 0 => Ok(id.to_string()),
            _ => Err(format!("'{value}' is not a document reference")),
        },
    }
}

/// `normalize` for a field definition, with the field's label at the start of the message.
pub fn normalize_for(def: &FieldDef, raw: &str, country: PhoneCountry) -> Result<String, String> {
    let mut value = normalize(def.ftype(), &def.option_list(), raw, country)
        .map_err(|message| format!("{}: {message}", def.label))?;
    if def.builtin && def.key == "name" {
        // "bartholomew   QUILL" from a file or a form is one name with one space.
        value = value.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    if value.is_empty() && def.required() {
        return Err(format!("{}: is required", def.label));
    }
    Ok(value)
}

/// An email address as stored: checked by the RFC (with a dotted domain), domain lower-cased.
/// The one email check, for record fields and accounts alike.
pub fn normalize_email(value: &str) -> Result<String, String> {
    let invalid = || format!("'{value}' is not a valid email address");
    let parsed = email_address::EmailAddress::from_str(value).map_err(|_| invalid())?;
    // Addresses without a dotted domain are valid by the RFC but never what people meant here.
    let domain = parsed.domain();
    if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
        return Err(invalid());
    }
    Ok(format!("{}@{}", parsed.local_part(), domain.to_lowercase()))
}

fn normalize_phone(value: &str, country: PhoneCountry) -> Result<String, String> {
    // An international number must not get the default country: with a US default, the
    // library would read the 1 of "+33 1 ..." as the US national prefix.
    let hint = (!value.starts_with('+')).then_some(country.0);
    let number = phonenumber::parse(hint, value).map_err(|_| {
        format!(
            "'{value}' is not a phone number (numbers without a + prefix are read as {})",
            country.code()
        )
    })?;
    if !phonenumber::is_valid(&number) {
        return Err(format!(
            "'{value}' is not a valid phone number (numbers without a + prefix are read as {})",
            country.code()
        ));
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// How a stored value reads on a page: a phone (stored in E.164) in the international format
/// with spaces (`+44 20 7946 0101`); anything else as stored.
pub fn display(field_type: FieldType, value: &str) -> String {
    match field_type {
        FieldType::Phone if value.starts_with('+') => readable_phone(value),
        _ => value.to_string(),
    }
}

/// Stored phones already formatted, by E.164 number. Formatting applies libphonenumber's rules,
/// regular expressions it looks up by hashing their text: a quarter of a list page's time,
/// for numbers that lists show again and again. Emptied when full.
static READABLE_PHONES: std::sync::LazyLock<Mutex<HashMap<String, String>>> =
    std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));
const READABLE_PHONES_KEPT: usize = 65_536;

fn readable_phone(e164: &str) -> String {
    if let Some(known) = READABLE_PHONES
        .lock()
        .ok()
        .and_then(|memo| memo.get(e164).cloned())
    {
        return known;
    }
    let formatted = phonenumber::parse(None, e164)
        .map(|n| {
            n.format()
                .mode(phonenumber::Mode::International)
                .to_string()
        })
        .unwrap_or_else(|_| e164.to_string());
    if let Ok(mut memo) = READABLE_PHONES.lock() {
        if memo.len() >= READABLE_PHONES_KEPT {
            memo.clear();
        }
        memo.insert(e164.to_string(), formatted.clone());
    }
    formatted
}

fn normalize_number(value: &str) -> Result<String, String> {
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.contains(',') {
        return Err(format!(
            "'{value}' is not a number: write the decimal separator as a dot, without thousands separators"
        ));
    }
    match compact.parse::<f64>() {
        Ok(n) if n.is_finite() && !compact.contains(['e', 'E', 'i', 'I', 'n', 'N']) => {
            // Display gives the shortest form that reads back the same: 1500.00 -> 1500.
            Ok(if n == 0.0 {
                "0".to_string()
            } else {
                n.to_string()
            })
        }
        _ => Err(format!("'{value}' is not a number")),
    }
}

/// Identity matching and search: trimmed, inner spaces collapsed, case-folded.
pub fn norm_text(value: &str) -> String {
    value
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Identity matching and search for phones: `+` and digits only.
pub fn norm_phone(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr() -> PhoneCountry {
        PhoneCountry::parse("FR").unwrap()
    }

    fn ok(t: FieldType, raw: &str) -> String {
        normalize(t, &["Gold".into(), "Silver".into()], raw, fr()).unwrap()
    }

    fn err(t: FieldType, raw: &str) -> String {
        normalize(t, &["Gold".into(), "Silver".into()], raw, fr()).unwrap_err()
    }

    #[test]
    fn each_type_accepts_and_normalises_good_values() {
        let cases = [
            (FieldType::Text, "  Ada  Lovelace ", "Ada  Lovelace"),
            (FieldType::Email, " Ada@Example.ORG ", "Ada@example.org"),
            (FieldType::Phone, "01 23 45 67 89", "+33123456789"),
            (FieldType::Phone, "+44 20 7946 0958", "+442079460958"),
            (FieldType::Phone, "+1 202 555 0143", "+12025550143"),
            (FieldType::Date, "2026-02-28", "2026-02-28"),
            (FieldType::Number, "1500.00", "1500"),
            (FieldType::Number, "-3.25", "-3.25"),
            (FieldType::Number, "1 000", "1000"),
            (FieldType::List, "gold", "Gold"),
            (FieldType::Document, "12", "12"),
        ];
        for (t, raw, expected) in cases {
            assert_eq!(ok(t, raw), expected, "{t} {raw:?}");
        }
        for t in FieldType::ALL {
            assert_eq!(ok(t, "   "), "", "blank {t}");
        }
    }

    #[test]
    fn each_type_refuses_bad_values_with_a_reason() {
        let cases = [
            (FieldType::Text, "bell\u{7}", "control characters"),
            (FieldType::Email, "ada@", "not a valid email address"),
            (
                FieldType::Email,
                "ada@localhost",
                "not a valid email address",
            ),
            (
                FieldType::Email,
                "a b@example.org",
                "not a valid email address",
            ),
            (FieldType::Phone, "hello", "not a phone number"),
            (FieldType::Phone, "12", "not a valid phone number"),
            (FieldType::Date, "28/02/2026", "YYYY-MM-DD"),
            (FieldType::Date, "2026-02-30", "YYYY-MM-DD"),
            (FieldType::Number, "12,5", "decimal separator as a dot"),
            (FieldType::Number, "abc", "not a number"),
            (FieldType::Number, "inf", "not a number"),
            (
                FieldType::List,
                "Bronze",
                "not one of the options: Gold, Silver",
            ),
            (
                FieldType::Document,
                "../etc/passwd",
                "not a document reference",
            ),
        ];
        for (t, raw, reason) in cases {
            let message = err(t, raw);
            assert!(message.contains(reason), "{t} {raw:?}: {message}");
        }
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        assert!(err(FieldType::Text, &long).contains("longer than"));
    }

    #[test]
    fn international_numbers_ignore_the_default_country() {
        let us = PhoneCountry::parse("US").unwrap();
        let n = normalize(FieldType::Phone, &[], "+33 1 42 68 53 00", us).unwrap();
        assert_eq!(n, "+33142685300");
        let n = normalize(FieldType::Phone, &[], "(202) 555-0143", us).unwrap();
        assert_eq!(n, "+12025550143");
    }

    #[test]
    fn identity_normalisation() {
        assert_eq!(norm_text("  John   SMITH "), "john smith");
        assert_eq!(norm_phone("+61 (0)400-000 001"), "+610400000001");
        assert_eq!(norm_phone(""), "");
    }

    #[test]
    fn country_codes() {
        assert!(PhoneCountry::parse("au").is_ok());
        assert!(PhoneCountry::parse("XX").is_err());
        assert_eq!(PhoneCountry::parse("AU").unwrap().code(), "AU");
    }
}
