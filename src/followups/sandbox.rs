//! User-written templates, rendered by minijinja in a sandbox: no loader (so no file is ever
//! read and nothing is fetched), strict undefined variables (an unknown variable is an error,
//! never a silent blank), HTML escaping only for HTML bodies. Filters for dates, numbers and
//! money.
//!
//! No template can take the process down, whoever saved it:
//! - What a template may say is checked on its parsed form, before anything is compiled
//!   (compiling folds constants such as `'x' * 99999999`): only `if`, `for` (not recursive),
//!   `with` and `autoescape` statements; only the filters of `FILTERS`; calls only of `range`,
//!   `dict` and `loop.cycle`; `+` and `*` only on numbers (on text and lists they build values
//!   of any size); no `~`. The same check refuses it at save and at every render.
//! - Every filter and function runs capped (`bounded`): arguments that would build a value
//!   larger than `MAX_VALUE` are refused before it is built, every result is measured, and a
//!   render that builds more than `MAX_BUILT` in all, runs past `DEADLINE` or more than `FUEL`
//!   instructions, or writes more than `MAX_OUTPUT`, stops with a problem in words.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use minijinja::machinery::{self, ast};
use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{
    filters, functions, AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior, Value,
};

/// Instructions one render may run (a few thousand records' worth of loops).
const FUEL: u64 = 50_000;

/// Longest rendered subject or body.
pub const MAX_OUTPUT: usize = 100_000;

/// Longest subject or body an editor may write.
pub const MAX_SOURCE: usize = 20_000;

/// Largest value one filter may take or make: bytes of text, and 8 for each item and number.
const MAX_VALUE: usize = 100_000;

/// Most items a list made by a filter or `range` may hold.
const MAX_ITEMS: usize = 10_000;

/// What the filters and functions of one render may make, in all.
const MAX_BUILT: usize = 4_000_000;

/// Longest one render may run.
const DEADLINE: Duration = Duration::from_secs(2);

/// The filters a template may use: minijinja's own, capped, and this console's.
pub const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "date",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "money",
    "number",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "trim",
    "unique",
    "upper",
    "zip",
];

/// Where a template went wrong, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub String);

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// minijinja's filter of that name, uncapped: only `bounded` calls it.
fn builtin_filter(name: &str) -> Option<Value> {
    Some(match name {
        "abs" => Value::from_function(filters::abs),
        "attr" => Value::from_function(filters::attr),
        "batch" => Value::from_function(filters::batch),
        "bool" => Value::from_function(filters::bool),
        "capitalize" => Value::from_function(filters::capitalize),
        "chain" => Value::from_function(filters::chain),
        "count" | "length" => Value::from_function(filters::length),
        "d" | "default" => Value::from_function(filters::default),
        "dictsort" => Value::from_function(filters::dictsort),
        "e" | "escape" => Value::from_function(filters::escape),
        "first" => Value::from_function(filters::first),
        "float" => Value::from_function(filters::float),
        "format" => Value::from_function(filters::format),
        "groupby" => Value::from_function(filters::groupby),
        "indent" => Value::from_function(filters::indent),
        "int" => Value::from_function(filters::int),
        "items" => Value::from_function(filters::items),
        "join" => Value::from_function(filters::join),
        "last" => Value::from_function(filters::last),
        "lines" => Value::from_function(filters::lines),
        "list" => Value::from_function(filters::list),
        "lower" => Value::from_function(filters::lower),
        "map" => Value::from_function(filters::map),
        "max" => Value::from_function(filters::max),
        "min" => Value::from_function(filters::min),
        "reject" => Value::from_function(filters::reject),
        "rejectattr" => Value::from_function(filters::rejectattr),
        "replace" => Value::from_function(filters::replace),
        "reverse" => Value::from_function(filters::reverse),
        "round" => Value::from_function(filters::round),
        "safe" => Value::from_function(filters::safe),
        "select" => Value::from_function(filters::select),
        "selectattr" => Value::from_function(filters::selectattr),
        "slice" => Value::from_function(filters::slice),
        "sort" => Value::from_function(filters::sort),
        "split" => Value::from_function(filters::split),
        "string" => Value::from_function(filters::string),
        "sum" => Value::from_function(filters::sum),
        "title" => Value::from_function(filters::title),
        "trim" => Value::from_function(filters::trim),
        "unique" => Value::from_function(filters::unique),
        "upper" => Value::from_function(filters::upper),
        "zip" => Value::from_function(filters::zip),
        _ => return None,
    })
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
    // Every filter a template may name is replaced by its capped version (`map` looks its
    // filter up here too, so it gets the capped one).
    for name in FILTERS {
        if let Some(filter) = builtin_filter(name) {
            env.add_filter(*name, bounded(name, filter));
        }
    }
    env.add_filter("date", bounded("date", Value::from_function(date)));
    env.add_filter("number", bounded("number", Value::from_function(number)));
    env.add_filter("money", bounded("money", Value::from_function(money)));
    env.add_function("range", range);
    env.add_function(
        "dict",
        bounded("dict", Value::from_function(functions::dict)),
    );
    env
}

/// What one render has made so far, and until when it may run; kept per thread, since a
/// render runs on one thread from start to end.
#[derive(Clone, Copy)]
struct Budget {
    built: usize,
    deadline: Option<Instant>,
}

thread_local! {
    static BUDGET: Cell<Budget> = const { Cell::new(Budget { built: 0, deadline: None }) };
    /// Set when a cap stopped the render, so that a save can tell a template that goes past
    /// the caps from one that fails only on a sample's blank values.
    static CAPPED: Cell<bool> = const { Cell::new(false) };
}

/// A render's budget on this thread, for as long as it lives.
struct Metered(Budget);

impl Metered {
    fn start() -> Self {
        Metered(BUDGET.replace(Budget {
            built: 0,
            deadline: Some(Instant::now() + DEADLINE),
        }))
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        BUDGET.set(self.0);
    }
}

/// A cap's refusal.
fn refuse(what: impl Into<String>) -> Error {
    CAPPED.set(true);
    Error::new(ErrorKind::InvalidOperation, what.into())
}

fn past_deadline() -> bool {
    BUDGET.get().deadline.is_some_and(|d| Instant::now() > d)
}

fn too_long() -> Error {
    refuse(format!(
        "it runs longer than {} seconds (a loop over too much?); it was stopped",
        DEADLINE.as_secs()
    ))
}

/// Counts what a filter made against the render's budget.
fn charge(weight: usize) -> Result<(), Error> {
    if past_deadline() {
        return Err(too_long());
    }
    let mut budget = BUDGET.get();
    budget.built = budget.built.saturating_add(weight);
    BUDGET.set(budget);
    if budget.built > MAX_BUILT {
        return Err(refuse(format!(
            "it builds more than {} MB of text and lists; it was stopped",
            MAX_BUILT / 1_000_000
        )));
    }
    Ok(())
}

/// The size of a value (bytes of its text, 8 for any other item, lists and maps with their
/// items), counted only until it passes `limit`.
fn weight(value: &Value, limit: usize) -> usize {
    fn walk(value: &Value, total: &mut usize, limit: usize, depth: usize) {
        match value.kind() {
            ValueKind::String => *total += value.as_str().map_or(0, str::len),
            ValueKind::Bytes => *total += value.as_bytes().map_or(0, <[u8]>::len),
            ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
                *total += 8;
                // Values this deep come from nowhere a template reads: count them as too big.
                if depth > 32 {
                    *total = limit.saturating_add(1);
                    return;
                }
                let Ok(items) = value.try_iter() else { return };
                let map = value.kind() == ValueKind::Map;
                for item in items {
                    if *total > limit {
                        return;
                    }
                    walk(&item, total, limit, depth + 1);
                    if map {
                        if let Ok(inner) = value.get_item(&item) {
                            walk(&inner, total, limit, depth + 1);
                        }
                    }
                }
            }
            _ => *total += 8,
        }
    }
    let mut total = 0;
    walk(value, &mut total, limit, 0);
    total
}

fn int_arg(args: &[Value], at: usize, keyword: &str) -> Option<i128> {
    let number = |v: &Value| i128::try_from(v.clone()).ok();
    match args.get(at) {
        Some(v) if Kwargs::try_from(v.clone()).is_err() => number(v),
        _ => args
            .last()
            .and_then(|v| Kwargs::try_from(v.clone()).ok())
            .and_then(|kw| kw.peek::<Option<Value>>(keyword).ok().flatten())
            .and_then(|v| number(&v)),
    }
}

fn text_len(value: Option<&Value>) -> usize {
    value.map_or(0, |v| {
        v.as_str().map_or_else(|| v.to_string().len(), str::len)
    })
}

/// Refuses, before it runs, a filter call whose result would be larger than `MAX_VALUE`
/// (the filters whose result can be much larger than what they are given).
fn precheck(name: &str, args: &[Value]) -> Result<(), Error> {
    let too_big = || {
        refuse(format!(
            "`{name}` would make a value larger than {} KB",
            MAX_VALUE / 1000
        ))
    };
    match name {
        "indent" => {
            let width = int_arg(args, 1, "width").unwrap_or(4);
            let text = args.first().and_then(Value::as_str).unwrap_or("");
            let lines = text.bytes().filter(|b| *b == b'\n').count() + 1;
            if !(0..=100).contains(&width) {
                return Err(refuse("`indent` takes a width of 0 to 100"));
            }
            let width = usize::try_from(width).unwrap_or(0);
            if text.len().saturating_add(lines.saturating_mul(width)) > MAX_VALUE {
                return Err(too_big());
            }
        }
        "replace" => {
            let text = args.first().map(|v| v.to_string()).unwrap_or_default();
            let from = args.get(1).map(|v| v.to_string()).unwrap_or_default();
            let to = text_len(args.get(2));
            let times = if from.is_empty() {
                text.chars().count() + 1
            } else {
                text.matches(from.as_str()).count()
            };
            if text.len().saturating_add(times.saturating_mul(to)) > MAX_VALUE {
                return Err(too_big());
            }
        }
        "join" => {
            let items = args
                .first()
                .and_then(|v| v.try_iter().ok())
                .map_or(0, Iterator::count);
            let joiner = text_len(args.get(1));
            let own = args.first().map_or(0, |v| weight(v, MAX_VALUE));
            if own.saturating_add(items.saturating_mul(joiner)) > MAX_VALUE {
                return Err(too_big());
            }
        }
        "batch" | "slice" => {
            let count = int_arg(args, 1, "count").unwrap_or(1);
            if count > MAX_ITEMS as i128 {
                return Err(refuse(format!(
                    "`{name}` takes a count of at most {MAX_ITEMS}"
                )));
            }
        }
        "format" => {
            if let Some(spec) = args.first().and_then(Value::as_str) {
                if wide_format(spec) {
                    return Err(refuse(
                        "`format` takes widths and precisions of at most 100",
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether a printf-style format asks for a width or precision over 100 (or one taken from
/// the arguments), which would pad a value to any size.
fn wide_format(spec: &str) -> bool {
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        while chars.peek().is_some_and(|c| "-+ #0".contains(*c)) {
            chars.next();
        }
        for _ in 0..2 {
            let mut digits = String::new();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(d);
                chars.next();
            }
            if chars.peek() == Some(&'*')
                || digits.len() > 3
                || digits.parse::<u32>().unwrap_or(0) > 100
            {
                return true;
            }
            if chars.peek() == Some(&'.') {
                chars.next();
            } else {
                break;
            }
        }
    }
    false
}

/// A filter (or function) of minijinja's, capped: its arguments are measured, the ones that
/// would make a value too large are refused, and its result counts against the render.
fn bounded(
    name: &'static str,
    inner: Value,
) -> impl Fn(&State, Rest<Value>) -> Result<Value, Error> + Send + Sync + 'static {
    move |state: &State, args: Rest<Value>| {
        if past_deadline() {
            return Err(too_long());
        }
        if args.iter().any(|arg| weight(arg, MAX_VALUE) > MAX_VALUE) {
            return Err(refuse(format!(
                "`{name}` was given a value larger than {} KB",
                MAX_VALUE / 1000
            )));
        }
        precheck(name, &args)?;
        let made = inner.call(state, &args)?;
        let made_weight = weight(&made, MAX_VALUE);
        if made_weight > MAX_VALUE {
            return Err(refuse(format!(
                "`{name}` made a value larger than {} KB",
                MAX_VALUE / 1000
            )));
        }
        charge(made_weight)?;
        Ok(made)
    }
}

/// `range`, with at most `MAX_ITEMS` numbers.
fn range(lower: i64, upper: Option<i64>, step: Option<i64>) -> Result<Value, Error> {
    let (start, stop) = match upper {
        Some(upper) => (i128::from(lower), i128::from(upper)),
        None => (0, i128::from(lower)),
    };
    let by = i128::from(step.unwrap_or(1));
    if by == 0 {
        return Err(refuse("`range` cannot step by 0"));
    }
    let items = ((stop - start + by - by.signum()) / by).max(0);
    if items > MAX_ITEMS as i128 {
        return Err(refuse(format!(
            "`range` would count {items} numbers; at most {MAX_ITEMS}"
        )));
    }
    charge(usize::try_from(items).unwrap_or(MAX_ITEMS) * 8)?;
    let size = |n: i64| isize::try_from(n).map_err(|_| refuse("`range` takes smaller numbers"));
    functions::range(
        size(lower)?,
        upper.map(size).transpose()?,
        step.map(size).transpose()?,
    )
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

/// A construct a template may not use, and the line it is on.
struct Refusal {
    line: u16,
    what: String,
}

/// The first construct of a parsed template that `refusal` turns down.
#[derive(Default)]
struct Walk(Option<Refusal>);

impl Walk {
    fn refuse(&mut self, span: machinery::Span, what: impl Into<String>) {
        if self.0.is_none() {
            self.0 = Some(Refusal {
                line: span.start_line,
                what: what.into(),
            });
        }
    }

    fn body(&mut self, statements: &[ast::Stmt<'_>]) {
        for statement in statements {
            self.statement(statement);
        }
    }

    fn statement(&mut self, statement: &ast::Stmt<'_>) {
        use ast::Stmt;
        if self.0.is_some() {
            return;
        }
        match statement {
            Stmt::Template(t) => self.body(&t.children),
            Stmt::EmitExpr(e) => self.expr(&e.expr),
            Stmt::EmitRaw(_) => {}
            Stmt::ForLoop(f) => {
                if f.recursive {
                    self.refuse(f.span(), "a recursive loop");
                }
                self.expr(&f.target);
                self.expr(&f.iter);
                if let Some(filter) = &f.filter_expr {
                    self.expr(filter);
                }
                self.body(&f.body);
                self.body(&f.else_body);
            }
            Stmt::IfCond(i) => {
                self.expr(&i.expr);
                self.body(&i.true_body);
                self.body(&i.false_body);
            }
            Stmt::WithBlock(w) => {
                for (target, value) in &w.assignments {
                    self.expr(target);
                    self.expr(value);
                }
                self.body(&w.body);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled);
                self.body(&a.body);
            }
            // They keep or repeat values of any size, or read other templates (there are
            // none: every render of them could only fail).
            Stmt::Set(s) => self.refuse(s.span(), "`set`"),
            Stmt::SetBlock(s) => self.refuse(s.span(), "`set`"),
            Stmt::FilterBlock(s) => self.refuse(s.span(), "`filter` blocks"),
            Stmt::Block(s) => self.refuse(s.span(), "`block`"),
            Stmt::Import(s) => self.refuse(s.span(), "`import` (there are no other templates)"),
            Stmt::FromImport(s) => self.refuse(s.span(), "`import` (there are no other templates)"),
            Stmt::Extends(s) => self.refuse(s.span(), "`extends` (there are no other templates)"),
            Stmt::Include(s) => self.refuse(s.span(), "`include` (there are no other templates)"),
            Stmt::Macro(s) => self.refuse(s.span(), "`macro`"),
            Stmt::CallBlock(s) => self.refuse(s.span(), "`call`"),
            Stmt::Do(s) => self.refuse(s.span(), "`do`"),
            #[allow(unreachable_patterns)]
            _ => self.refuse(machinery::Span::default(), "this statement"),
        }
    }

    fn args(&mut self, args: &[ast::CallArg<'_>]) {
        for arg in args {
            match arg {
                ast::CallArg::Pos(e)
                | ast::CallArg::Kwarg(_, e)
                | ast::CallArg::PosSplat(e)
                | ast::CallArg::KwargSplat(e) => self.expr(e),
            }
        }
    }

    fn expr(&mut self, expr: &ast::Expr<'_>) {
        use ast::{BinOpKind, CallType, Expr};
        if self.0.is_some() {
            return;
        }
        match expr {
            Expr::Var(v) => {
                if v.id == "self" {
                    self.refuse(v.span(), "`self` (there are no blocks)");
                }
            }
            Expr::Const(_) => {}
            Expr::Slice(s) => {
                self.expr(&s.expr);
                for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(part);
                }
            }
            Expr::UnaryOp(u) => self.expr(&u.expr),
            Expr::BinOp(b) => {
                match b.op {
                    BinOpKind::Concat => self.refuse(b.span(), "~ (joining text)"),
                    BinOpKind::Add | BinOpKind::Mul if !(numeric(&b.left) && numeric(&b.right)) => {
                        let sign = if matches!(b.op, BinOpKind::Add) {
                            "+"
                        } else {
                            "*"
                        };
                        self.refuse(
                            b.span(),
                            format!(
                                "`{sign}` on text or lists (it is for numbers: write \
                                 `contact.credit|float {sign} 2`; text is written side by side)"
                            ),
                        )
                    }
                    _ => {}
                }
                self.expr(&b.left);
                self.expr(&b.right);
            }
            Expr::Compare(c) => {
                self.expr(&c.expr);
                for op in &c.ops {
                    self.expr(&op.expr);
                }
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr);
                self.expr(&i.true_expr);
                if let Some(otherwise) = &i.false_expr {
                    self.expr(otherwise);
                }
            }
            Expr::Filter(f) => {
                if !FILTERS.contains(&f.name) {
                    self.refuse(
                        f.span(),
                        format!(
                            "the filter `{}` (the filters are {})",
                            f.name,
                            FILTERS.join(", ")
                        ),
                    );
                }
                if let Some(value) = &f.expr {
                    self.expr(value);
                }
                self.args(&f.args);
            }
            Expr::Test(t) => {
                self.expr(&t.expr);
                self.args(&t.args);
            }
            Expr::GetAttr(g) => self.expr(&g.expr),
            Expr::GetItem(g) => {
                self.expr(&g.expr);
                self.expr(&g.subscript_expr);
            }
            Expr::Call(c) => {
                match c.identify_call() {
                    CallType::Function("range" | "dict") => {}
                    CallType::Method(Expr::Var(on), "cycle" | "changed") if on.id == "loop" => {}
                    CallType::Function(name) => {
                        self.refuse(c.span(), format!("calling `{name}()`"))
                    }
                    CallType::Method(_, name) => {
                        self.refuse(c.span(), format!("calling `.{name}()`"))
                    }
                    CallType::Block(name) => {
                        self.refuse(c.span(), format!("`self.{name}()` (there are no blocks)"))
                    }
                    CallType::Object(_) => self.refuse(c.span(), "calling a value"),
                }
                self.args(&c.args);
            }
            Expr::List(l) => {
                for item in &l.items {
                    self.expr(item);
                }
            }
            Expr::Map(m) => {
                for part in m.keys.iter().chain(&m.values) {
                    self.expr(part);
                }
            }
        }
    }
}

/// Whether an expression can only be a number (or a boolean), or fail: the operands `+` and
/// `*` may take, since on text and lists they repeat and join values of any size.
fn numeric(expr: &ast::Expr<'_>) -> bool {
    use ast::{BinOpKind, Expr};
    match expr {
        Expr::Const(c) => matches!(c.value.kind(), ValueKind::Number | ValueKind::Bool),
        Expr::UnaryOp(_) | Expr::Compare(_) | Expr::Test(_) => true,
        Expr::BinOp(b) => match b.op {
            BinOpKind::Add | BinOpKind::Mul | BinOpKind::ScAnd | BinOpKind::ScOr => {
                numeric(&b.left) && numeric(&b.right)
            }
            BinOpKind::Concat => false,
            _ => true,
        },
        Expr::Filter(f) => matches!(
            f.name,
            "int" | "float" | "round" | "abs" | "length" | "count"
        ),
        Expr::GetAttr(g) => {
            matches!(&g.expr, Expr::Var(v) if v.id == "loop")
                && matches!(
                    g.name,
                    "index" | "index0" | "revindex" | "revindex0" | "length" | "depth" | "depth0"
                )
        }
        Expr::IfExpr(i) => numeric(&i.true_expr) && i.false_expr.as_ref().is_some_and(numeric),
        _ => false,
    }
}

/// A part's text read as the engine would, and what in it is not allowed, before anything
/// is compiled. `Err` is a syntax error.
fn refusal(part: &str, source: &str) -> Result<(), Problem> {
    if source.chars().count() > MAX_SOURCE {
        return Err(Problem(format!(
            "{part}: at most {MAX_SOURCE} characters, this one has {}",
            source.chars().count()
        )));
    }
    let parsed = machinery::parse(
        source,
        "template",
        Default::default(),
        machinery::WhitespaceConfig::default(),
    )
    .map_err(|e| described(part, &e))?;
    let mut walk = Walk::default();
    walk.statement(&parsed);
    match walk.0 {
        None => Ok(()),
        Some(Refusal { line, what }) if line > 0 => Err(Problem(format!(
            "{part}, line {line}: {what} is not allowed in these templates"
        ))),
        Some(Refusal { what, .. }) => Err(Problem(format!(
            "{part}: {what} is not allowed in these templates"
        ))),
    }
}

/// A template's problem of syntax or of what it uses, if it has one (its variables are not
/// checked).
pub fn syntax(part: &str, source: &str) -> Option<Problem> {
    refusal(part, source).err().or_else(|| {
        environment(false)
            .template_from_str(source)
            .err()
            .map(|e| described(part, &e))
    })
}

/// An `io::Write` that refuses to grow past `MAX_OUTPUT`, so that a render stops as soon as
/// its text is too long instead of after building it, and that stops a render past its
/// deadline.
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + bytes.len() > MAX_OUTPUT {
            return Err(std::io::Error::other("too long"));
        }
        if past_deadline() {
            return Err(std::io::Error::other("too late"));
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks a template before it is saved: syntax, what it uses, and every variable it reads is
/// one of `known` (`contact.name`, `company.max_credit`, ...). Every problem is listed.
pub fn check(parts: &[(&str, &str)], html: bool, known: &BTreeSet<String>) -> Vec<Problem> {
    let env = environment(html);
    let mut problems = Vec::new();
    for (part, source) in parts {
        if let Err(problem) = refusal(part, source) {
            problems.push(problem);
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
            continue;
        }
        // A trial render over blank values finds the arguments past a cap
        // (`indent(1000000000000)`): such a template could never render.
        CAPPED.set(false);
        if let Err(problem) = render(part, source, html, &sample(known)) {
            if CAPPED.get() {
                problems.push(problem);
            }
        }
    }
    problems
}

/// A context where every known variable (`contact.name`) is blank text.
fn sample(known: &BTreeSet<String>) -> serde_json::Value {
    let mut context = serde_json::Map::new();
    for name in known {
        let mut parts = name.split('.');
        let (Some(top), rest) = (parts.next(), parts.collect::<Vec<_>>()) else {
            continue;
        };
        if rest.is_empty() {
            context.insert(top.to_string(), serde_json::Value::String(String::new()));
        } else if let serde_json::Value::Object(fields) = context
            .entry(top.to_string())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
        {
            fields.insert(rest.join("."), serde_json::Value::String(String::new()));
        }
    }
    serde_json::Value::Object(context)
}

/// Whether a template reads the variable `name` (`company` for `company.name`); false when it
/// does not parse or is not allowed.
pub fn reads(source: &str, name: &str) -> bool {
    refusal("", source).is_ok()
        && environment(false)
            .template_from_str(source)
            .map(|t| t.undeclared_variables(false).contains(name))
            .unwrap_or(false)
}

/// Renders one part with a context (`{"contact": {...}, "company": {...}}`), within the
/// sandbox's budgets.
pub fn render(
    part: &str,
    source: &str,
    html: bool,
    context: &serde_json::Value,
) -> Result<String, Problem> {
    refusal(part, source)?;
    let env = environment(html);
    let template = env
        .template_from_str(source)
        .map_err(|e| described(part, &e))?;
    let _budget = Metered::start();
    let mut out = Bounded(Vec::new());
    template
        .render_captured_to(Value::from_serialize(context), &mut out)
        .map(|_| ())
        .map_err(|e| {
            if e.kind() == ErrorKind::WriteFailure && past_deadline() {
                Problem(format!("{part}: {}", too_long().detail().unwrap_or("")))
            } else if e.kind() == ErrorKind::WriteFailure {
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

    /// What `refusal` says of a template, if it refuses it.
    fn refused(source: &str) -> Option<String> {
        refusal("Body", source).err().map(|p| p.0)
    }

    #[test]
    fn statements_are_refused_and_variables_of_those_names_are_not() {
        let says = |source: &str, what: &str| {
            let problem = refused(source).unwrap_or_default();
            assert!(problem.contains(what), "{source}: {problem}");
            assert!(problem.contains("is not allowed"), "{source}: {problem}");
        };
        says("{%- set x = 1 %}", "`set`");
        says("{% call m() %}x{% endcall %}", "`call`");
        says(
            "{% if namespace(a=1) %}{% endif %}",
            "calling `namespace()`",
        );
        says("{{ namespace() }}", "calling `namespace()`");
        assert_eq!(refused("{{ outcome }} call, {{ set }} {{ call }}"), None);
        assert_eq!(refused("{% if call %}{{ macro }}{% endif %}"), None);
        // A closing mark inside a string does not end its tag.
        says("{{ \"}}{% x\" }}{% set s = s + s %}", "`set`");
        says("{{ '}}' ~ contact.name }}", "~ (joining text)");
        says("{{ \"it\\\"s %}\" }}{%- set a = 1 %}", "`set`");
        assert_eq!(refused("Dear {{ contact.name }}, ~20 minutes"), None);
        // Templates that could only fail: there are no other templates and no blocks.
        says("{% include 'other' %}", "`include`");
        says("{% import 'secrets' as s %}", "`import`");
        says("{% from 'x' import y %}", "`import`");
        says("{% extends 'base' %}", "`extends`");
        says("{{ self.body() }}", "`self");
        says("{% block body %}x{% endblock %}", "`block`");
        says("{% filter upper %}x{% endfilter %}", "`filter` blocks");
        says("{% macro m() %}x{% endmacro %}", "`macro`");
        says(
            "{% for x in [1] recursive %}{{ loop(x) }}{% endfor %}",
            "recursive",
        );
        says("{{ contact.name.upper() }}", "calling `.upper()`");
        says("{{ contact.name|pprint }}", "the filter `pprint`");
        // `+` and `*` build text and lists of any size; on numbers they are arithmetic.
        says("{{ 'x' * 99999999 }}", "`*` on text");
        says("{{ contact.name * 3 }}", "`*` on text");
        says("{{ [1] * 3 }}", "`*` on text or lists");
        says("{{ contact.name + contact.name }}", "`+` on text");
        assert_eq!(refused("{{ contact.credit|float * 1.2 + 3 }}"), None);
        assert_eq!(refused("{{ loop.index + 1 if loop else 0 }}"), None);
        assert_eq!(refused("{{ (contact.tag1|length) * 2 - 1 }}"), None);
        assert_eq!(
            refused("{% for c in ['a', 'b'] %}{{ loop.cycle('x', 'y') }}{% endfor %}"),
            None
        );
        assert!(refused(&"x".repeat(MAX_SOURCE + 1))
            .unwrap_or_default()
            .contains("at most"));
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

    #[test]
    fn the_issue_s_probes_are_refused_before_anything_is_built() {
        for (hostile, says) in [
            ("{{ contact.name|indent(1000000000000) }}", "width of 0 to 100"),
            (
                "{% for a in ('x'*99999999)|list %}{% endfor %}",
                "`*` on text",
            ),
            ("{{ range(100000000) }}", "at most 10000"),
            ("{{ range(10)|batch(1000000000000, 'x')|list }}", "at most 10000"),
            ("{{ range(10)|slice(1000000000000, 'x')|list }}", "at most 10000"),
            ("{{ '%999999999s'|format('x') }}", "at most 100"),
            ("{{ '%*s'|format(999999999, 'x') }}", "at most 100"),
            (
                "{{ contact.name|replace('', contact.name)|replace('', contact.name)|replace('', contact.name)|replace('', contact.name)|replace('', contact.name) }}",
                "larger than 100 KB",
            ),
            (
                "{{ range(10000)|join(contact.name|indent(100, true)) }}",
                "larger than 100 KB",
            ),
            (
                "{% for i in range(10000) %}{% if contact.name|indent(100, true, true)|replace('', '0123456789')|length %}{% endif %}{% endfor %}",
                "more than 4 MB",
            ),
            (
                "{{ range(10000)|map('string')|map('indent', 100, true)|list|length }}",
                "larger than 100 KB",
            ),
        ] {
            let problem = render("Body", hostile, false, &context()).expect_err(hostile);
            assert!(problem.0.contains(says), "{hostile}: {problem}");
        }
    }

    #[test]
    fn arguments_past_a_cap_are_refused_at_save() {
        let problems = check(
            &[("Body", "{{ contact.name|indent(1000000000000) }}")],
            false,
            &known(),
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].0.contains("width of 0 to 100"),
            "{}",
            problems[0]
        );
        // A sample's blank values failing a filter is not a reason to refuse.
        assert!(check(&[("Body", "{{ contact.tag1|date }}")], false, &known()).is_empty());
    }

    #[test]
    fn ordinary_filters_still_work_capped() {
        let out = render(
            "Body",
            "{{ contact.name|upper|replace('ANN', 'Ann') }}|{{ contact.tag1|indent(2, true) }}|{{ range(3)|join(', ') }}|{{ ['b', 'a']|sort|first }}|{{ '%05.1f'|format(3.14159) }}|{{ (contact.tag1|length) * 2 + 1 }}|{% for x in range(2) %}{{ loop.index }}{{ loop.cycle('a', 'b') }}{% endfor %}|{{ dict(a=1).a }}",
            false,
            &context(),
        )
        .expect("renders");
        assert_eq!(out, "Ann LEE|  gold|0, 1, 2|a|003.1|9|1a2b|1");
    }

    /// Counts the bytes each thread holds, and its peak, so a test can bound what a render
    /// allocated (other tests run on other threads).
    mod metered {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static LIVE: Cell<isize> = const { Cell::new(0) };
            static PEAK: Cell<isize> = const { Cell::new(0) };
        }

        fn add(bytes: isize) {
            let _ = LIVE.try_with(|live| {
                live.set(live.get() + bytes);
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
            });
        }

        /// Bytes this thread allocated at most at once while `f` ran, beyond what it held.
        pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
            let start = LIVE.with(Cell::get);
            PEAK.with(|p| p.set(start));
            let out = f();
            let peak = PEAK.with(Cell::get);
            (out, usize::try_from(peak - start).unwrap_or(0))
        }

        pub struct Counting;

        // SAFETY: every call goes to the system allocator unchanged; only sizes are counted,
        // in thread-locals that never allocate (const-initialised cells).
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let p = unsafe { System.alloc(layout) };
                if !p.is_null() {
                    add(layout.size() as isize);
                }
                p
            }
            unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
                unsafe { System.dealloc(p, layout) };
                add(-(layout.size() as isize));
            }
            unsafe fn realloc(&self, p: *mut u8, layout: Layout, size: usize) -> *mut u8 {
                let q = unsafe { System.realloc(p, layout, size) };
                if !q.is_null() {
                    add(size as isize - layout.size() as isize);
                }
                q
            }
        }

        #[global_allocator]
        static ALLOCATOR: Counting = Counting;
    }

    mod random_templates {
        use super::*;
        use proptest::prelude::*;

        /// Arguments as a hostile editor would pick them: sizes at and past every cap.
        fn argument() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("0".to_string()),
                Just("1".to_string()),
                Just("-1".to_string()),
                Just("100".to_string()),
                Just("10000".to_string()),
                Just("1000000".to_string()),
                Just("1000000000000".to_string()),
                Just("9223372036854775807".to_string()),
                Just("true".to_string()),
                Just("''".to_string()),
                Just("'x'".to_string()),
                Just("'%999999s %s'".to_string()),
                Just("contact.name".to_string()),
                Just("'upper'".to_string()),
                Just("'indent'".to_string()),
                Just("width=1000000".to_string()),
                Just("count=100000000".to_string()),
            ]
        }

        fn base() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("contact.name".to_string()),
                Just("contact.tag1".to_string()),
                Just("range(10000)".to_string()),
                Just("range(100)|list".to_string()),
                Just("[contact.name, contact.name, 1, [2, 3]]".to_string()),
                Just("'%s-%s'".to_string()),
                Just("contact".to_string()),
                Just("12345".to_string()),
            ]
        }

        fn filter() -> impl Strategy<Value = String> {
            (
                proptest::sample::select(FILTERS),
                proptest::collection::vec(argument(), 0..3),
            )
                .prop_map(|(name, args)| {
                    if args.is_empty() {
                        name.to_string()
                    } else {
                        format!("{name}({})", args.join(", "))
                    }
                })
        }

        fn template() -> impl Strategy<Value = String> {
            (
                base(),
                proptest::collection::vec(filter(), 1..5),
                any::<bool>(),
            )
                .prop_map(|(base, filters, looped)| {
                    let expr = format!("{base}|{}", filters.join("|"));
                    if looped {
                        format!(
                            "{{% for x in range(10000) %}}{{{{ {expr} }}}}{{% if ({expr})|length %}}{{% endif %}}{{% endfor %}}"
                        )
                    } else {
                        format!("{{{{ {expr} }}}}")
                    }
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(192))]
            #[test]
            fn every_filter_with_extreme_arguments_stays_within_its_budget(source in template()) {
                let context = serde_json::json!({
                    "contact": {"name": "Ann Lee ".repeat(500), "tag1": "gold\n".repeat(50)},
                });
                let started = std::time::Instant::now();
                let (_, peak) = metered::peak_of(|| render("Body", &source, false, &context));
                prop_assert!(started.elapsed() < DEADLINE * 2, "{source}: {:?}", started.elapsed());
                prop_assert!(peak < 64 << 20, "{source}: {peak} bytes at once");
            }
        }
    }
}
