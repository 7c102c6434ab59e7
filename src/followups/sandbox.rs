//! User-written templates, rendered by minijinja in a sandbox: no loader (so no file is ever
//! read and nothing is fetched), bounded fuel (a loop cannot run for ever), a bounded output,
//! strict undefined variables (an unknown variable is an error, never a silent blank), HTML
//! escaping only for HTML bodies. Filters for dates, numbers and money.

use std::collections::BTreeSet;

use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, Value};

/// Instructions one render may run (a few thousand records' worth of loops).
const FUEL: u64 = 50_000;

/// Longest rendered subject or body.
pub const MAX_OUTPUT: usize = 100_000;

/// Where a template went wrong, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub String);

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn environment(html: bool) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(move |_| {
        if html {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.add_filter("date", date);
    env.add_filter("number", number);
    env.add_filter("money", money);
    env
}

/// `{{ contact.since | date }}` (31/12/2026) or `| date("%B %Y")`: a YYYY-MM-DD value.
fn date(value: String, format: Option<String>) -> Result<String, Error> {
    let day = chrono::NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("'{value}' is not a date (YYYY-MM-DD)"),
        )
    })?;
    let format = format.unwrap_or_else(|| "%d/%m/%Y".into());
    // Written, not `to_string()`: chrono's Display panics on a format it cannot fill (an
    // hour of a date, say); `write!` returns the error instead.
    let mut out = String::new();
    use std::fmt::Write as _;
    write!(out, "{}", day.format(&format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("'{format}' is not a date format such as %d/%m/%Y"),
        )
    })?;
    Ok(out)
}

fn as_number(value: &Value) -> Result<f64, Error> {
    let text = value.to_string();
    text.trim().parse::<f64>().map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("'{text}' is not a number"),
        )
    })
}

/// 1234.5 -> "1,234.50" with `decimals` digits after the point.
fn grouped(n: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, n.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if n < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// `{{ company.max_credit | number }}` (15,000) or `| number(2)` (15,000.00).
fn number(value: Value, decimals: Option<u8>) -> Result<String, Error> {
    Ok(grouped(
        as_number(&value)?,
        usize::from(decimals.unwrap_or(0).min(6)),
    ))
}

/// `{{ company.max_credit | money("EUR") }}`: 15,000.00 EUR.
fn money(value: Value, currency: Option<String>) -> Result<String, Error> {
    let amount = grouped(as_number(&value)?, 2);
    Ok(match currency {
        Some(c) if !c.trim().is_empty() => format!("{amount} {}", c.trim()),
        _ => amount,
    })
}

/// "line 3: ..." from a minijinja error.
fn described(part: &str, e: &Error) -> Problem {
    let what = match e.kind() {
        ErrorKind::OutOfFuel => {
            "it runs too long (a loop over too much?); it was stopped".to_string()
        }
        ErrorKind::UndefinedError => e.detail().unwrap_or("an unknown variable").to_string(),
        _ => e
            .detail()
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string()),
    };
    match e.line() {
        Some(line) => Problem(format!("{part}, line {line}: {what}")),
        None => Problem(format!("{part}: {what}")),
    }
}

/// A template's syntax problem, if it has one (its variables are not checked).
pub fn syntax(part: &str, source: &str) -> Option<Problem> {
    environment(false)
        .template_from_str(source)
        .err()
        .map(|e| described(part, &e))
}

/// The tags of a template (`{{ ... }}` and `{% ... %}`, with their kind), read as the engine
/// reads them: a `}}` or `%}` inside a quoted string does not close a tag.
fn tags(source: &str) -> Vec<(bool, &str)> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        let statement = match (bytes[i], bytes[i + 1]) {
            (b'{', b'{') => false,
            (b'{', b'%') => true,
            _ => {
                i += 1;
                continue;
            }
        };
        let close = if statement { b'%' } else { b'}' };
        let start = i + 2;
        let mut j = start;
        let mut quote: Option<u8> = None;
        while j < bytes.len() {
            match (quote, bytes[j]) {
                (Some(_), b'\\') => j += 1,
                (Some(q), c) if c == q => quote = None,
                (None, b'"' | b'\'') => quote = Some(bytes[j]),
                (None, c) if c == close && bytes.get(j + 1) == Some(&b'}') => break,
                _ => {}
            }
            j += 1;
        }
        // Tags start and end on ASCII bytes, so these are character boundaries.
        out.push((
            statement,
            source.get(start..j.min(bytes.len())).unwrap_or(""),
        ));
        i = j + 2;
    }
    out
}

/// Constructs a template may not use: they can build values of any size before anything is
/// written (`~` joins, `set` and `namespace` keep them, macros repeat them).
fn forbidden(source: &str) -> Option<&'static str> {
    for (statement, inside) in tags(source) {
        if inside.contains('~') {
            return Some("~ (joining text)");
        }
        let mut words = inside
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .filter(|w| !w.is_empty());
        // `set`, `macro` and `call` are statements (the first word of a `{% %}` tag); a
        // variable may have those names. `namespace()` is refused wherever it is.
        if statement {
            let first = words.next();
            if let Some(statement) = ["set", "macro", "call"]
                .into_iter()
                .find(|s| Some(*s) == first)
            {
                return Some(statement);
            }
        }
        if words.any(|w| w == "namespace") {
            return Some("namespace");
        }
    }
    None
}

/// An `io::Write` that refuses to grow past `MAX_OUTPUT`, so that a render stops as soon as
/// its text is too long instead of after building it.
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + bytes.len() > MAX_OUTPUT {
            return Err(std::io::Error::other("too long"));
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks a template before it is saved: syntax, and every variable it reads is one of
/// `known` (`contact.name`, `company.max_credit`, ...). Every problem is listed.
pub fn check(parts: &[(&str, &str)], html: bool, known: &BTreeSet<String>) -> Vec<Problem> {
    let env = environment(html);
    let mut problems = Vec::new();
    for (part, source) in parts {
        if let Some(what) = forbidden(source) {
            problems.push(Problem(format!(
                "{part}: {what} is not allowed in these templates"
            )));
            continue;
        }
        let template = match env.template_from_str(source) {
            Ok(t) => t,
            Err(e) => {
                problems.push(described(part, &e));
                continue;
            }
        };
        let mut unknown: Vec<String> = template
            .undeclared_variables(true)
            .into_iter()
            .filter(|name| {
                // `contact` alone, or `contact.tag1`: the record or one of its fields; the
                // engine's own functions (`range`, ...) are not variables.
                (name == "debug" || env.globals().all(|(global, _)| global != name.as_str()))
                    && !known.contains(name)
                    && !known.iter().any(|k| k.starts_with(&format!("{name}.")))
            })
            .collect();
        unknown.sort();
        if !unknown.is_empty() {
            problems.push(Problem(format!(
                "{part}: unknown variable{} {}; the variables are {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join(", "),
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    problems
}

/// Whether a template reads the variable `name` (`company` for `company.name`); false when it
/// does not parse.
pub fn reads(source: &str, name: &str) -> bool {
    environment(false)
        .template_from_str(source)
        .map(|t| t.undeclared_variables(false).contains(name))
        .unwrap_or(false)
}

/// Renders one part with a context (`{"contact": {...}, "company": {...}}`).
pub fn render(
    part: &str,
    source: &str,
    html: bool,
    context: &serde_json::Value,
) -> Result<String, Problem> {
    if let Some(what) = forbidden(source) {
        return Err(Problem(format!(
            "{part}: {what} is not allowed in these templates"
        )));
    }
    let env = environment(html);
    let template = env
        .template_from_str(source)
        .map_err(|e| described(part, &e))?;
    let mut out = Bounded(Vec::new());
    template
        .render_captured_to(Value::from_serialize(context), &mut out)
        .map(|_| ())
        .map_err(|e| {
            if e.kind() == ErrorKind::WriteFailure {
                Problem(format!(
                    "{part}: the text would be longer than {} KB",
                    MAX_OUTPUT / 1000
                ))
            } else {
                described(part, &e)
            }
        })?;
    String::from_utf8(out.0).map_err(|_| Problem(format!("{part}: the text is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> BTreeSet<String> {
        [
            "contact.name",
            "contact.tag1",
            "company.name",
            "company.max_credit",
        ]
        .map(String::from)
        .into()
    }

    fn context() -> serde_json::Value {
        serde_json::json!({
            "contact": {"name": "Ann Lee", "tag1": "gold", "since": "2026-01-31"},
            "company": {"name": "Acme", "max_credit": "15000"}
        })
    }

    #[test]
    fn variables_and_filters_render() {
        let out = render(
            "Body",
            "Dear {{ contact.name }} ({{ contact.tag1 }}), {{ company.name }} may spend {{ company.max_credit | money('EUR') }} ({{ company.max_credit | number }}) since {{ contact.since | date }}.",
            false,
            &context(),
        )
        .expect("renders");
        assert_eq!(
            out,
            "Dear Ann Lee (gold), Acme may spend 15,000.00 EUR (15,000) since 31/01/2026."
        );
        assert_eq!(grouped(-1234567.891, 2), "-1,234,567.89");
    }

    #[test]
    fn mistakes_are_reported_with_their_line_and_the_known_variables() {
        let problems = check(&[("Subject", "Hi {{ contact.nmae }}")], false, &known());
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].0.contains("unknown variable contact.nmae"),
            "{}",
            problems[0]
        );
        assert!(problems[0].0.contains("contact.tag1"), "{}", problems[0]);
        let problems = check(&[("Body", "line one\n{% if %}")], false, &known());
        assert!(
            problems[0].0.starts_with("Body, line 2:"),
            "{}",
            problems[0]
        );
        assert!(check(
            &[("Body", "{% for x in [1, 2] %}{{ x }}{% endfor %}")],
            false,
            &known()
        )
        .is_empty());
    }

    #[test]
    fn a_date_format_a_date_cannot_fill_is_an_error_not_a_panic() {
        let problem = render(
            "Body",
            "{{ contact.since | date('%H:%M') }}",
            false,
            &context(),
        )
        .expect_err("no hour in a date");
        assert!(problem.0.contains("is not a date format"), "{problem}");
        assert_eq!(
            render(
                "Body",
                "{{ contact.since | date('%B %Y') }}",
                false,
                &context()
            )
            .expect("month"),
            "January 2026"
        );
        // Text outside tags may hold a tilde.
        assert_eq!(
            render("Body", "~ {{ contact.tag1 }}", false, &context()).expect("tilde"),
            "~ gold"
        );
    }

    #[test]
    fn a_huge_repetition_is_refused_without_building_it() {
        assert!(render("Body", "{{ 'x' * 100000000000 }}", false, &context()).is_err());
    }

    #[test]
    fn statements_are_refused_and_variables_of_those_names_are_not() {
        assert_eq!(forbidden("{%- set x = 1 %}"), Some("set"));
        assert_eq!(forbidden("{% call m() %}x{% endcall %}"), Some("call"));
        assert_eq!(
            forbidden("{% if namespace(a=1) %}{% endif %}"),
            Some("namespace")
        );
        assert_eq!(forbidden("{{ namespace() }}"), Some("namespace"));
        assert_eq!(forbidden("{{ outcome }} call, {{ set }} {{ call }}"), None);
        assert_eq!(forbidden("{% if call %}{{ macro }}{% endif %}"), None);
        // A closing mark inside a string does not end its tag.
        assert_eq!(
            forbidden("{{ \"}}{% x\" }}{% set s = s + s %}"),
            Some("set")
        );
        assert_eq!(
            forbidden("{{ '}}' ~ contact.name }}"),
            Some("~ (joining text)")
        );
        assert_eq!(
            forbidden("{{ \"it\\\"s %}\" }}{%- set a = 1 %}"),
            Some("set")
        );
        assert_eq!(forbidden("Dear {{ contact.name }}, ~20 minutes {{"), None);
    }

    #[test]
    fn hostile_templates_stop_and_read_nothing() {
        let runaway = render(
            "Body",
            "{% for a in range(1000) %}{% for b in range(1000) %}x{% endfor %}{% endfor %}",
            false,
            &context(),
        )
        .expect_err("out of fuel");
        assert!(runaway.0.contains("runs too long"), "{runaway}");
        for hostile in [
            "{% include '/etc/passwd' %}",
            "{% import 'secrets' as s %}",
            "{{ env }}",
            "{{ 'x' * 200000 }}",
            "{% for i in range(100000) %}{{ contact.name }}{% endfor %}",
            "{% set a = 'x' * 1000 %}{{ a }}",
            "{{ contact.name ~ contact.name }}",
            "{% macro m() %}x{% endmacro %}{{ m() }}",
            "{% for i in range(60) %}{{ 'x' * 100000 }}{% endfor %}",
        ] {
            assert!(
                render("Body", hostile, false, &context()).is_err(),
                "{hostile}"
            );
        }
        let escaped = render(
            "Body",
            "{{ contact.name }}",
            true,
            &serde_json::json!({"contact": {"name": "<b>Ann</b>"}}),
        )
        .expect("renders");
        assert_eq!(escaped, "&lt;b&gt;Ann&lt;&#x2f;b&gt;");
        let plain = render(
            "Body",
            "{{ contact.name }}",
            false,
            &serde_json::json!({"contact": {"name": "<b>Ann</b>"}}),
        )
        .expect("renders");
        assert_eq!(plain, "<b>Ann</b>");
    }
}
