//! The lists' search index: each record's name words, email words and phone digits as folded
//! tokens (lower case, accents removed) in `record_search`: an FTS5 table on SQLite, a
//! GIN-indexed text search vector on PostgreSQL, both cheap to fill in bulk. A typed search
//! becomes prefix terms, and a record matches when every term is the prefix of one of its
//! tokens:
//! "smi" finds Smith, "john smith" finds "Smith, John", "lefevre" finds Lefèvre, and a phone
//! typed in any format ("020 7946 0101", "+44 20 7946 0101") finds the stored +442079460101.
//! Name tokens are kept apart from the others (a column of their own in FTS5, a mark before
//! each other word in the vector), so that a search can list the records whose name matches
//! before those found by email or phone.
//! The write path keeps the index in the transaction of each change (`writer::apply`).

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use unicode_normalization::UnicodeNormalization;

use super::writer::RecordState;
use crate::db::{self, DbConn};
use crate::schema::{record_search, record_search_names, records};
use diesel::sql_types::{BigInt, Text, Untyped};

/// Phone terms need this many digits.
const MIN_PHONE_DIGITS: usize = 3;

/// A token longer than this keeps only its start: nobody types more to find it, and
/// PostgreSQL refuses a text search word over 2,047 bytes.
const MAX_TOKEN_CHARS: usize = 100;

/// Rows per statement when writing SQLite's index (three parameters each).
const SQLITE_ROWS_PER_STATEMENT: usize = 500;

/// Lower case without accents: "Lefèvre" -> "lefevre".
pub fn fold(text: &str) -> String {
    text.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The words of a text, folded: "Jean-Luc O'Brien" -> jean luc o brien.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| fold(w).chars().take(MAX_TOKEN_CHARS).collect())
}

/// A record's tokens, space-separated: its name's words, and apart from them its email's
/// words and its phone's digits both with the country code and without (the national
/// number), so that either way of typing it matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    pub name: String,
    pub other: String,
}

/// Put before each email and phone word in SQLite's index: a name search then reads the name
/// words alone. FTS5 keeps one dictionary for both columns, and the unique email words of a
/// million records sharing a surname's prefix (`smith1`, `smith2`...) would otherwise all be
/// merged for "smith*" even in the name column (2.7 ms instead of 0.8 ms at 1M records).
const OTHER_MARK: &str = "x";

/// Put before each email and phone word in PostgreSQL's vector, for the same reason and so
/// that a name search needs no weights: a weighted query makes the GIN index re-check every
/// match in the table (19.5 ms instead of 6.5 ms for "smith" at 1M records). Words are
/// letters and digits only, so no name word starts with it.
const PG_OTHER_MARK: &str = "_";

impl Tokens {
    /// The email and phone words as SQLite's index keeps them: each with `OTHER_MARK`.
    fn other_marked(&self) -> String {
        self.other
            .split_whitespace()
            .map(|w| format!("{OTHER_MARK}{w}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// PostgreSQL's text search vector literal: the name words, then the others each with
    /// `PG_OTHER_MARK`.
    fn vector(&self) -> String {
        let name = self.name.split_whitespace().map(str::to_string);
        let other = self
            .other
            .split_whitespace()
            .map(|w| format!("{PG_OTHER_MARK}{w}"));
        name.chain(other).collect::<Vec<_>>().join(" ")
    }
}

pub fn tokens_of(state: &RecordState) -> Tokens {
    tokens(&state.name, &state.email, &state.phone)
}

fn tokens(name: &str, email: &str, phone: &str) -> Tokens {
    let mut other: Vec<String> = words(email).collect();
    if let Some(digits) = phone.strip_prefix('+') {
        if !digits.is_empty() {
            other.push(digits.to_string());
        }
        if let Some(national) = national_digits(digits) {
            other.push(national.to_string());
        }
    }
    Tokens {
        name: words(name).collect::<Vec<_>>().join(" "),
        other: other.join(" "),
    }
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

/// One word prefix of a search, and the name words it covers when they are few (`expand`):
/// the index is then asked for those words, which it reads lazily in id order (FTS5, or
/// PostgreSQL's `record_search_names`), instead of the prefix, for which FTS5 and the GIN
/// index read every match of every word it covers on each query (26,000 for "smith" at a
/// million records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub typed: String,
    pub name_words: Option<Vec<String>>,
}

/// Prefixes up to this long are served by FTS5's prefix index (`prefix = '2 3'`).
const INDEXED_PREFIX_CHARS: usize = 3;
/// A prefix covering more name words than this is asked as a prefix.
const MAX_NAME_WORDS: usize = 16;

/// The name words each term covers, when they are few: on SQLite for terms longer than the
/// prefix index serves, from `record_search_words`; on PostgreSQL for every term, from
/// `record_search_names` (its distinct words in the prefix's range, one index step each),
/// every term in one statement (a round trip per term cost more than its reading).
pub fn expand(conn: &mut DbConn, terms: &mut [Term]) -> QueryResult<()> {
    #[derive(QueryableByName)]
    struct TermWord {
        #[diesel(sql_type = BigInt)]
        term: i64,
        #[diesel(sql_type = Text)]
        word: String,
    }
    // Every word starting with the term sorts between it and it followed by the last code
    // point.
    let upper = |t: &Term| format!("{}{}", t.typed, char::MAX);
    let limit = MAX_NAME_WORDS as i64 + 1;
    let mut covered: Vec<Option<Vec<String>>> = vec![None; terms.len()];
    match conn {
        DbConn::Sqlite(c) => {
            for (i, term) in terms.iter().enumerate() {
                if term.typed.chars().count() <= INDEXED_PREFIX_CHARS {
                    continue;
                }
                let words = db::kept_sql::<Untyped>(
                    "SELECT 0 AS term, word FROM record_search_words WHERE word >= ",
                )
                .bind::<Text, _>(term.typed.clone())
                .sql(" AND word < ")
                .bind::<Text, _>(upper(term))
                .sql(" ORDER BY word LIMIT ")
                .bind::<BigInt, _>(limit)
                .load::<TermWord>(c)?;
                covered[i] = Some(words.into_iter().map(|w| w.word).collect());
            }
        }
        DbConn::Pg(pg) if !terms.is_empty() => {
            // One row of VALUES per term, not `unnest` of an array: PostgreSQL planned the
            // unnest afresh at each run (it sees the array's length only in a custom plan).
            let mut query = db::kept_sql::<Untyped>("SELECT t.i AS term, c.word FROM (VALUES ");
            for (i, term) in terms.iter().enumerate() {
                query = query
                    .sql(if i == 0 { "(CAST(" } else { ", (CAST(" })
                    .bind::<Text, _>(term.typed.clone())
                    .sql(" AS TEXT), CAST(")
                    .bind::<Text, _>(upper(term))
                    .sql(" AS TEXT), ")
                    .bind::<BigInt, _>(i as i64 + 1)
                    .sql(")");
            }
            let rows = query
                .sql(
                    ") AS t(lo, hi, i), \
                 LATERAL ( \
                   WITH RECURSIVE covered(word) AS ( \
                     (SELECT word FROM record_search_names WHERE word >= t.lo AND word < t.hi \
                      ORDER BY word LIMIT 1) \
                     UNION ALL \
                     SELECT (SELECT n.word FROM record_search_names n \
                             WHERE n.word > covered.word AND n.word < t.hi \
                             ORDER BY n.word LIMIT 1) \
                     FROM covered WHERE covered.word IS NOT NULL) \
                   SELECT word FROM covered WHERE word IS NOT NULL LIMIT ",
                )
                .bind::<BigInt, _>(limit)
                .sql(") AS c")
                .load::<TermWord>(pg)?;
            covered
                .iter_mut()
                .for_each(|words| *words = Some(Vec::new()));
            for row in rows {
                let words = usize::try_from(row.term - 1)
                    .ok()
                    .and_then(|i| covered.get_mut(i))
                    .and_then(Option::as_mut);
                if let Some(words) = words {
                    words.push(row.word);
                }
            }
        }
        DbConn::Pg(_) => {}
    }
    for (term, words) in terms.iter_mut().zip(covered) {
        if let Some(mut words) = words {
            words.sort_unstable();
            term.name_words = (words.len() <= MAX_NAME_WORDS).then_some(words);
        }
    }
    Ok(())
}

/// What a typed search looks for: word prefixes that must all match. A search of only
/// digits and phone punctuation is one phone term (its digits, national trunk zeros dropped);
/// otherwise each word is a term ("jane@doe" is jane and doe).
pub fn terms(search: &str) -> Vec<Term> {
    typed_terms(search)
        .into_iter()
        .map(|typed| Term {
            typed,
            name_words: None,
        })
        .collect()
}

fn typed_terms(search: &str) -> Vec<String> {
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
        // Only zeros: no number to look for.
        return if digits.is_empty() {
            Vec::new()
        } else {
            vec![digits]
        };
    }
    words(search).collect()
}

/// Which matches of a search: name-first lists show `Name` matches, then `NotName` ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every term matches a token of the record.
    All,
    /// Every term matches a word of the record's name.
    Name,
    /// `All` but not `Name`: found by email or phone.
    NotName,
}

/// The condition "the record matches every term" within `scope`, in each backend's own search
/// syntax. Terms are letters and digits only (`terms` splits on everything else), so they
/// cannot change the query's meaning; they are bound as one parameter all the same.
pub fn matches_sql(
    backend_is_pg: bool,
    terms: &[Term],
    scope: Scope,
) -> db::KeptSql<diesel::sql_types::Bool> {
    let query = index_query(backend_is_pg, terms, scope);
    if backend_is_pg {
        // The matching ids are gathered first, once: PostgreSQL cannot estimate how many a
        // prefix query matches, and guessing many it walked the whole list by name, testing
        // each record (a phone search: 680 ms instead of 0.3 ms at 100,000 records).
        db::kept_sql::<diesel::sql_types::Bool>(
            "records.id = ANY(ARRAY(SELECT record_id FROM record_search WHERE document @@ CAST(",
        )
        .bind::<Text, _>(query)
        .sql(" AS tsquery)))")
    } else {
        db::kept_sql::<diesel::sql_types::Bool>(
            "records.id IN (SELECT rowid FROM record_search WHERE record_search MATCH ",
        )
        .bind::<Text, _>(query)
        .sql(")")
    }
}

/// SQLite: the condition "the record is among the first `limit` matches within `scope` after
/// the record `after`", the index read in id order: one statement (prepared once) that reads
/// a batch of the index however many records match. (PostgreSQL's GIN index cannot give
/// matches in id order: `all_ids`.)
pub fn batch_sql(
    terms: &[Term],
    scope: Scope,
    after: i64,
    limit: i64,
) -> db::KeptSql<diesel::sql_types::Bool> {
    db::kept_sql::<diesel::sql_types::Bool>(
        "records.id IN (SELECT rowid FROM record_search WHERE record_search MATCH ",
    )
    .bind::<Text, _>(index_query(false, terms, scope))
    .sql(" AND rowid > ")
    .bind::<BigInt, _>(after)
    .sql(" ORDER BY rowid LIMIT ")
    .bind::<BigInt, _>(limit)
    .sql(")")
}

/// The search in the index's own syntax: a `tsquery` literal on PostgreSQL (terms are letters
/// and digits: quoting them is enough), an FTS5 query on SQLite.
fn index_query(backend_is_pg: bool, terms: &[Term], scope: Scope) -> String {
    if backend_is_pg {
        let in_name = terms
            .iter()
            .map(|t| format!("'{}':*", t.typed))
            .collect::<Vec<_>>()
            .join(" & ");
        let all = terms
            .iter()
            .map(|t| format!("('{0}':* | '{PG_OTHER_MARK}{0}':*)", t.typed))
            .collect::<Vec<_>>()
            .join(" & ");
        match scope {
            Scope::All => all,
            Scope::Name => in_name,
            Scope::NotName => format!("({all}) & !({in_name})"),
        }
    } else {
        // A term's name words when `expand` found them, else its prefix (a prefix no name
        // word has matches nothing, cheaply).
        let name_part = |t: &Term| match &t.name_words {
            Some(words) if !words.is_empty() => format!(
                "({})",
                words
                    .iter()
                    .map(|w| format!("\"{w}\""))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
            _ => format!("\"{}\"*", t.typed),
        };
        // FTS5 needs the explicit AND next to a parenthesised group.
        let in_name = terms
            .iter()
            .map(name_part)
            .collect::<Vec<_>>()
            .join(" AND ");
        let all = terms
            .iter()
            .map(|t| {
                format!(
                    "((name : {}) OR (other : \"{OTHER_MARK}{}\"*))",
                    name_part(t),
                    t.typed
                )
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        match scope {
            Scope::All => all,
            Scope::Name => format!("name : ({in_name})"),
            Scope::NotName => format!("({all}) NOT (name : ({in_name}))"),
        }
    }
}

/// SQLite: the ids of the records matching every term within `scope`, in id order after
/// `after`, `limit` at most: read from the index in its own order, so the cost is that of
/// the ids read, however many records match.
pub fn ids_after(
    c: &mut diesel::SqliteConnection,
    terms: &[Term],
    scope: Scope,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    Ok(
        db::kept_sql::<Untyped>("SELECT rowid AS id FROM record_search WHERE record_search MATCH ")
            .bind::<Text, _>(index_query(false, terms, scope))
            .sql(" AND rowid > ")
            .bind::<BigInt, _>(after)
            .sql(" ORDER BY rowid LIMIT ")
            .bind::<BigInt, _>(limit)
            .load::<Id>(c)?
            .into_iter()
            .map(|row| row.id)
            .collect(),
    )
}

/// PostgreSQL: the ids of every record matching the terms within `scope`, in id order,
/// through the GIN index (an unlimited ARRAY subquery: with a LIMIT, the planner would read
/// the table in id order testing each row, which takes seconds when few match). A page reads
/// them once and cuts its batches from them (`list::Matches`). They are sorted here: the
/// index gives them in table order, nearly id order already, and the database's sort of
/// 26,000 ids cost a fifth of a common name's search.
pub fn all_ids(
    pg: &mut diesel::PgConnection,
    terms: &[Term],
    scope: Scope,
) -> QueryResult<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Ids {
        #[diesel(sql_type = diesel::sql_types::Array<BigInt>)]
        ids: Vec<i64>,
    }
    let ids = db::kept_sql::<Untyped>(
        "SELECT ARRAY(SELECT record_id FROM record_search WHERE document @@ CAST(",
    )
    .bind::<Text, _>(index_query(true, terms, scope))
    .sql(" AS tsquery)) AS ids")
    .get_result::<Ids>(pg)?;
    let mut ids = ids.ids;
    ids.sort_unstable();
    Ok(ids)
}

/// Ids read per name word in a search's first round (`name_ids_after`), and at most in any.
const ROUND_CAP: i64 = 50_000;

/// PostgreSQL: the ids of the records whose name has, for every term, one of the words it
/// covers (`expand`), in id order after `after`, `limit` at most; `None` when a term covers
/// too many words (ask `all_ids`). Each word's records are read from `record_search_names` in
/// id order, every word in one statement, and merged here: a first round reads `limit` ids
/// per word, and as long as too few records have every term, the next reads the range of ids
/// the first round's yield says should hold the rest. So a page costs about its own ids, not
/// every match.
pub fn name_ids_after(
    pg: &mut diesel::PgConnection,
    terms: &[Term],
    after: i64,
    limit: i64,
) -> QueryResult<Option<Vec<i64>>> {
    let Some(covered): Option<Vec<&Vec<String>>> =
        terms.iter().map(|t| t.name_words.as_ref()).collect()
    else {
        return Ok(None);
    };
    let want = usize::try_from(limit).unwrap_or(0);
    if covered.is_empty() || covered.iter().any(|words| words.is_empty()) || want == 0 {
        return Ok(Some(Vec::new()));
    }
    let words: Vec<&str> = covered
        .iter()
        .flat_map(|words| words.iter().map(String::as_str))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut found: Vec<i64> = Vec::new();
    let (mut from, mut upto, mut per_word) = (after, i64::MAX, limit.clamp(1, ROUND_CAP));
    loop {
        let read = ids_of_words(pg, &words, from, upto, per_word)?;
        // How far every word's list is complete: to its last id when it stopped at the cap,
        // else to `upto`, or to the end when the word has no record past it.
        let complete_to = read
            .values()
            .map(|(ids, more)| match ids.last() {
                Some(last) if ids.len() as i64 == per_word => *last,
                _ if *more => upto,
                _ => i64::MAX,
            })
            .min()
            .unwrap_or(i64::MAX);
        let mut round: Option<Vec<i64>> = None;
        for words in &covered {
            let mut any_word: Vec<i64> = words
                .iter()
                .filter_map(|w| read.get(w.as_str()))
                .flat_map(|(ids, _)| ids)
                .copied()
                .filter(|id| *id <= complete_to)
                .collect();
            any_word.sort_unstable();
            any_word.dedup();
            round = Some(match round {
                None => any_word,
                Some(so_far) => intersect(&so_far, &any_word),
            });
        }
        let round = round.unwrap_or_default();
        let yielded = round.len();
        found.extend(round);
        if found.len() >= want || complete_to == i64::MAX {
            found.truncate(want);
            return Ok(Some(found));
        }
        // The next range: what this one held, scaled to what is missing (a quarter more),
        // at least doubled.
        let span = complete_to.saturating_sub(from).max(1);
        let missing = (want - found.len()) as i64;
        let scale = if yielded == 0 {
            2
        } else {
            (missing * 5 / 4 / yielded as i64).max(2)
        };
        from = complete_to;
        upto = from.saturating_add(span.saturating_mul(scale));
        per_word = ROUND_CAP;
    }
}

/// Ids of records having each word, in id order within (`from`, `upto`], `cap` per word, and
/// whether the word has records past `upto`.
fn ids_of_words(
    pg: &mut diesel::PgConnection,
    words: &[&str],
    from: i64,
    upto: i64,
    cap: i64,
) -> QueryResult<std::collections::HashMap<String, (Vec<i64>, bool)>> {
    #[derive(QueryableByName)]
    struct WordIds {
        #[diesel(sql_type = Text)]
        word: String,
        #[diesel(sql_type = diesel::sql_types::Array<BigInt>)]
        ids: Vec<i64>,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        more: bool,
    }
    Ok(db::kept_sql::<Untyped>(
        "SELECT w.word, ARRAY(SELECT n.record_id FROM record_search_names n \
           WHERE n.word = w.word COLLATE \"C\" AND n.record_id > ",
    )
    .bind::<BigInt, _>(from)
    .sql(" AND n.record_id <= ")
    .bind::<BigInt, _>(upto)
    .sql(" ORDER BY n.record_id LIMIT ")
    .bind::<BigInt, _>(cap)
    .sql(
        ") AS ids, EXISTS (SELECT 1 FROM record_search_names n \
           WHERE n.word = w.word COLLATE \"C\" AND n.record_id > ",
    )
    .bind::<BigInt, _>(upto)
    .sql(") AS more FROM unnest(CAST(")
    .bind::<Text, _>(db::pg_text_array(words))
    .sql(" AS TEXT[])) AS w(word)")
    .load::<WordIds>(pg)?
    .into_iter()
    .map(|row| (row.word, (row.ids, row.more)))
    .collect())
}

/// The ids in both sorted lists.
fn intersect(a: &[i64], b: &[i64]) -> Vec<i64> {
    let (mut i, mut j, mut both) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    both
}

/// Writes the tokens of records: (record id, whether it had tokens before, its tokens now).
pub fn reindex(conn: &mut DbConn, changes: &[(i64, bool, Tokens)]) -> QueryResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let replaced: Vec<i64> = changes
        .iter()
        .filter(|(_, existed, _)| *existed)
        .map(|(id, _, _)| *id)
        .collect();
    match conn {
        DbConn::Pg(pg) => {
            #[derive(Insertable)]
            #[diesel(table_name = record_search, treat_none_as_default_value = false)]
            struct Row {
                record_id: i64,
                tokens: String,
            }
            #[derive(Insertable)]
            #[diesel(table_name = record_search_names, treat_none_as_default_value = false)]
            struct NameRow {
                word: String,
                record_id: i64,
            }
            for part in replaced.chunks(10_000) {
                // A record's name rows are found from the words its vector held.
                diesel::sql_query(
                    "WITH gone AS (DELETE FROM record_search WHERE record_id = ANY($1) \
                       RETURNING record_id, tokens) \
                     DELETE FROM record_search_names n USING ( \
                       SELECT gone.record_id, w.word FROM gone, \
                         unnest(string_to_array(gone.tokens, ' ')) AS w(word) \
                       WHERE left(w.word, 1) <> '_') AS old \
                     WHERE n.word = old.word COLLATE \"C\" AND n.record_id = old.record_id",
                )
                .bind::<diesel::sql_types::Array<BigInt>, _>(part)
                .execute(pg)?;
            }
            let rows: Vec<Row> = changes
                .iter()
                .map(|(record_id, _, tokens)| Row {
                    record_id: *record_id,
                    tokens: tokens.vector(),
                })
                .collect();
            diesel::copy_from(record_search::table)
                .from_insertable(&rows)
                .execute(pg)?;
            let names: Vec<NameRow> = changes
                .iter()
                .flat_map(|(record_id, _, tokens)| {
                    let words: std::collections::BTreeSet<&str> =
                        tokens.name.split_whitespace().collect();
                    words.into_iter().map(|word| NameRow {
                        word: word.to_string(),
                        record_id: *record_id,
                    })
                })
                .collect();
            if !names.is_empty() {
                diesel::copy_from(record_search_names::table)
                    .from_insertable(&names)
                    .execute(pg)?;
            }
        }
        // Multi-row statements: one is prepared per few hundred records, not per record.
        DbConn::Sqlite(c) => {
            for part in replaced.chunks(SQLITE_ROWS_PER_STATEMENT) {
                let marks = vec!["?"; part.len()].join(", ");
                let mut delete = diesel::sql_query(format!(
                    "DELETE FROM record_search WHERE rowid IN ({marks})"
                ))
                .into_boxed::<diesel::sqlite::Sqlite>();
                for id in part {
                    delete = delete.bind::<BigInt, _>(*id);
                }
                delete.execute(c)?;
            }
            for part in changes.chunks(SQLITE_ROWS_PER_STATEMENT) {
                let rows = vec!["(?, ?, ?)"; part.len()].join(", ");
                let mut insert = diesel::sql_query(format!(
                    "INSERT INTO record_search (rowid, name, other) VALUES {rows}"
                ))
                .into_boxed::<diesel::sqlite::Sqlite>();
                for (record_id, _, tokens) in part {
                    insert = insert
                        .bind::<BigInt, _>(*record_id)
                        .bind::<Text, _>(&tokens.name)
                        .bind::<Text, _>(tokens.other_marked());
                }
                insert.execute(c)?;
            }
            let words: std::collections::BTreeSet<&str> = changes
                .iter()
                .flat_map(|(_, _, tokens)| tokens.name.split_whitespace())
                .collect();
            keep_words(c, words)?;
        }
    }
    Ok(())
}

/// Adds name words to `record_search_words` (those it has already are left).
fn keep_words<'a>(
    c: &mut diesel::SqliteConnection,
    words: impl IntoIterator<Item = &'a str>,
) -> QueryResult<()> {
    let words: Vec<&str> = words.into_iter().collect();
    for part in words.chunks(SQLITE_ROWS_PER_STATEMENT) {
        let rows = vec!["(?)"; part.len()].join(", ");
        let mut insert = diesel::sql_query(format!(
            "INSERT OR IGNORE INTO record_search_words (word) VALUES {rows}"
        ))
        .into_boxed::<diesel::sqlite::Sqlite>();
        for word in part {
            insert = insert.bind::<Text, _>(*word);
        }
        insert.execute(c)?;
    }
    Ok(())
}

/// Whether `table` (one of this module's, never user text) holds a row: one row read, on a
/// table of any kind (FTS5's included).
fn has_rows(conn: &mut DbConn, table: &str) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Any {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let any = diesel::sql_query(format!(
        "SELECT COUNT(*) AS n FROM (SELECT 1 FROM {table} LIMIT 1) AS t"
    ))
    .get_result::<Any>(conn)?;
    Ok(any.n > 0)
}

/// SQLite: fills `record_search_words` from the records' names when it is empty (an index
/// from before it); returns how many words it kept.
pub fn fill_words_if_empty(conn: &mut DbConn) -> QueryResult<usize> {
    let DbConn::Sqlite(_) = conn else {
        return Ok(0);
    };
    if has_rows(conn, "record_search_words")? {
        return Ok(0);
    }
    db::write_tx(conn, |conn| {
        let mut seen = std::collections::BTreeSet::new();
        let mut after = 0i64;
        loop {
            let rows: Vec<(i64, String)> = records::table
                .filter(records::id.gt(after))
                .order(records::id.asc())
                .limit(5_000)
                .select((records::id, records::name))
                .load(conn)?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            after = *last;
            seen.extend(rows.iter().flat_map(|(_, name)| words(name)));
        }
        if let DbConn::Sqlite(c) = conn {
            keep_words(c, seen.iter().map(String::as_str))?;
        }
        Ok(seen.len())
    })
}

/// After bulk writes (an import, filling the index): PostgreSQL's GIN index keeps new entries
/// in a pending list that every search reads through (50 ms a search for one import's worth)
/// until VACUUM merges it, and autovacuum may be off or late; it is merged here instead. The
/// name words' table is vacuumed for the same reason: until its pages are marked all-visible,
/// a word's ids are read through the table instead of from its index alone (two common words
/// in psql: 6.3 ms instead of 2.4 ms). Both only visit what changed since the last time.
pub fn settle(conn: &mut DbConn) -> QueryResult<()> {
    match conn {
        DbConn::Pg(c) => {
            c.batch_execute(
                "SELECT gin_clean_pending_list('record_search_document_idx'::regclass)",
            )?;
            // A statement of its own: VACUUM cannot run in a multi-statement string.
            c.batch_execute("VACUUM record_search_names")
        }
        DbConn::Sqlite(_) => Ok(()),
    }
}

/// Fills the index for records that have no tokens yet (a database from before it existed),
/// a few thousand at a time; returns how many records it indexed.
pub fn fill_missing(conn: &mut DbConn) -> QueryResult<usize> {
    if has_rows(conn, "record_search")? {
        return Ok(0);
    }
    // One transaction: a fill interrupted half way leaves the index empty, to be filled again
    // at the next start, never half filled for good.
    let sqlite = matches!(conn, DbConn::Sqlite(_));
    if sqlite {
        conn.batch_execute(&format!("PRAGMA cache_size = -{}", db::BULK_CACHE_KB))?;
    }
    let filled = db::write_tx(conn, |conn| {
        if !sqlite {
            // Built once over the filled table, the GIN index is half the size and a common
            // name's search twice as fast as when it grows by inserts (and the fill is quicker).
            // Name rows without a vector are left from an index emptied by hand.
            conn.batch_execute(
                "DROP INDEX IF EXISTS record_search_document_idx; DELETE FROM record_search_names",
            )?;
        }
        let mut after = 0i64;
        let mut done = 0;
        loop {
            // Only what the tokens are made of, read as a range of ids.
            let rows: Vec<(i64, String, String, String)> = records::table
                .filter(records::id.gt(after))
                .order(records::id.asc())
                .limit(5_000)
                .select((records::id, records::name, records::email, records::phone))
                .load(conn)?;
            let Some(&(last, ..)) = rows.last() else {
                if !sqlite {
                    conn.batch_execute(
                        "CREATE INDEX record_search_document_idx ON record_search USING GIN (document)",
                    )?;
                }
                return Ok(done);
            };
            after = last;
            let changes: Vec<_> = rows
                .iter()
                .map(|(id, name, email, phone)| (*id, false, tokens(name, email, phone)))
                .collect();
            // A savepoint per step, as an import writes its chunks: FTS5 then writes each
            // step's tokens as a small segment and merges them as it goes.
            conn.transaction(|conn| reindex(conn, &changes))?;
            done += rows.len();
        }
    });
    if sqlite {
        conn.batch_execute("PRAGMA cache_size = -2000")?;
    } else {
        // Without statistics (autovacuum may be off), the planner guesses the index is empty.
        // Without them the name words' table is read whole and sorted for every word.
        conn.batch_execute("ANALYZE record_search, record_search_names")?;
        settle(conn)?;
    }
    filled
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
            && terms.iter().all(|t| {
                tokens
                    .name
                    .split(' ')
                    .chain(tokens.other.split(' '))
                    .any(|token| token.starts_with(t.typed.as_str()))
            })
    }

    #[test]
    fn name_words_are_kept_apart_from_the_others() {
        let tokens = tokens_of(&state("Ann Lee", "ann@lee.org", "+442079460101"));
        assert_eq!(tokens.name, "ann lee");
        assert_eq!(tokens.other, "ann lee org 442079460101 2079460101");
        assert_eq!(
            tokens.vector(),
            "ann lee _ann _lee _org _442079460101 _2079460101"
        );
    }

    #[test]
    fn names_emails_and_phones_are_found_as_people_type_them() {
        let smith = state("Smith, John", "john.smith@example.org", "+442079460101");
        for search in [
            "smi",
            "john smith",
            "SMITH john",
            "john.sm",
            "jo@exam",
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
        assert!(terms("(000)").is_empty());
    }
}
