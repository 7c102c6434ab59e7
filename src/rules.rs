//! Mapping rules: how a value from one side is written to the other (`always`, `fill_blanks`,
//! `review`, `never`). A leaf: sources, data links and the import engine all use it; see
//! docs/architecture.md, 'Field rules'.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stored::stored_enum;

stored_enum! {
    /// A mapping rule, for one direction.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Rule as "rule" {
        Always = "always",
        FillBlanks = "fill_blanks",
        Review = "review",
        Never = "never",
    }
}

impl Rule {
    pub fn parse(value: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.as_str() == value.trim())
    }

    pub fn describe(self) -> &'static str {
        match self {
            Rule::Always => "always replaces the current value",
            Rule::FillBlanks => "only fills a blank value",
            Rule::Review => "becomes a proposal for a person to decide",
            Rule::Never => "is ignored",
        }
    }
}

/// How one field is written in one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRule {
    pub field_key: String,
    pub rule: Rule,
    /// A blank incoming value clears the current one (rule `always` only).
    pub blanks_clear: bool,
}

/// What the rules make of incoming values: values to write and proposals to store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleResult {
    pub writes: Vec<(String, String)>,
    pub proposals: Vec<(String, String)>,
}

/// See docs/architecture.md, 'Field rules'. `current`/`incoming`: normalised values by key; a field
/// missing from `incoming` (its column absent from the file) is left alone.
pub fn apply_rules(
    rules: &[FieldRule],
    current: &BTreeMap<String, String>,
    incoming: &BTreeMap<String, String>,
) -> RuleResult {
    let mut result = RuleResult::default();
    for rule in rules {
        let Some(new) = incoming.get(&rule.field_key) else {
            continue;
        };
        let old = current
            .get(&rule.field_key)
            .map(String::as_str)
            .unwrap_or("");
        if old == new {
            continue;
        }
        let write = (rule.field_key.clone(), new.clone());
        match rule.rule {
            Rule::Always if !new.is_empty() || rule.blanks_clear => result.writes.push(write),
            Rule::FillBlanks if old.is_empty() => result.writes.push(write),
            Rule::Review if !new.is_empty() || rule.blanks_clear => result.proposals.push(write),
            _ => {}
        }
    }
    result
}
