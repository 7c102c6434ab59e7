//! The lists' search index: each record's name words, email and phone digits as folded tokens
//! (lower case, accents removed) in `record_search`, one row each. A typed search becomes
//! prefix terms, and a record matches when every term is the prefix of one of its tokens:
//! "smi" finds Smith, "john smith" finds "Smith, John", "lefevre" finds Lefèvre, and a phone
//! typed in any format ("020 7946 0101", "+44 20 7946 0101") finds the stored +442079460101.
//! The write path keeps the index in the transaction of each change (`writer::apply`).

use std::collections::BTreeSet;

use diesel::prelude::*;
use unicode_normalization::UnicodeNormalization;

use super::writer::RecordState;
use crate::db::{self, DbConn};
use crate::schema::{record_search, records};

/// Typed terms shorter than this are not searched (every record would match).
const MIN_TERM: usize = 1;
/// Phone terms need this many digits.
const MIN_PHONE_DIGITS: usize = 3;

/// Lower case without accents: "Lefèvre" -> "lefevre".
pub fn fold(text: &str) -> String {
    text.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The tokens of a record: its name's words, its email, and its phone's digits both with the
/// country code and without (the national number), so that either way of typing it matches.
pub fn tokens_of(state: &RecordState) -> BTreeSet<String> {
    let mut tokens: BTreeSet<String> = fold(&state.name)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let email = fold(state.email.trim());
    if !email.is_empty() {
        tokens.insert(email);
    }
    if let Some(digits) = state.phone.strip_prefix('+') {
        if !digits.is_empty() {
            tokens.insert(digits.to_string());
        }
        if let Some(national) = national_digits(digits) {
            tokens.insert(national.to_string());
        }
    }
    tokens
}

/// The national number of E.164 digits: what follows the country calling code (1 to 3
/// digits, the first prefix that is one). A lookup, not a parse: imports call it per row.
fn national_digits(digits: &str) -> Option<&str> {
    (1..=3).find_map(|len| {
        let code: u16 = digits.get(..len)?.parse().ok()?;
        phonenumber::metadata::DATABASE.by_code(&code)?;
        digits.get(len..).filter(|rest| !rest.is_empty())
    })
}

/// What a typed search looks for: prefixes that must all match. A search of only digits and
/// phone punctuation is one phone term (its digits, national trunk zeros dropped);
/// otherwise each word is a term.
pub fn terms(search: &str) -> Vec<String> {
    let search = search.trim();
    let phone_like = search
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let digits: String = search.chars().filter(char::is_ascii_digit).collect();
    if phone_like && digits.len() >= MIN_PHONE_DIGITS {
        let digits = if search.starts_with('+') {
            digits
        } else {
            // 020 7946 0101 (national) and 0044 20 7946 0101 (international prefix).
            digits.trim_start_matches('0').to_string()
        };
        return vec![digits];
    }
    fold(search)
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric() && c != '@' && c != '.')
                .to_string()
        })
        .filter(|w| w.chars().count() >= MIN_TERM)
        .collect()
}

/// The first string after every string that starts with `prefix` (byte order).
pub fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// Replaces a record's tokens: those it no longer has are deleted, new ones inserted.
pub fn reindex(
    conn: &mut DbConn,
    changes: &[(i64, BTreeSet<String>, BTreeSet<String>)],
) -> QueryResult<()> {
    #[derive(Insertable)]
    #[diesel(table_name = record_search, treat_none_as_default_value = false)]
    struct Token<'a> {
        token: &'a str,
        record_id: i64,
    }
    let mut inserts = Vec::new();
    for (record_id, before, after) in changes {
        for gone in before.difference(after) {
            diesel::delete(record_search::table.find((gone, record_id))).execute(conn)?;
        }
        inserts.extend(after.difference(before).map(|token| Token {
            token,
            record_id: *record_id,
        }));
    }
    db::insert_all!(conn, record_search::table, inserts);
    Ok(())
}

/// Fills the index for records that have no tokens yet (a database from before it existed),
/// a few thousand at a time; returns how many records it indexed.
pub fn fill_missing(conn: &mut DbConn) -> QueryResult<usize> {
    let has_tokens: i64 = record_search::table.count().get_result(conn)?;
    if has_tokens > 0 {
        return Ok(0);
    }
    let mut after = 0i64;
    let mut done = 0;
    loop {
        let ids: Vec<i64> = records::table
            .filter(records::id.gt(after))
            .order(records::id.asc())
            .limit(5_000)
            .select(records::id)
            .load(conn)?;
        let Some(&last) = ids.last() else {
            return Ok(done);
        };
        after = last;
        db::write_tx(conn, |conn| {
            let states = super::writer::load_states(conn, &ids)?;
            let changes: Vec<_> = states
                .into_iter()
                .map(|(id, (_, state))| (id, BTreeSet::new(), tokens_of(&state)))
                .collect();
            reindex(conn, &changes)
        })?;
        done += ids.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::model::RecordKind;

    fn state(name: &str, email: &str, phone: &str) -> RecordState {
        let mut s = RecordState::blank(RecordKind::Contact);
        s.name = name.into();
        s.email = email.into();
        s.phone = phone.into();
        s
    }

    fn finds(record: &RecordState, search: &str) -> bool {
        let tokens = tokens_of(record);
        let terms = terms(search);
        !terms.is_empty()
            && terms
                .iter()
                .all(|t| tokens.iter().any(|token| token.starts_with(t.as_str())))
    }

    #[test]
    fn names_emails_and_phones_are_found_as_people_type_them() {
        let smith = state("Smith, John", "john.smith@example.org", "+442079460101");
        for search in [
            "smi",
            "john smith",
            "SMITH john",
            "john.sm",
            "+44 20 7946 0101",
            "020 7946 0101",
            "0044 20 7946",
            "7946",
        ] {
            let expected = search != "7946";
            assert_eq!(finds(&smith, search), expected, "{search}");
        }
        assert!(finds(&state("Zoé Lefèvre", "", ""), "lefevre zoe"));
        assert!(!finds(&smith, "jane"));
        assert!(terms("  ").is_empty());
    }
}
