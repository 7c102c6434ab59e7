//! A first mapping for a file, from its header and a few rows: the usual column names of
//! address-book and CRM exports (Google Contacts, Outlook, Apple, HubSpot, Salesforce; English
//! and French), the fields' own keys and labels, and a full name built from first, middle and
//! last names when the file has no full-name column. Each column comes with a sample of its
//! values and why it was (or was not) mapped; the admin corrects and saves.

use super::model::{same_column, COMPANY_KEY};
use crate::fields::model::{FieldDef, FieldType};
use crate::fields::service::{validate_key, NewField};
use crate::fields::validate::{normalize, PhoneCountry};
use crate::records::search::fold;

/// One column of the file (or a pattern of several) and what the proposal does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedLine {
    /// A header, or a pattern such as `{First Name} {Last Name}`.
    pub column: String,
    pub field_key: Option<String>,
    pub why: String,
    /// The column's first non-blank values.
    pub sample: String,
    /// For a column no field takes: the custom field it could become (key from the header,
    /// type from its values), for the admin to confirm.
    pub new_field: Option<NewField>,
}

/// Distinct values at most for a column to be proposed as a list.
const MAX_LIST_OPTIONS: usize = 8;

/// A column's first three non-blank values, shortened, as a proposal shows them.
pub fn column_sample(rows: &[Vec<String>], index: usize) -> String {
    rows.iter()
        .filter_map(|r| r.get(index))
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .take(3)
        .map(|v| v.chars().take(40).collect::<String>())
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A field key from a header: "Tag 1" -> tag_1, "Crédit max" -> credit_max.
pub fn key_from_header(header: &str) -> String {
    let mut key = String::new();
    for c in fold(header).chars() {
        if c.is_ascii_alphanumeric() {
            key.push(c.to_ascii_lowercase());
        } else if !key.is_empty() && !key.ends_with('_') {
            key.push('_');
        }
    }
    let key = key.trim_end_matches('_');
    let key = if key.starts_with(|c: char| c.is_ascii_lowercase()) {
        key.to_string()
    } else {
        format!("f_{key}")
    };
    key.chars().take(40).collect()
}

/// The type a column's values suggest: number, date, email or phone when every value is one,
/// a list when few values repeat, else text; with a list's options.
pub fn type_from_values(values: &[&str], country: PhoneCountry) -> (FieldType, Vec<String>) {
    let values: Vec<&str> = values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        return (FieldType::Text, Vec::new());
    }
    let all = |t: FieldType| values.iter().all(|v| normalize(t, &[], v, country).is_ok());
    if all(FieldType::Date) {
        return (FieldType::Date, Vec::new());
    }
    // Phones are digits and phone punctuation, written with a +, spaces or a trunk 0 (plain
    // numbers are not), and read as numbers of the country.
    let phone_like = values.iter().all(|v| {
        v.chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    }) && values
        .iter()
        .any(|v| v.contains(['+', ' ', '(']) || v.starts_with('0'));
    if phone_like && all(FieldType::Phone) {
        return (FieldType::Phone, Vec::new());
    }
    for t in [FieldType::Number, FieldType::Email] {
        if all(t) {
            return (t, Vec::new());
        }
    }
    let mut distinct: Vec<&str> = Vec::new();
    for v in &values {
        if !distinct.iter().any(|d| d.eq_ignore_ascii_case(v)) {
            distinct.push(v);
        }
    }
    if distinct.len() <= MAX_LIST_OPTIONS && values.len() >= 2 * distinct.len() {
        return (
            FieldType::List,
            distinct.iter().map(|d| d.to_string()).collect(),
        );
    }
    (FieldType::Text, Vec::new())
}

/// Export header names per built-in field, folded (lower case, no accents, letters and digits
/// only), best first: when several columns could feed a field, the earliest name here wins.
const KNOWN: &[(&str, &[&str])] = &[
    (
        "name",
        &[
            "name",
            "fullname",
            "displayname",
            "contactname",
            "nomcomplet",
        ],
    ),
    (
        "email",
        &[
            "email",
            "emailaddress",
            "email1value",
            "emailvalue",
            "primaryemail",
            "workemail",
            "businessemail",
            "courriel",
            "adressecourriel",
            "adresseemail",
            "adressedecourriel",
            "adressedemessagerie",
            "adressemail",
            "mail",
            "email2address",
            "email2value",
        ],
    ),
    (
        "phone",
        &[
            "phone",
            "phonenumber",
            "businessphone",
            "mobilephone",
            "mobilephonenumber",
            "phone1value",
            "primaryphone",
            "workphone",
            "mobile",
            "telephone",
            "tel",
            "telephonebureau",
            "telephoneprofessionnel",
            "telephonemobile",
            "portable",
            "homephone",
            "phone2value",
        ],
    ),
    (
        "address",
        &[
            "address",
            "adresse",
            "address1formatted",
            "businessstreet",
            "billingstreet",
            "streetaddress",
        ],
    ),
    (
        "registration_number",
        &["registrationnumber", "companynumber", "siret", "siren"],
    ),
];

/// A company's name, in a file of companies (in a file of contacts these name their company).
const COMPANY_NAMES: &[&str] = &[
    "companyname",
    "company",
    "accountname",
    "organizationname",
    "organization1name",
    "organisation",
    "organization",
    "raisonsociale",
    "societe",
    "entreprise",
];

/// The parts of a person's name as exports split it.
const FIRST: &[&str] = &["firstname", "givenname", "prenom", "first"];
const MIDDLE: &[&str] = &["middlename", "additionalname", "secondprenom"];
const LAST: &[&str] = &[
    "lastname",
    "familyname",
    "surname",
    "nomdefamille",
    "nom",
    "last",
];

/// "E-mail 1 - Value" -> "email1value"; "Téléphone" -> "telephone".
fn folded(header: &str) -> String {
    fold(header)
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// Proposes a mapping for a file with these headers and first rows, for fields `defs`. The
/// id column (if the source has one) is left to link records.
pub fn propose(
    headers: &[String],
    rows: &[Vec<String>],
    id_column: &str,
    defs: &[FieldDef],
    country: PhoneCountry,
) -> Vec<ProposedLine> {
    let sample = |index: usize| column_sample(rows, index);
    let has_values = |index: usize| !sample(index).is_empty() || rows.is_empty();
    let keys: Vec<String> = headers.iter().map(|h| folded(h)).collect();
    let find = |names: &[&str]| -> Option<usize> {
        names.iter().find_map(|name| {
            keys.iter()
                .enumerate()
                .find(|(i, k)| k.as_str() == *name && has_values(*i))
                .map(|(i, _)| i)
        })
    };
    // field key -> (column index, why), in the order of the file.
    let mut chosen: Vec<(String, usize, String)> = Vec::new();
    let mut name_parts: Vec<usize> = Vec::new();
    let field = |key: &str| defs.iter().find(|d| d.key == key);
    let is_id = |i: usize| !id_column.is_empty() && same_column(&headers[i], id_column);

    let companies = defs.iter().any(|d| d.kind == "company");
    // Built-in fields by the names exports use.
    for (key, names) in KNOWN {
        if field(key).is_none() {
            continue;
        }
        let mut candidates: Vec<&str> = names.to_vec();
        if *key == "name" && companies {
            candidates.extend(COMPANY_NAMES);
        }
        // "Nom" alone is a full name; beside a first name it is the family name.
        if *key == "name" && !companies && find(FIRST).is_none() {
            candidates.push("nom");
        }
        if let Some(i) = find(&candidates).filter(|i| !is_id(*i)) {
            chosen.push((
                key.to_string(),
                i,
                format!("'{}' is how exports name the {key} column", headers[i]),
            ));
        }
    }
    // In a file of contacts, the company's name links the contact to that company.
    if !companies && !defs.is_empty() {
        if let Some(i) = find(COMPANY_NAMES).filter(|i| !is_id(*i)) {
            chosen.push((
                COMPANY_KEY.to_string(),
                i,
                format!(
                    "'{}' names the contact's company: linked to the company of that name, created if missing",
                    headers[i]
                ),
            ));
        }
    }
    // A full name from its parts when no column holds it.
    if field("name").is_some() && !chosen.iter().any(|(k, _, _)| k == "name") {
        let parts: Vec<usize> = [find(FIRST), find(MIDDLE), find(LAST)]
            .into_iter()
            .flatten()
            .collect();
        if parts.len() >= 2 {
            name_parts = parts;
        }
    }
    // Custom fields (and anything left) by their key or label.
    for (i, key) in keys.iter().enumerate() {
        if is_id(i) || chosen.iter().any(|(_, c, _)| *c == i) || name_parts.contains(&i) {
            continue;
        }
        let found = defs.iter().find(|d| {
            (folded(&d.key) == *key || folded(&d.label) == *key)
                && !chosen.iter().any(|(k, _, _)| *k == d.key)
        });
        if let Some(def) = found {
            chosen.push((
                def.key.clone(),
                i,
                format!(
                    "the header is the field's {}",
                    if folded(&def.key) == *key {
                        "key"
                    } else {
                        "label"
                    }
                ),
            ));
        }
    }

    let mut out = Vec::new();
    if !name_parts.is_empty() {
        let pattern = name_parts
            .iter()
            .map(|i| format!("{{{}}}", headers[*i]))
            .collect::<Vec<_>>()
            .join(" ");
        let parts = name_parts
            .iter()
            .map(|i| headers[*i].as_str())
            .collect::<Vec<_>>()
            .join(" + ");
        let sample = rows
            .iter()
            .map(|r| {
                name_parts
                    .iter()
                    .filter_map(|i| r.get(*i))
                    .map(|v| v.trim())
                    .filter(|v| !v.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|v| !v.is_empty())
            .take(3)
            .collect::<Vec<_>>()
            .join(" · ");
        out.push(ProposedLine {
            column: pattern,
            field_key: Some("name".into()),
            why: format!("the file has no full-name column: built from {parts}"),
            sample,
            new_field: None,
        });
    }
    for (i, header) in headers.iter().enumerate() {
        let (field_key, why) = if let Some((key, _, why)) = chosen.iter().find(|(_, c, _)| *c == i)
        {
            (Some(key.clone()), why.clone())
        } else if is_id(i) {
            (
                None,
                "the id column: it links each row to its record".to_string(),
            )
        } else if name_parts.contains(&i) {
            (None, "part of the name above".to_string())
        } else if !has_values(i) {
            (None, "empty in the rows read".to_string())
        } else {
            (
                None,
                "no field goes by this name: choose one, make it a new field, or leave it unmapped"
                    .to_string(),
            )
        };
        let new_field = (field_key.is_none() && !is_id(i) && !name_parts.contains(&i))
            .then(|| suggest_field(header, i, rows, defs, country))
            .flatten();
        out.push(ProposedLine {
            column: header.trim().to_string(),
            field_key,
            why,
            sample: sample(i),
            new_field,
        });
    }
    out
}

/// The custom field an unmapped column could become, unless its key is taken or not allowed.
fn suggest_field(
    header: &str,
    index: usize,
    rows: &[Vec<String>],
    defs: &[FieldDef],
    country: PhoneCountry,
) -> Option<NewField> {
    let key = key_from_header(header);
    if validate_key(&key).is_err() || defs.iter().any(|d| d.key == key) {
        return None;
    }
    let values: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.get(index))
        .map(String::as_str)
        .collect();
    let (field_type, options) = type_from_values(&values, country);
    Some(NewField {
        key,
        label: header.trim().to_string(),
        field_type: field_type.as_str().to_string(),
        options: options.join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_types_come_from_headers_and_values() {
        assert_eq!(key_from_header("Tag 1"), "tag_1");
        assert_eq!(key_from_header("Crédit max."), "credit_max");
        assert_eq!(key_from_header("2nd phone"), "f_2nd_phone");
        let gb = PhoneCountry::parse("GB").expect("country");
        let of = |values: &[&str]| type_from_values(values, gb).0;
        assert_eq!(of(&["800", "1200.5", ""]), FieldType::Number);
        assert_eq!(of(&["2026-01-31", "2025-12-01"]), FieldType::Date);
        assert_eq!(of(&["a@b.example", "c@d.example"]), FieldType::Email);
        assert_eq!(of(&["020 7946 0101", "+44 20 7946 0102"]), FieldType::Phone);
        assert_eq!(
            type_from_values(&["gold", "silver", "Gold", "gold"], gb),
            (
                FieldType::List,
                vec!["gold".to_string(), "silver".to_string()]
            )
        );
        assert_eq!(of(&["one note", "another note"]), FieldType::Text);
    }
}
