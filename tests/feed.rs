//! The outbound change feed: each `to_source` rule, no echo, held changes, and exactly-once
//! reading while many writers commit at once. Runs on SQLite, and on PostgreSQL when
//! TEST_DATABASE_URL is set.

mod common;

use std::collections::BTreeMap;

use syncdesk::fields::model::RecordKind;
use syncdesk::fields::service::{self as fields, NewField};
use syncdesk::fields::validate::PhoneCountry;
use syncdesk::records::model::{Actor, RecordInput};
use syncdesk::records::service as records;
use syncdesk::rules::Rule;
use syncdesk::sources::model::{MappingInput, Source};
use syncdesk::sources::service as sources;
use syncdesk::sync::feed::{self, FeedEntry};
use syncdesk::sync::jobs::{self, NewRun};
use syncdesk::AppState;

fn au() -> PhoneCountry {
    PhoneCountry::parse("AU").expect("country")
}

struct Env {
    state: AppState,
    _db: std::rc::Rc<common::TestDb>,
}

impl Env {
    fn new() -> Self {
        let db = common::TestDb::new();
        let state = AppState::open(db.config()).expect("state");
        Env {
            state,
            _db: std::rc::Rc::new(db),
        }
    }

    /// The same helpers over a served app's state and database.
    fn of<S>(app: &common::TestApp<S>) -> Self {
        Env {
            state: app.state.clone(),
            _db: app.db.clone(),
        }
    }

    /// Webhook settings: `local` allows receivers on private addresses (the test endpoints
    /// listen on loopback), as `SYNCDESK_WEBHOOKS_ALLOW_PRIVATE` does.
    fn hooks(&self, local: bool) -> syncdesk::sync::webhooks::Settings {
        syncdesk::sync::webhooks::Settings::new(&self.state.secret(), local)
    }

    fn conn(&self) -> syncdesk::db::PooledConn {
        self.state.pool.get().expect("connection")
    }

    /// A CRM whose Name goes back `always`, Email `fill_blanks`, Phone on `review`, Title
    /// `always`. Only its Title is kept in step (`always`) inward, so people may edit the rest.
    fn crm(&self) -> Source {
        let mut conn = self.conn();
        fields::create(
            &mut conn,
            RecordKind::Contact,
            &NewField {
                key: "title".into(),
                label: "Title".into(),
                field_type: "text".into(),
                options: String::new(),
            },
        )
        .expect("field");
        let source = sources::create(&mut conn, &common::contacts_by("CRM", "id")).expect("source");
        let line = |column: &str, field: &str, to_source: Rule| MappingInput {
            column_name: column.into(),
            field_key: field.into(),
            to_record: if field == "title" {
                Rule::Always
            } else {
                Rule::FillBlanks
            },
            to_source,
            blanks_clear: false,
        };
        sources::set_mapping(
            &mut conn,
            source.id,
            &[
                line("Name", "name", Rule::Always),
                line("Email", "email", Rule::FillBlanks),
                line("Phone", "phone", Rule::Review),
                line("Title", "title", Rule::Always),
            ],
        )
        .expect("mapping");
        source
    }

    fn import(&self, source: &Source, csv: &str) {
        let data_dir = &self.state.config.data_dir;
        let sha = jobs::store_file(data_dir, csv.as_bytes(), 1024 * 1024).expect("store");
        let format = syncdesk::sync::csvfile::detect(csv.as_bytes());
        jobs::enqueue(
            &mut self.conn(),
            &NewRun {
                source,
                file_name: "crm.csv",
                sha256: &sha,
                format,
                dry_run: false,
                plan_of: None,
                flag_confirmed: false,
                user_id: None,
                user_label: "test",
            },
        )
        .expect("enqueue");
        jobs::run_queued(&self.state.pool, data_dir, au()).expect("run");
    }

    fn record_of(&self, source: &Source, external_id: &str) -> i64 {
        use diesel::prelude::*;
        use syncdesk::schema::record_links;
        record_links::table
            .filter(record_links::source_id.eq(source.id))
            .filter(record_links::external_id.eq(external_id))
            .select(record_links::record_id)
            .first(&mut self.conn())
            .expect("linked record")
    }

    fn edit(&self, id: i64, values: &[(&str, &str)], by: &str) {
        let input = RecordInput {
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            company_id: None,
        };
        records::update(&mut self.conn(), id, &input, &Actor::system(by), au()).expect("edit");
    }

    /// Everything in the feed after `after`, as "external_id column old>new" lines.
    fn read(&self, source: &Source, after: i64) -> (Vec<String>, i64) {
        let mut conn = self.conn();
        feed::sequence(&mut conn).expect("sequence");
        let entries = feed::page(&mut conn, source.id, after, 1_000).expect("page");
        let last = entries.last().and_then(|e| e.seq).unwrap_or(after);
        (entries.iter().map(describe).collect(), last)
    }
}

fn describe(e: &FeedEntry) -> String {
    format!(
        "{} {} {}>{}",
        e.external_id,
        e.column_name.as_deref().unwrap_or(&e.event),
        e.old_value.as_deref().unwrap_or(""),
        e.new_value.as_deref().unwrap_or("")
    )
}

#[test]
fn each_to_source_rule_feeds_what_it_says_and_never_echoes() {
    let env = Env::new();
    let crm = env.crm();
    env.import(
        &crm,
        "id,Name,Email,Phone,Title\nc1,Ada Lovelace,ada@example.org,+61 2 9374 4000,Countess\nc2,Bob Brown,,,\n",
    );
    let (entries, cursor) = env.read(&crm, 0);
    assert!(
        entries.is_empty(),
        "the source's own import came back: {entries:?}"
    );
    let (c1, c2) = (env.record_of(&crm, "c1"), env.record_of(&crm, "c2"));

    env.edit(c1, &[("name", "Ada King")], "Ann");
    env.edit(c1, &[("email", "ada@king.example")], "Ann");
    env.edit(c2, &[("email", "bob@example.org")], "Ann");
    env.edit(c1, &[("phone", "+61 2 9374 4001")], "Ann");
    env.edit(c2, &[("phone", "+61 2 9374 4002")], "Ann");
    records::set_archived(&mut env.conn(), c2, true, &Actor::system("Ann")).expect("archive");

    let (entries, cursor) = env.read(&crm, cursor);
    assert_eq!(
        entries,
        [
            "c1 Name Ada Lovelace>Ada King",
            // fill_blanks: c1's email was not blank, so only c2's goes back.
            "c2 Email >bob@example.org",
            "c2 archived no>yes",
        ]
    );

    // Review: phone changes wait for a person; approved ones enter the feed, dropped never.
    let mut conn = env.conn();
    let held = feed::held(&mut conn, crm.id, 10).expect("held");
    let held: BTreeMap<String, i64> = held.iter().map(|e| (describe(e), e.id)).collect();
    assert_eq!(
        held.keys().collect::<Vec<_>>(),
        [
            "c1 Phone +61293744000>+61293744001",
            "c2 Phone >+61293744002"
        ]
    );
    let ids: Vec<i64> = held.values().copied().collect();
    assert_eq!(
        feed::decide(&mut conn, crm.id, &ids[..1], true, "Ann").expect("approve"),
        1
    );
    assert_eq!(
        feed::decide(&mut conn, crm.id, &ids[1..], false, "Ann").expect("drop"),
        1
    );
    assert_eq!(
        feed::decide(&mut conn, crm.id, &ids, true, "Ann").expect("again"),
        0
    );
    drop(conn);
    let (entries, cursor) = env.read(&crm, cursor);
    assert_eq!(entries, ["c1 Phone +61293744000>+61293744001"]);

    // A new value from the CRM itself never goes back to it.
    env.import(&crm, "id,Title\nc1,Mathematician\n");
    let record = records::find(&mut env.conn(), c1)
        .expect("find")
        .expect("c1");
    let values = records::values(
        &mut env.conn(),
        &record,
        &fields::list(&mut env.conn(), RecordKind::Contact, false).expect("defs"),
    )
    .expect("values");
    assert_eq!(values["title"], "Mathematician");
    let (entries, _) = env.read(&crm, cursor);
    assert!(entries.is_empty(), "echo: {entries:?}");
}

/// Writers on many threads commit in any order; a reader polling by cursor the whole time
/// sees every change exactly once.
#[test]
fn a_polling_reader_sees_every_change_once_under_concurrent_writers() {
    let env = Env::new();
    let crm = env.crm();
    let mut csv = String::from("id,Name\n");
    for i in 0..8 {
        csv.push_str(&format!("c{i},Person {i}\n"));
    }
    env.import(&crm, &csv);
    let ids: Vec<i64> = (0..8)
        .map(|i| env.record_of(&crm, &format!("c{i}")))
        .collect();
    const EDITS: usize = 25;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(w, &id)| {
            let pool = env.state.pool.clone();
            std::thread::spawn(move || {
                for n in 0..EDITS {
                    let mut conn = pool.get().expect("connection");
                    let input = RecordInput {
                        values: [("name".to_string(), format!("Person {w} v{n}"))].into(),
                        company_id: None,
                    };
                    records::update(&mut conn, id, &input, &Actor::system("writer"), au())
                        .expect("write");
                }
            })
        })
        .collect();
    let reader = {
        let pool = env.state.pool.clone();
        let done = done.clone();
        let source = crm.id;
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut cursor = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let mut conn = pool.get().expect("connection");
                feed::sequence(&mut conn).expect("sequence");
                let page = feed::page(&mut conn, source, cursor, 50).expect("page");
                if let Some(last) = page.last() {
                    cursor = last.seq.expect("sequenced");
                }
                let empty = page.is_empty();
                seen.extend(page.iter().map(describe));
                if finished && empty {
                    return seen;
                }
            }
        })
    };
    for w in writers {
        w.join().expect("writer");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.join().expect("reader");
    assert_eq!(seen.len(), ids.len() * EDITS, "every change, once");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no change twice");
    for w in 0..ids.len() {
        let of_writer: Vec<&String> = seen
            .iter()
            .filter(|e| e.starts_with(&format!("c{w} ")))
            .collect();
        for (n, entry) in of_writer.iter().enumerate() {
            assert!(
                entry.ends_with(&format!(">Person {w} v{n}")),
                "in commit order: {entry}"
            );
        }
    }
}

/// A local endpoint answering each request with the next status of `statuses` (the last one
/// again once they run out); returns its URL and what it received: (headers, body) each.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(BTreeMap<String, String>, String)>>>;

fn endpoint(statuses: Vec<u16>) -> (String, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = received.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("stream"));
            let mut headers = BTreeMap::new();
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let length: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            seen.lock()
                .expect("lock")
                .push((headers, String::from_utf8_lossy(&body).into_owned()));
            let status = statuses.get(n).or(statuses.last()).copied().unwrap_or(200);
            // A 3xx sends the batch elsewhere on this same endpoint.
            let location = if (300..400).contains(&status) {
                "location: /elsewhere\r\n"
            } else {
                ""
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\n{location}content-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, received)
}

/// The Standard Webhooks signature, recomputed here from the specification.
fn expected_signature(secret: &str, id: &str, timestamp: &str, body: &str) -> String {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").expect("whsec_ secret"))
        .expect("base64 secret");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", b64.encode(mac.finalize().into_bytes()))
}

#[test]
fn webhooks_are_signed_retried_and_held_as_failed() {
    use syncdesk::sync::webhooks::{self, DeliveryStatus};
    let env = Env::new();
    let crm = env.crm();
    env.import(&crm, "id,Name\nc1,Ada Lovelace\n");
    let c1 = env.record_of(&crm, "c1");
    let (url, received) = endpoint(vec![500, 204]);
    let mut conn = env.conn();
    let local = env.hooks(true);
    let secret = webhooks::set(&mut conn, crm.id, &url, &local).expect("webhook");
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(webhooks::set(&mut conn, crm.id, "ftp://x", &local).is_err());
    drop(conn);
    env.edit(c1, &[("name", "Ada King")], "Ann");

    let agent = webhooks::Sender::new(&local);
    let mut conn = env.conn();
    let now = syncdesk::db::now();
    assert_eq!(webhooks::make_batches(&mut conn, now).expect("batch"), 1);
    assert_eq!(webhooks::make_batches(&mut conn, now).expect("batch"), 0);
    assert_eq!(
        webhooks::deliver_due(&mut conn, &agent, now).expect("send"),
        1
    );
    let first = &webhooks::deliveries(&mut conn, crm.id, 10).expect("list")[0];
    assert_eq!(
        (first.status, first.attempts, first.last_status_code),
        (DeliveryStatus::Pending, 1, Some(500))
    );
    // Not due again until the first retry delay has passed.
    assert_eq!(
        webhooks::deliver_due(&mut conn, &agent, now).expect("send"),
        0
    );
    let later = now + chrono::Duration::seconds(6);
    assert_eq!(
        webhooks::deliver_due(&mut conn, &agent, later).expect("send"),
        1
    );
    let done = &webhooks::deliveries(&mut conn, crm.id, 10).expect("list")[0];
    assert_eq!(
        (done.status, done.attempts, done.last_status_code),
        (DeliveryStatus::Delivered, 2, Some(204))
    );

    let received = received.lock().expect("lock").clone();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0].1, received[1].1,
        "every attempt sends the same message"
    );
    for (headers, body) in &received {
        let id = &headers["webhook-id"];
        let timestamp = &headers["webhook-timestamp"];
        assert_eq!(id, &received[0].0["webhook-id"]);
        assert_eq!(
            headers["webhook-signature"],
            expected_signature(&secret, id, timestamp, body)
        );
    }
    let message: serde_json::Value = serde_json::from_str(&received[0].1).expect("JSON");
    assert_eq!(message["changes"][0]["new_value"], "Ada King", "{message}");
    assert_eq!(message["changes"][0]["column"], "Name");

    // An endpoint that never answers well: retried on the schedule, then held as failed.
    let (url, _) = endpoint(vec![503]);
    webhooks::set(&mut conn, crm.id, &url, &local).expect("webhook");
    drop(conn);
    env.edit(c1, &[("name", "Ada Byron")], "Ann");
    let mut conn = env.conn();
    let mut now = syncdesk::db::now();
    webhooks::make_batches(&mut conn, now).expect("batch");
    for _ in 0..8 {
        webhooks::deliver_due(&mut conn, &agent, now).expect("send");
        now += chrono::Duration::hours(11);
    }
    let failed = &webhooks::deliveries(&mut conn, crm.id, 10).expect("list")[0];
    assert_eq!(
        (failed.status, failed.attempts),
        (DeliveryStatus::Failed, 8)
    );
    webhooks::retry(&mut conn, crm.id, failed.id).expect("retry");
    let again = &webhooks::deliveries(&mut conn, crm.id, 10).expect("list")[0];
    assert_eq!((again.status, again.attempts), (DeliveryStatus::Pending, 0));
    assert!(webhooks::retry(&mut conn, crm.id, again.id).is_err());
    // A new URL: what waited for the old one is held as failed, and does not block the new.
    webhooks::set(&mut conn, crm.id, "https://crm.example.com/new", &local).expect("webhook");
    let stopped = &webhooks::deliveries(&mut conn, crm.id, 10).expect("list")[0];
    assert_eq!(stopped.status, DeliveryStatus::Failed);
    assert!(stopped
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("URL was changed"));
}

#[test]
fn the_command_line_sets_webhooks_tokens_and_reads_the_feed() {
    let env = Env::new();
    let crm = env.crm();
    env.import(&crm, "id,Name\nc1,Ada Lovelace\n");
    env.edit(env.record_of(&crm, "c1"), &[("name", "Ada King")], "Ann");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncdesk"))
            .args(args)
            .env("SYNCDESK_DATA_DIR", &env.state.config.data_dir)
            .env("DATABASE_URL", &env.state.config.database_url)
            .env_remove("SYNCDESK_CONFIG")
            .output()
            .expect("run syncdesk");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let secret = cli(&["source", "webhook", "CRM", "https://crm.example.com/hook"]);
    assert!(secret.trim().starts_with("whsec_"), "{secret}");
    assert!(cli(&["source", "webhook", "CRM", "--off"]).contains("no webhook any more"));
    let token = cli(&[
        "token",
        "create",
        "--name",
        "CRM",
        "--scope",
        "changes:read",
        "--source",
        "CRM",
    ]);
    assert!(token.trim().starts_with("sdk_"), "{token}");
    assert!(cli(&["token", "list"]).contains("changes:read, source #"));
    let lines = cli(&["source", "changes", "CRM"]);
    let entries: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(entries.len(), 1, "{lines}");
    assert_eq!(entries[0]["new_value"], "Ada King");
    let cursor = entries[0]["cursor"].to_string();
    assert!(cli(&["source", "changes", "CRM", "--after", &cursor]).is_empty());
    assert!(cli(&[
        "source",
        "add",
        "ERP",
        "--kind",
        "contact",
        "--id-column",
        "id",
        "--map",
        "Name=name:always:review"
    ])
    .contains("1 mapped column"));
    assert!(cli(&["source", "list"]).contains("to source: review"));
}

/// `serve`'s delivery thread sends a change within 5 seconds of its commit.
#[test]
fn the_delivery_thread_sends_a_change_within_seconds() {
    let env = Env::new();
    let crm = env.crm();
    env.import(&crm, "id,Name\nc1,Ada Lovelace\n");
    let (url, received) = endpoint(vec![200]);
    syncdesk::sync::webhooks::set(&mut env.conn(), crm.id, &url, &env.hooks(true))
        .expect("webhook");
    let worker =
        syncdesk::sync::webhooks::spawn_worker(env.state.pool.clone(), 30, &env.hooks(true))
            .expect("worker");
    let committed = std::time::Instant::now();
    env.edit(env.record_of(&crm, "c1"), &[("name", "Ada King")], "Ann");
    while received.lock().expect("lock").is_empty() {
        assert!(
            committed.elapsed() < std::time::Duration::from_secs(5),
            "no delivery within 5 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(received.lock().expect("lock")[0].1.contains("Ada King"));
    // Ended before the test's database is dropped, so it never reconnects to a dropped one.
    worker.stop();
}

/// By default a webhook reaches public addresses only: loopback, private, link-local,
/// unspecified, multicast and unique-local ones (IPv4, IPv6, IPv4-mapped, and names that
/// resolve to them) are refused when it is set, in words naming the setting that allows
/// them, and again at each delivery, where the address is resolved anew.
#[test]
fn webhooks_refuse_private_addresses_unless_the_setting_allows_them() {
    use syncdesk::sync::webhooks::{self, DeliveryStatus};
    let env = Env::new();
    let crm = env.crm();
    env.import(&crm, "id,Name\nc1,Ada Lovelace\n");
    let mut conn = env.conn();
    let public = env.hooks(false);
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:8080/hook",
        "http://2130706433/hook",
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:a9fe:a9fe]/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://[ff02::1]/hook",
        "http://[::]/hook",
    ] {
        let refused = webhooks::set(&mut conn, crm.id, url, &public)
            .expect_err(url)
            .to_string();
        assert!(
            refused.contains("not a public address")
                && refused.contains("SYNCDESK_WEBHOOKS_ALLOW_PRIVATE"),
            "{url}: {refused}"
        );
    }
    let loopback = webhooks::set(&mut conn, crm.id, "http://127.0.0.1:9/hook", &public)
        .expect_err("loopback")
        .to_string();
    assert!(
        loopback.contains("127.0.0.1 is a loopback address"),
        "{loopback}"
    );
    assert!(webhooks::find(&mut conn, crm.id).expect("find").is_none());
    // A public address is accepted; so is a name that does not resolve yet (each delivery
    // resolves it and checks again).
    webhooks::set(&mut conn, crm.id, "https://203.0.113.7/hook", &public).expect("public");
    webhooks::set(&mut conn, crm.id, "https://crm.example.com/hook", &public).expect("a name");

    // Allowed when set; refused when delivered by a console that does not allow it (as if
    // the name now resolved to a private address): the endpoint receives nothing.
    let (url, received) = endpoint(vec![200]);
    webhooks::set(&mut conn, crm.id, &url, &env.hooks(true)).expect("allowed");
    drop(conn);
    env.edit(env.record_of(&crm, "c1"), &[("name", "Ada King")], "Ann");
    let mut conn = env.conn();
    let now = syncdesk::db::now();
    webhooks::make_batches(&mut conn, now).expect("batch");
    webhooks::deliver_due(&mut conn, &webhooks::Sender::new(&public), now).expect("send");
    let refused = &webhooks::deliveries(&mut conn, crm.id, 10).expect("list")[0];
    assert_eq!(
        (refused.status, refused.attempts, refused.last_status_code),
        (DeliveryStatus::Pending, 1, None)
    );
    let why = refused.last_error.clone().unwrap_or_default();
    assert!(
        why.contains("127.0.0.1 is a loopback address") && why.contains("not sent"),
        "{why}"
    );
    assert!(received.lock().expect("lock").is_empty());
}

/// A receiver answering 302 has not received the batch: the redirect is not followed (no
/// second request, no GET elsewhere), the attempt failed, and the feed page says why.
#[actix_web::test]
async fn webhooks_do_not_follow_redirects() {
    use syncdesk::auth::model::Role;
    use syncdesk::sync::webhooks::{self, DeliveryStatus};
    let mut app = common::spawn().await;
    let env = Env::of(&app);
    let crm = env.crm();
    env.import(&crm, "id,Name\nc1,Ada Lovelace\n");
    let (url, received) = endpoint(vec![302]);
    let local = env.hooks(true);
    webhooks::set(&mut env.conn(), crm.id, &url, &local).expect("webhook");
    env.edit(env.record_of(&crm, "c1"), &[("name", "Ada King")], "Ann");
    let mut conn = env.conn();
    let now = syncdesk::db::now();
    webhooks::make_batches(&mut conn, now).expect("batch");
    webhooks::deliver_due(&mut conn, &webhooks::Sender::new(&local), now).expect("send");
    let moved = &webhooks::deliveries(&mut conn, crm.id, 10).expect("list")[0];
    assert_eq!(
        (moved.status, moved.attempts, moved.last_status_code),
        (DeliveryStatus::Pending, 1, Some(302))
    );
    let why = moved.last_error.clone().unwrap_or_default();
    assert!(
        why.contains("a redirect to /elsewhere") && why.contains("redirects are not followed"),
        "{why}"
    );
    drop(conn);
    assert_eq!(received.lock().expect("lock").len(), 1, "one request only");
    app.signed_in_as("admin@example.org", Role::Admin).await;
    app.get(&format!("/sources/{}/feed", crm.id))
        .await
        .assert_status(200)
        .assert_contains("HTTP 302")
        .assert_contains("redirects are not followed");
}

/// Webhook secrets are kept encrypted with a key derived from the session key, like the
/// connector's URL. A secret kept in clear by an older version still signs, and the
/// delivery thread encrypts it when `serve` starts it.
#[test]
fn webhook_secrets_are_kept_encrypted_and_clear_ones_still_sign() {
    use diesel::prelude::*;
    use syncdesk::schema::source_webhooks;
    use syncdesk::sync::webhooks;
    let env = Env::new();
    let crm = env.crm();
    env.import(&crm, "id,Name\nc1,Ada Lovelace\n");
    let c1 = env.record_of(&crm, "c1");
    let (url, received) = endpoint(vec![200]);
    let local = env.hooks(true);
    let mut conn = env.conn();
    let secret = webhooks::set(&mut conn, crm.id, &url, &local).expect("webhook");
    let stored = |conn: &mut syncdesk::db::PooledConn| -> String {
        source_webhooks::table
            .find(crm.id)
            .select(source_webhooks::secret)
            .first(conn)
            .expect("stored secret")
    };
    let kept = stored(&mut conn);
    assert!(!kept.starts_with("whsec_"), "{kept}");
    assert!(!kept.contains(&secret[6..]), "{kept}");

    // As an older version kept it: in clear.
    let clear = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    diesel::update(source_webhooks::table.find(crm.id))
        .set(source_webhooks::secret.eq(clear))
        .execute(&mut conn)
        .expect("clear secret");
    let sender = webhooks::Sender::new(&local);
    let deliver = |conn: &mut syncdesk::db::PooledConn, name: &str| {
        env.edit(c1, &[("name", name)], "Ann");
        let now = syncdesk::db::now();
        webhooks::make_batches(conn, now).expect("batch");
        webhooks::deliver_due(conn, &sender, now).expect("send");
        let received = received.lock().expect("lock");
        let (headers, body) = received.last().expect("a delivery").clone();
        assert!(body.contains(name), "{body}");
        assert_eq!(
            headers["webhook-signature"],
            expected_signature(
                clear,
                &headers["webhook-id"],
                &headers["webhook-timestamp"],
                &body
            )
        );
    };
    deliver(&mut conn, "Ada King");
    assert_eq!(
        webhooks::seal_clear_secrets(&mut conn, &local).expect("seal"),
        1
    );
    let sealed = stored(&mut conn);
    assert!(!sealed.starts_with("whsec_"), "{sealed}");
    deliver(&mut conn, "Ada Byron");
    assert_eq!(
        webhooks::seal_clear_secrets(&mut conn, &local).expect("seal"),
        0
    );
}
