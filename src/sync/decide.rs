//! The import decision, as a pure function: no database, no HTTP. Given what the database
//! knows about one incoming row, it says what to do and why, in words.

/// A record that might be the row's: its owner and forced-manual flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub record_id: i64,
    /// `None`: a manual record. `Some((id, name))`: owned by that source.
    pub owner: Option<(i64, String)>,
    pub forced_manual: bool,
}

/// What to do with one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Owned by another source: never touched.
    Ignore { record_id: i64, reason: String },
    /// Take the record (`convert`: S becomes its owner; `link`: add the (S, id) link), then
    /// apply the field rules unless it is forced manual.
    Use {
        record_id: i64,
        convert: bool,
        link: bool,
        forced_manual: bool,
        by_identity: bool,
        reason: String,
    },
    /// Several manual records match: a person chooses.
    Ambiguous {
        candidates: Vec<i64>,
        reason: String,
    },
    /// A new record owned by S, linked to the external id.
    Create { reason: String },
}

/// See docs/architecture.md, 'The import decision': link match, identity match, no match.
pub fn decide(
    source: (i64, &str),
    external_id: &str,
    linked: Option<&Candidate>,
    identity: &[Candidate],
) -> Decision {
    let (source_id, source_name) = source;
    if let Some(record) = linked {
        return match &record.owner {
            Some((owner, owner_name)) if *owner != source_id => Decision::Ignore {
                record_id: record.record_id,
                reason: format!(
                    "Linked to external id {external_id}, but the record belongs to source {owner_name}: left untouched."
                ),
            },
            owner => {
                let convert = owner.is_none();
                let mut reason = format!("Matched by its link to external id {external_id}");
                if convert {
                    reason.push_str("; the manual record now belongs to ");
                    reason.push_str(source_name);
                }
                if record.forced_manual {
                    reason.push_str("; not updated because it is forced manual");
                }
                reason.push('.');
                Decision::Use {
                    record_id: record.record_id,
                    convert,
                    link: false,
                    forced_manual: record.forced_manual,
                    by_identity: false,
                    reason,
                }
            }
        };
    }
    let manual: Vec<&Candidate> = identity.iter().filter(|c| c.owner.is_none()).collect();
    match manual.as_slice() {
        [one] => {
            let mut reason = format!(
                "Name, email and phone matched a manual record, which now belongs to {source_name} with external id {external_id}"
            );
            if one.forced_manual {
                reason.push_str("; not updated because it is forced manual");
            }
            reason.push('.');
            Decision::Use {
                record_id: one.record_id,
                convert: true,
                link: true,
                forced_manual: one.forced_manual,
                by_identity: true,
                reason,
            }
        }
        [] => match identity.first() {
            Some(Candidate {
                owner: Some((_, owner_name)),
                ..
            }) => Decision::Create {
                reason: format!(
                    "A new record was created: a record with the same name, email and phone exists but belongs to source {owner_name}."
                ),
            },
            _ => Decision::Create {
                reason: "A new record was created: no existing record matched.".into(),
            },
        },
        several => Decision::Ambiguous {
            candidates: several.iter().map(|c| c.record_id).collect(),
            reason: format!(
                "Nothing applied: {} manual records have the same name, email and phone (records {}). Link the row to one of them or create a new record.",
                several.len(),
                several
                    .iter()
                    .map(|c| format!("#{}", c.record_id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::rules::{apply_rules, FieldRule, Rule, RuleResult};

    const S: (i64, &str) = (1, "Practice");

    fn manual(id: i64) -> Candidate {
        Candidate {
            record_id: id,
            owner: None,
            forced_manual: false,
        }
    }

    fn owned(id: i64, source: i64, name: &str) -> Candidate {
        Candidate {
            record_id: id,
            owner: Some((source, name.into())),
            forced_manual: false,
        }
    }

    fn forced(mut c: Candidate) -> Candidate {
        c.forced_manual = true;
        c
    }

    /// Which decision each situation gets: (case, link match, identity matches, expected).
    #[test]
    fn decision_table() {
        type Case = (
            &'static str,
            Option<Candidate>,
            Vec<Candidate>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "link to own record",
                Some(owned(1, 1, "Practice")),
                vec![],
                "use 1 convert=false link=false forced=false",
            ),
            (
                "link to manual record",
                Some(manual(2)),
                vec![],
                "use 2 convert=true link=false forced=false",
            ),
            (
                "link to forced manual",
                Some(forced(manual(3))),
                vec![],
                "use 3 convert=true link=false forced=true",
            ),
            (
                "link to own forced manual",
                Some(forced(owned(3, 1, "Practice"))),
                vec![],
                "use 3 convert=false link=false forced=true",
            ),
            (
                "link to another source's record",
                Some(owned(4, 2, "Books")),
                vec![],
                "ignore 4",
            ),
            (
                "link wins over identity",
                Some(owned(1, 1, "Practice")),
                vec![manual(9)],
                "use 1 convert=false link=false forced=false",
            ),
            (
                "one manual identity match",
                None,
                vec![manual(5)],
                "use 5 convert=true link=true forced=false",
            ),
            (
                "one forced manual identity match",
                None,
                vec![forced(manual(5))],
                "use 5 convert=true link=true forced=true",
            ),
            (
                "manual and external identity matches",
                None,
                vec![owned(6, 2, "Books"), manual(5)],
                "use 5 convert=true link=true forced=false",
            ),
            (
                "two manual identity matches",
                None,
                vec![manual(5), manual(7)],
                "ambiguous 5,7",
            ),
            (
                "only external identity match",
                None,
                vec![owned(6, 2, "Books")],
                "create external",
            ),
            (
                "identity match owned by S under another id",
                None,
                vec![owned(8, 1, "Practice")],
                "create external",
            ),
            ("no match", None, vec![], "create none"),
        ];
        for (case, linked, identity, expected) in cases {
            let got = match decide(S, "X1", linked.as_ref(), &identity) {
                Decision::Ignore { record_id, .. } => format!("ignore {record_id}"),
                Decision::Use {
                    record_id,
                    convert,
                    link,
                    forced_manual,
                    ..
                } => {
                    format!("use {record_id} convert={convert} link={link} forced={forced_manual}")
                }
                Decision::Ambiguous { candidates, .. } => format!(
                    "ambiguous {}",
                    candidates
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Decision::Create { reason } if reason.contains("belongs to source") => {
                    "create external".into()
                }
                Decision::Create { .. } => "create none".into(),
            };
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn reasons_are_sentences_that_name_things() {
        match decide(S, "C", None, &[owned(3, 2, "BGL")]) {
            Decision::Create { reason } => {
                assert!(reason.contains("belongs to source BGL"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match decide(S, "D", Some(&manual(4)), &[]) {
            Decision::Use { reason, .. } => {
                assert!(
                    reason.contains("external id D") && reason.contains("now belongs to Practice"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        match decide(S, "E", Some(&owned(9, 2, "BGL")), &[]) {
            Decision::Ignore { reason, .. } => {
                assert!(reason.contains("belongs to source BGL"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// (rule, blanks clear, current, incoming, expected: "write X" / "propose X" / "nothing")
    #[test]
    fn rule_table() {
        let cases = [
            (Rule::Always, false, "a", "b", "write b"),
            (Rule::Always, false, "a", "a", "nothing"),
            (Rule::Always, false, "a", "", "nothing"),
            (Rule::Always, true, "a", "", "write "),
            (Rule::Always, false, "", "b", "write b"),
            (Rule::FillBlanks, false, "", "b", "write b"),
            (Rule::FillBlanks, false, "a", "b", "nothing"),
            (Rule::FillBlanks, true, "a", "", "nothing"),
            (Rule::Review, false, "a", "b", "propose b"),
            (Rule::Review, false, "a", "a", "nothing"),
            (Rule::Review, false, "a", "", "nothing"),
            (Rule::Review, true, "a", "", "propose "),
            (Rule::Never, false, "a", "b", "nothing"),
            (Rule::Never, true, "", "b", "nothing"),
        ];
        for (rule, blanks_clear, current, incoming, expected) in cases {
            let rules = [FieldRule {
                field_key: "phone".into(),
                rule,
                blanks_clear,
            }];
            let result = apply_rules(
                &rules,
                &values(&[("phone", current)]),
                &values(&[("phone", incoming)]),
            );
            let got = match (result.writes.first(), result.proposals.first()) {
                (Some((_, v)), None) => format!("write {v}"),
                (None, Some((_, v))) => format!("propose {v}"),
                (None, None) => "nothing".to_string(),
                _ => "both".to_string(),
            };
            assert_eq!(
                got, expected,
                "{rule} blanks_clear={blanks_clear} {current:?} -> {incoming:?}"
            );
        }
        // A column absent from the file leaves its field alone.
        let rules = [FieldRule {
            field_key: "phone".into(),
            rule: Rule::Always,
            blanks_clear: true,
        }];
        assert_eq!(
            apply_rules(&rules, &values(&[("phone", "a")]), &values(&[])),
            RuleResult::default()
        );
    }
}
