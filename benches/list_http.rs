//! The contact list as people use it: the console's own app on a loopback port, 16 clients at
//! once (each a signed-in browser session sending its next request when the last answered),
//! at a million contacts.
//!
//!     cargo bench --bench list_http                                   # 100 000 contacts, SQLite
//!     BENCH_ROWS=1048576 cargo bench --bench list_http
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test BENCH_ROWS=1048576 cargo bench --bench list_http
//!
//! For each page (page 1, a page deep in the list, searches for a common surname, a prefix and
//! a phone typed in national format, a custom-field sort, the desynchronised records) it sends
//! requests for `BENCH_SECONDS` (default 5) after a one-second warm-up and prints requests per
//! second and the p50 and p99 latency. Then it times the list's CSV export of every contact
//! and the server's peak memory. It stops by itself.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::BenchDb;
use diesel::connection::SimpleConnection;
use syncdesk::auth::model::Role;
use syncdesk::auth::service::{self as auth, NewUser};
use syncdesk::db::DbConn;
use syncdesk::fields::model::RecordKind;
use syncdesk::fields::service::{self as fields, NewField};
use syncdesk::records::list::Cursor;
use syncdesk::AppState;

const GIVEN: [&str; 12] = [
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy", "Leo",
    "Grace",
];
const SURNAMES: [&str; 40] = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood",
    "Jackson", "Clarke", "Lefèvre", "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard",
    "Petit", "Durand", "Leroy", "Moreau", "Simon", "Laurent", "Michel", "Garcia", "David",
    "Bertrand", "Roux", "Vincent", "Fournier",
];
const PASSWORD: &str = "bench password 2026";

fn main() {
    let rows = common::rows(100_000);
    let clients: usize = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let db = BenchDb::new();
    let backend = if db.url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let mut conn = db.pool.get().expect("connection");
    fields::create(
        &mut conn,
        RecordKind::Contact,
        &NewField {
            key: "tier".into(),
            label: "Tier".into(),
            field_type: "number".into(),
            options: String::new(),
        },
    )
    .expect("field");
    auth::create_user(
        &mut conn,
        &NewUser {
            email: "bench@example.org".into(),
            display_name: "Bench".into(),
            password: PASSWORD.into(),
            role: Role::Admin,
        },
    )
    .expect("user");
    let started = Instant::now();
    seed(&mut conn, rows);
    println!(
        "{backend}: seeded {rows} contacts (a custom value each, a pending proposal on a quarter) in {:.1?}",
        started.elapsed()
    );
    // A cursor halfway down the list by name: the page after the record with the middle id.
    let middle = {
        use diesel::prelude::*;
        use syncdesk::schema::records;
        records::table
            .find(i64::try_from(rows / 2).unwrap_or(1))
            .select((records::name_norm, records::id))
            .first::<(String, i64)>(&mut conn)
            .expect("middle record")
    };
    let deep = Cursor {
        value: middle.0,
        id: middle.1,
        blank: false,
        rest: false,
    }
    .encode();
    drop(conn);

    // Opening the console indexes the records for search, as it does for a database from
    // before the index.
    let dir = tempfile::tempdir().expect("temporary folder");
    let started = Instant::now();
    let state = AppState::open(common::config(&db, dir.path().join("data"), "GB")).expect("state");
    println!("search index filled at start in {:.1?}", started.elapsed());
    let base = common::serve(state);
    let cookie = sign_in(&base);

    let phone = format!(
        "020 {:04} {:04}",
        (rows / 3) / 10_000 % 10_000,
        (rows / 3) % 10_000
    );
    let pages = [
        ("page 1, by name", "/contacts".to_string()),
        ("a page deep in the list", format!("/contacts?after={deep}")),
        ("search: common surname", "/contacts?q=smith".to_string()),
        (
            "search: prefix of two words",
            "/contacts?q=gra%20wil".to_string(),
        ),
        ("search: accent-free", "/contacts?q=lefevre".to_string()),
        (
            "search: phone, national format",
            format!("/contacts?q={}", phone.replace(' ', "%20")),
        ),
        ("sort by a number field", "/contacts?sort=tier".to_string()),
        ("desynchronised records", "/desync".to_string()),
    ];
    println!(
        "\n{clients} clients, {seconds} s each               req/s      p50      p99   errors"
    );
    // `BENCH_ONLY=smith,tier` runs only the pages whose label or path holds one of those
    // texts (profiling).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for (label, path) in pages.iter().filter(|(label, path)| {
        only.split(',')
            .any(|part| label.contains(part) || path.contains(part))
    }) {
        let url = format!("{base}{path}");
        let result = load(&url, &cookie, clients, Duration::from_secs(seconds));
        println!(
            "{label:<36} {:>8.0} {:>8.1?} {:>8.1?} {:>8}",
            result.per_second, result.p50, result.p99, result.errors
        );
    }

    let (bytes, elapsed) = export(&base, &cookie);
    println!(
        "\nlist export of every contact: {:.1} MB in {elapsed:.1?}; peak RSS of the process {:.0} MB",
        bytes as f64 / 1e6,
        common::peak_rss_mb()
    );
    export_from_own_server(&db.url, &dir.path().join("data"));
}

/// The list export again, from `syncdesk serve` in a process of its own, whose peak memory is
/// the console's alone (this one's also holds the seeding and the 16 clients).
fn export_from_own_server(database_url: &str, data_dir: &std::path::Path) {
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_syncdesk"))
        .args(["serve", "--bind", &address.to_string()])
        .env("DATABASE_URL", database_url)
        .env("SYNCDESK_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("syncdesk serve");
    let base = format!("http://{address}");
    let up = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        agent().get(&format!("{base}/signin")).call().is_ok()
    });
    assert!(up, "syncdesk serve answered");
    let (bytes, elapsed) = export(&base, &sign_in(&base));
    let peak_mb = common::peak_rss_mb_of(&server.id().to_string());
    let _ = server.kill();
    let _ = server.wait();
    println!(
        "the same export from `syncdesk serve` alone: {:.1} MB in {elapsed:.1?}; its peak RSS {peak_mb:.0} MB",
        bytes as f64 / 1e6
    );
}

/// Downloads the list's CSV export of every contact: its size and how long it took.
fn export(base: &str, cookie: &str) -> (u64, Duration) {
    let started = Instant::now();
    let mut res = agent()
        .get(&format!("{base}/contacts/export.csv"))
        .header("cookie", cookie)
        .call()
        .expect("export");
    let mut body = res.body_mut().with_config().limit(u64::MAX).reader();
    let bytes = std::io::copy(&mut body, &mut std::io::sink()).expect("export body");
    (bytes, started.elapsed())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// Signs in as a browser does; returns the session cookie.
fn sign_in(base: &str) -> String {
    let agent = agent();
    let mut page = agent
        .get(&format!("{base}/signin"))
        .call()
        .expect("sign-in page");
    let first = session_cookie(&page).expect("a session cookie");
    let html = page.body_mut().read_to_string().expect("sign-in page");
    let marker = "name=\"csrf-token\" content=\"";
    let start = html.find(marker).expect("csrf token") + marker.len();
    let csrf = &html[start..start + html[start..].find('"').expect("token end")];
    let res = agent
        .post(&format!("{base}/signin"))
        .header("cookie", &first)
        .send_form([
            ("email", "bench@example.org"),
            ("password", PASSWORD),
            ("csrf_token", csrf),
        ])
        .expect("sign in");
    assert_eq!(res.status().as_u16(), 303, "signed in");
    session_cookie(&res).expect("the signed-in session cookie")
}

fn session_cookie(res: &ureq::http::Response<ureq::Body>) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .next_back()
        .map(str::to_string)
}

struct LoadResult {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

/// `clients` threads request `url` back to back for a warm-up second, then for `length`.
fn load(url: &str, cookie: &str, clients: usize, length: Duration) -> LoadResult {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (url, cookie) = (url.to_string(), cookie.to_string());
            let (measuring, stop) = (measuring.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let (mut times, mut errors) = (Vec::new(), 0);
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let ok = match agent.get(&url).header("cookie", &cookie).call() {
                        Ok(mut res) => {
                            let status = res.status().as_u16();
                            let read = res.body_mut().read_to_vec().is_ok();
                            status == 200 && read
                        }
                        Err(_) => false,
                    };
                    if measuring.load(Ordering::Relaxed) {
                        times.push(start.elapsed());
                        errors += usize::from(!ok);
                    }
                }
                (times, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(length);
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (mut times, mut errors) = (Vec::new(), 0);
    for t in threads {
        let (t, e) = t.join().expect("client");
        times.extend(t);
        errors += e;
    }
    times.sort();
    let at = |q: f64| {
        times
            .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    LoadResult {
        per_second: times.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        errors,
    }
}

fn values(names: &[&str]) -> String {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("({i}, '{n}')"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Generates contacts inside the database: given names and 40 surnames (Smith is one contact
/// in 40), unique emails, GB phones (+4420 and 8 digits), a number field, and a pending
/// proposal from an import on every fourth record.
fn seed(conn: &mut DbConn, rows: u64) {
    let (given, surnames) = (values(&GIVEN), values(&SURNAMES));
    let names = format!(
        "CREATE TEMPORARY TABLE given (i INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO given VALUES {given};
         CREATE TEMPORARY TABLE surnames (i INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO surnames VALUES {surnames};
         INSERT INTO sources (name, kind, id_column, created_at, updated_at)
         VALUES ('Books', 'contact', 'id', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP);"
    );
    let records = match conn {
        DbConn::Sqlite(_) => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO records (kind, name, name_norm, email, email_norm, phone, phone_norm, created_at, updated_at)
             SELECT 'contact', g.name || ' ' || s.name, lower(g.name || ' ' || s.name),
                    lower(g.name || '.' || s.name) || n.i || '@example.org',
                    lower(g.name || '.' || s.name) || n.i || '@example.org',
                    '+4420' || printf('%08d', n.i), '+4420' || printf('%08d', n.i),
                    datetime('now'), datetime('now', '-' || (n.i % 1000) || ' minutes')
             FROM n JOIN given g ON g.i = n.i % 12 JOIN surnames s ON s.i = (n.i / 12) % 40;"
        ),
        DbConn::Pg(_) => format!(
            "INSERT INTO records (kind, name, name_norm, email, email_norm, phone, phone_norm, created_at, updated_at)
             SELECT 'contact', g.name || ' ' || s.name, lower(g.name || ' ' || s.name),
                    lower(g.name || '.' || s.name) || n.i || '@example.org',
                    lower(g.name || '.' || s.name) || n.i || '@example.org',
                    '+4420' || lpad(n.i::text, 8, '0'), '+4420' || lpad(n.i::text, 8, '0'),
                    now(), now() - (n.i % 1000) * interval '1 minute'
             FROM generate_series(1, {rows}) AS n(i)
             JOIN given g ON g.i = n.i % 12 JOIN surnames s ON s.i = (n.i / 12) % 40;"
        ),
    };
    let rest = "
        INSERT INTO record_values (record_id, field_id, value, number)
        SELECT id, (SELECT id FROM field_defs WHERE key = 'tier'), CAST(id * 7919 % 100000 AS TEXT),
               id * 7919 % 100000
        FROM records;
        INSERT INTO proposals (record_id, field_key, current_value, proposed_value, origin, origin_id,
                               origin_label, status, created_at, record_kind, source_id, process_id)
        SELECT id, 'phone', phone, '+4420' || id, 'import', 1, 'import run 1 (Books)', 'pending',
               CURRENT_TIMESTAMP, kind, 1, NULL
        FROM records WHERE id % 4 = 0;
        ANALYZE;";
    conn.batch_execute(&format!("{names}{records}{rest}"))
        .expect("seed");
    if let DbConn::Pg(_) = conn {
        // As autovacuum would: index-only scans need the visibility map.
        conn.batch_execute("VACUUM ANALYZE").expect("vacuum");
    }
}
