//! Webhooks: batches of a source's change feed POSTed to its URL, signed per the Standard
//! Webhooks specification (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
//! HMAC-SHA256 of id.timestamp.body>` with a `whsec_` secret). A batch is fixed when made, so
//! every attempt sends the same message; a failed attempt is retried on the specification's
//! schedule (about 27 hours in all), then held as failed for an admin to retry. Delivery runs
//! on a thread of its own: a slow or dead endpoint never slows the console or an import.
//! Redirects are not followed (a 3xx is a failed attempt); only public addresses are reached
//! unless the admin setting allows private ones, checked when the URL is set and at each
//! connection; secrets are kept encrypted like the connector's URLs.

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::time::Duration;

use base64::Engine;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use hmac::{KeyInit, Mac};

use super::feed;
use super::worker::Worker;
use crate::db::{self, DbConn, DbPool};
use crate::schema::{source_changes, source_webhooks, sources, webhook_deliveries};
use crate::stored::stored_enum;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};

pub const SECRET_PREFIX: &str = "whsec_";
/// What webhook secrets are encrypted for (see `connector::seal`).
const SECRET_PURPOSE: &[u8] = b"syncdesk webhook secrets";
/// The longest part of a redirect's `Location` quoted in a delivery's error.
const LOCATION_CHARS: usize = 200;
/// Feed entries per message.
const BATCH: i64 = 100;
/// Seconds before each retry: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
const RETRY_DELAYS: [i64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
/// An endpoint that has not answered in this time has failed this attempt.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long the delivery thread sleeps when there is nothing to do.
const IDLE: Duration = Duration::from_millis(500);

stored_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DeliveryStatus as "delivery status" {
        /// Waiting for its next attempt.
        Pending = "pending",
        Delivered = "delivered",
        /// Every attempt failed; an admin may retry it.
        Failed = "failed",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = source_webhooks)]
pub struct Webhook {
    pub source_id: i64,
    pub url: String,
    pub secret: String,
    /// The last feed entry put in a batch.
    pub cursor: i64,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
pub struct Delivery {
    pub id: i64,
    pub source_id: i64,
    pub url: String,
    pub first_cursor: i64,
    pub last_cursor: i64,
    pub changes: i32,
    pub body: String,
    #[diesel(deserialize_as = String)]
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: Option<NaiveDateTime>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
}

impl Delivery {
    /// The `webhook-id` of its message: the same on every attempt.
    pub fn message_id(&self) -> String {
        format!("msg_{}", self.id)
    }

    pub fn is_failed(&self) -> bool {
        self.status == DeliveryStatus::Failed
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// What webhooks need of the console's settings: the session key (their secrets are kept
/// encrypted with a key derived from it) and whether private addresses may be reached.
#[derive(Clone)]
pub struct Settings {
    session_key: Vec<u8>,
    allow_private: bool,
}

impl Settings {
    pub fn new(session_key: &[u8], allow_private: bool) -> Self {
        Settings {
            session_key: session_key.to_vec(),
            allow_private,
        }
    }
}

/// Sends deliveries: the HTTP client and the settings it was made with.
pub struct Sender {
    agent: ureq::Agent,
    settings: Settings,
}

impl Sender {
    pub fn new(settings: &Settings) -> Self {
        Sender {
            agent: agent(settings),
            settings: settings.clone(),
        }
    }
}

/// Only `http://` and `https://` URLs with a host.
fn check_url(url: &str) -> Result<(), WebhookError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            WebhookError::Invalid(format!("'{url}' is not an http:// or https:// URL."))
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(WebhookError::Invalid(format!(
            "'{url}' is not a URL with a host."
        )));
    }
    Ok(())
}

/// Why `ip` is not a public address ("a loopback", ...), or None when it is one.
pub fn not_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => not_public_v4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            if let Some(v4) = v6.to_ipv4_mapped() {
                not_public_v4(v4)
            } else if v6.is_loopback() {
                Some("a loopback")
            } else if v6.is_unspecified() {
                Some("an unspecified")
            } else if v6.is_multicast() {
                Some("a multicast")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("a unique-local")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("a link-local")
            } else if s[0] & 0xffc0 == 0xfec0 {
                Some("a site-local")
            } else if s[..6] == [0, 0, 0, 0, 0, 0] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                // IPv4-compatible and NAT64 addresses reach the IPv4 address inside.
                not_public_v4(embedded(s[6], s[7]))
            } else if s[0] == 0x2002 {
                // 6to4 carries the IPv4 address of its relay.
                not_public_v4(embedded(s[1], s[2]))
            } else {
                None
            }
        }
    }
}

fn not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback")
    } else if ip.is_private() {
        Some("a private")
    } else if ip.is_link_local() {
        Some("a link-local")
    } else if a == 0 {
        Some("an unspecified")
    } else if ip.is_multicast() {
        Some("a multicast")
    } else if a >= 240 {
        Some("a reserved")
    } else if a == 100 && b & 0xc0 == 64 {
        Some("a shared (carrier-grade NAT)")
    } else if a == 192 && b == 0 && c == 0 {
        Some("a reserved")
    } else {
        None
    }
}

/// The refusal of a host that reaches `ip`, in words.
fn refusal(host: &str, ip: IpAddr, kind: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let what = if host == ip.to_string() {
        format!("{ip} is {kind} address, not a public address.")
    } else {
        format!("{host} resolves to {ip}, not a public address: {ip} is {kind} address.")
    };
    format!(
        "{what} Webhooks go to public addresses only, unless SYNCDESK_WEBHOOKS_ALLOW_PRIVATE \
         (webhooks_allow_private in the config file) allows a receiver on this host or network."
    )
}

/// The first address of `addrs` that the settings do not allow, as a refusal.
fn check_addresses(
    settings: &Settings,
    host: &str,
    addrs: impl IntoIterator<Item = std::net::SocketAddr>,
) -> Result<(), String> {
    if settings.allow_private {
        return Ok(());
    }
    for addr in addrs {
        if let Some(kind) = not_public(addr.ip()) {
            return Err(refusal(host, addr.ip(), kind));
        }
    }
    Ok(())
}

/// Checks the addresses `url`'s host resolves to now. A name that does not resolve (yet) is
/// accepted: each delivery resolves it again and connects only to what it checked.
fn check_host(url: &str, settings: &Settings) -> Result<(), WebhookError> {
    let unreadable = || WebhookError::Invalid(format!("'{url}' is not a URL with a host."));
    let uri: ureq::http::Uri = url.parse().map_err(|_| unreadable())?;
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(unreadable());
    };
    let target = DefaultResolver::host_and_port(scheme, authority).ok_or_else(unreadable)?;
    if let Ok(addrs) = target.to_socket_addrs() {
        check_addresses(settings, authority.host(), addrs).map_err(WebhookError::Invalid)?;
    }
    Ok(())
}

/// The resolver of the delivery client: the system's, then every address it gave checked,
/// so a name that now resolves to a private address is never connected to.
#[derive(Debug)]
struct CheckedResolver {
    allow_private: bool,
    inner: DefaultResolver,
}

impl Resolver for CheckedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addrs = self.inner.resolve(uri, config, timeout)?;
        let settings = Settings {
            session_key: Vec::new(),
            allow_private: self.allow_private,
        };
        check_addresses(
            &settings,
            uri.host().unwrap_or_default(),
            addrs.iter().copied(),
        )
        .map_err(|why| {
            ureq::Error::Other(Box::new(std::io::Error::other(format!("not sent: {why}"))))
        })?;
        Ok(addrs)
    }
}

/// A secret as it is stored.
fn seal_secret(settings: &Settings, secret: &str) -> Result<String, WebhookError> {
    crate::sources::connector::seal(&settings.session_key, SECRET_PURPOSE, secret)
        .map_err(WebhookError::Invalid)
}

/// A stored secret: encrypted, or in clear as versions before encryption kept it (a
/// `whsec_` prefix, which base64 never starts with).
fn open_secret(settings: &Settings, stored: &str) -> Result<String, String> {
    if stored.starts_with(SECRET_PREFIX) {
        return Ok(stored.to_string());
    }
    crate::sources::connector::unseal(&settings.session_key, SECRET_PURPOSE, stored).ok_or_else(
        || {
            "the webhook's secret cannot be read (was the session key changed?): set the webhook again"
                .to_string()
        },
    )
}

/// Sets (or replaces) a source's webhook; returns its new secret, shown once. Deliveries start
/// with the changes that come after now.
pub fn set(
    conn: &mut DbConn,
    source_id: i64,
    url: &str,
    settings: &Settings,
) -> Result<String, WebhookError> {
    let url = url.trim();
    check_url(url)?;
    check_host(url, settings)?;
    let mut key = [0u8; 24];
    rand::fill(&mut key);
    let secret = format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let sealed = seal_secret(settings, &secret)?;
    feed::sequence(conn)?;
    db::write_tx(conn, |conn| {
        let exists: i64 = sources::table.find(source_id).count().get_result(conn)?;
        if exists == 0 {
            return Err(WebhookError::Invalid(format!(
                "There is no source #{source_id}."
            )));
        }
        let cursor: Option<i64> = source_changes::table
            .filter(source_changes::source_id.eq(source_id))
            .select(diesel::dsl::max(source_changes::seq))
            .first(conn)?;
        diesel::delete(source_webhooks::table.find(source_id)).execute(conn)?;
        stop_pending(conn, source_id, "the webhook's URL was changed")?;
        diesel::insert_into(source_webhooks::table)
            .values((
                source_webhooks::source_id.eq(source_id),
                source_webhooks::url.eq(url),
                source_webhooks::secret.eq(&sealed),
                source_webhooks::cursor.eq(cursor.unwrap_or(0)),
                source_webhooks::created_at.eq(db::now()),
            ))
            .execute(conn)?;
        Ok(secret)
    })
}

/// Encrypts the secrets an older version kept in clear; returns how many.
pub fn seal_clear_secrets(conn: &mut DbConn, settings: &Settings) -> Result<usize, WebhookError> {
    let clear: Vec<(i64, String)> = source_webhooks::table
        .filter(source_webhooks::secret.like(format!("{SECRET_PREFIX}%")))
        .select((source_webhooks::source_id, source_webhooks::secret))
        .load(conn)?;
    let mut sealed = 0;
    for (source_id, secret) in clear {
        let stored = seal_secret(settings, &secret)?;
        // Only if unchanged: a webhook set meanwhile has a new secret, sealed already.
        sealed += diesel::update(
            source_webhooks::table
                .filter(source_webhooks::source_id.eq(source_id))
                .filter(source_webhooks::secret.eq(&secret)),
        )
        .set(source_webhooks::secret.eq(stored))
        .execute(conn)?;
    }
    Ok(sealed)
}

/// Removes a source's webhook (its deliveries stay listed); false when it had none.
pub fn remove(conn: &mut DbConn, source_id: i64) -> QueryResult<bool> {
    db::write_tx(conn, |conn| {
        stop_pending(conn, source_id, "the webhook was removed")?;
        Ok(diesel::delete(source_webhooks::table.find(source_id)).execute(conn)? > 0)
    })
}

/// Deliveries still waiting when a webhook changes are held as failed: they were made for
/// the old URL (and secret), and would keep the new one waiting.
fn stop_pending(conn: &mut DbConn, source_id: i64, why: &str) -> QueryResult<usize> {
    diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::source_id.eq(source_id))
            .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str())),
    )
    .set((
        webhook_deliveries::status.eq(DeliveryStatus::Failed.as_str()),
        webhook_deliveries::next_attempt_at.eq(None::<NaiveDateTime>),
        webhook_deliveries::last_error.eq(Some(why)),
        webhook_deliveries::finished_at.eq(Some(db::now())),
    ))
    .execute(conn)
}

pub fn find(conn: &mut DbConn, source_id: i64) -> QueryResult<Option<Webhook>> {
    source_webhooks::table
        .find(source_id)
        .select(Webhook::as_select())
        .first(conn)
        .optional()
}

/// A source's deliveries, newest first.
pub fn deliveries(conn: &mut DbConn, source_id: i64, limit: i64) -> QueryResult<Vec<Delivery>> {
    webhook_deliveries::table
        .filter(webhook_deliveries::source_id.eq(source_id))
        .order(webhook_deliveries::id.desc())
        .limit(limit)
        .select(Delivery::as_select())
        .load(conn)
}

/// Puts a failed delivery back in line, to be tried at once.
pub fn retry(conn: &mut DbConn, source_id: i64, delivery_id: i64) -> Result<(), WebhookError> {
    let changed = diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::id.eq(delivery_id))
            .filter(webhook_deliveries::source_id.eq(source_id))
            .filter(webhook_deliveries::status.eq(DeliveryStatus::Failed.as_str())),
    )
    .set((
        webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()),
        webhook_deliveries::attempts.eq(0),
        webhook_deliveries::next_attempt_at.eq(Some(db::now())),
        webhook_deliveries::finished_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    if changed == 0 {
        return Err(WebhookError::Invalid(
            "Only a failed delivery can be retried.".into(),
        ));
    }
    Ok(())
}

/// The `webhook-signature` of a message: `v1,` and the base64 HMAC-SHA256, keyed by the
/// secret's base64 part, of `id.timestamp.body`.
pub fn sign(secret: &str, message_id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .ok()?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{message_id}.{timestamp}.{body}").as_bytes());
    Some(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// For each webhook with no delivery waiting, the next batch of its feed, as a delivery due
/// at once. Returns how many it made.
pub fn make_batches(conn: &mut DbConn, now: NaiveDateTime) -> QueryResult<usize> {
    feed::sequence(conn)?;
    let hooks: Vec<Webhook> = source_webhooks::table
        .select(Webhook::as_select())
        .load(conn)?;
    let mut made = 0;
    for hook in hooks {
        let waiting: i64 = webhook_deliveries::table
            .filter(webhook_deliveries::source_id.eq(hook.source_id))
            .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()))
            .count()
            .get_result(conn)?;
        if waiting > 0 {
            continue;
        }
        let entries = feed::page(conn, hook.source_id, hook.cursor, BATCH)?;
        let (Some(first), Some(last)) = (
            entries.first().and_then(|e| e.seq),
            entries.last().and_then(|e| e.seq),
        ) else {
            continue;
        };
        let body = serde_json::json!({
            "type": "changes",
            "source_id": hook.source_id,
            "changes": entries,
            "next": last.to_string(),
        })
        .to_string();
        db::write_tx(conn, |conn| -> QueryResult<()> {
            diesel::insert_into(webhook_deliveries::table)
                .values((
                    webhook_deliveries::source_id.eq(hook.source_id),
                    webhook_deliveries::url.eq(&hook.url),
                    webhook_deliveries::first_cursor.eq(first),
                    webhook_deliveries::last_cursor.eq(last),
                    webhook_deliveries::changes.eq(i32::try_from(entries.len()).unwrap_or(0)),
                    webhook_deliveries::body.eq(&body),
                    webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()),
                    webhook_deliveries::attempts.eq(0),
                    webhook_deliveries::next_attempt_at.eq(Some(now)),
                    webhook_deliveries::created_at.eq(now),
                ))
                .execute(conn)?;
            diesel::update(source_webhooks::table.find(hook.source_id))
                .set(source_webhooks::cursor.eq(last))
                .execute(conn)?;
            Ok(())
        })?;
        made += 1;
    }
    Ok(made)
}

/// How one attempt went: the endpoint's status code (with why it is not a delivery, for a
/// redirect), or why there was none.
type Attempt = Result<(u16, Option<String>), String>;

/// Sends every delivery due at `now`, one attempt each; returns how many it attempted.
pub fn deliver_due(conn: &mut DbConn, sender: &Sender, now: NaiveDateTime) -> QueryResult<usize> {
    let due: Vec<Delivery> = webhook_deliveries::table
        .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()))
        .filter(webhook_deliveries::next_attempt_at.le(now))
        .order(webhook_deliveries::id.asc())
        .limit(50)
        .select(Delivery::as_select())
        .load(conn)?;
    for delivery in &due {
        let secret: Option<String> = source_webhooks::table
            .find(delivery.source_id)
            .select(source_webhooks::secret)
            .first(conn)
            .optional()?;
        let attempt = match secret {
            // The webhook was removed since: nothing to sign with, nowhere to send.
            None => Err("the webhook was removed".to_string()),
            // Signed with the time it is sent: receivers refuse stale timestamps.
            Some(stored) => open_secret(&sender.settings, &stored)
                .and_then(|secret| send(&sender.agent, delivery, &secret, db::now().max(now))),
        };
        record_attempt(conn, delivery, &attempt, now)?;
    }
    Ok(due.len())
}

fn send(agent: &ureq::Agent, delivery: &Delivery, secret: &str, now: NaiveDateTime) -> Attempt {
    let id = delivery.message_id();
    let timestamp = now.and_utc().timestamp();
    let signature =
        sign(secret, &id, timestamp, &delivery.body).ok_or("the secret is not base64")?;
    let response = agent
        .post(&delivery.url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", &timestamp.to_string())
        .header("webhook-signature", &signature)
        .send(&delivery.body)
        .map_err(|e| match e {
            // The resolver's refusal, in its own words.
            ureq::Error::Other(why) => why.to_string(),
            other => other.to_string(),
        })?;
    let code = response.status().as_u16();
    if !(300..400).contains(&code) {
        return Ok((code, None));
    }
    // Following it would re-send the batch elsewhere (as a GET after a 302) and call that a
    // delivery.
    let to = match response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
    {
        Some(to) => format!(
            " (a redirect to {})",
            to.chars().take(LOCATION_CHARS).collect::<String>()
        ),
        None => " (a redirect)".to_string(),
    };
    Ok((
        code,
        Some(format!(
            "the receiver answered {code}{to}; redirects are not followed: set the webhook to the URL that receives the batches"
        )),
    ))
}

fn record_attempt(
    conn: &mut DbConn,
    delivery: &Delivery,
    attempt: &Attempt,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let attempts = delivery.attempts + 1;
    let delivered = matches!(attempt, Ok((code, _)) if (200..300).contains(code));
    let retry_in = usize::try_from(attempts - 1)
        .ok()
        .and_then(|i| RETRY_DELAYS.get(i));
    let (status, next) = match (delivered, retry_in) {
        (true, _) => (DeliveryStatus::Delivered, None),
        (false, Some(seconds)) => (
            DeliveryStatus::Pending,
            Some(now + chrono::Duration::seconds(*seconds)),
        ),
        (false, None) => (DeliveryStatus::Failed, None),
    };
    let (code, error) = match attempt {
        Ok((code, note)) => (
            Some(i32::from(*code)),
            note.as_deref()
                .map(|n| crate::text::storable(n).into_owned()),
        ),
        Err(e) => (None, Some(crate::text::storable(e).into_owned())),
    };
    diesel::update(webhook_deliveries::table.find(delivery.id))
        .set((
            webhook_deliveries::status.eq(status.as_str()),
            webhook_deliveries::attempts.eq(attempts),
            webhook_deliveries::next_attempt_at.eq(next),
            webhook_deliveries::last_status_code.eq(code),
            webhook_deliveries::last_error.eq(error),
            webhook_deliveries::finished_at.eq((status != DeliveryStatus::Pending).then_some(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// An HTTP client that reports every status (a 500 is an answer, not an error), follows no
/// redirect, gives up after `TIMEOUT`, and connects only to addresses the settings allow. No
/// proxy from the environment: the addresses checked are the receiver's own.
fn agent(settings: &Settings) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        CheckedResolver {
            allow_private: settings.allow_private,
            inner: DefaultResolver::default(),
        },
    )
}

/// The delivery thread of `serve`: numbers the feed, makes batches, sends what is due, and
/// once an hour prunes feed entries older than the retention.
pub fn spawn_worker(
    pool: DbPool,
    retention_days: u32,
    settings: &Settings,
) -> std::io::Result<Worker> {
    let sender = Sender::new(settings);
    let mut last_prune: Option<std::time::Instant> = None;
    let mut secrets_sealed = false;
    Worker::spawn("feed-worker", move || {
        let Ok(mut conn) = pool.get() else {
            return IDLE;
        };
        // Secrets kept in clear by older versions are encrypted once, when `serve` starts.
        if !secrets_sealed {
            match seal_clear_secrets(&mut conn, &sender.settings) {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(webhooks = n, "webhook secrets encrypted");
                    }
                    secrets_sealed = true;
                }
                Err(e) => tracing::warn!(error = %e, "webhook secrets"),
            }
        }
        let now = db::now();
        let busy =
            match make_batches(&mut conn, now).and_then(|_| deliver_due(&mut conn, &sender, now)) {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook deliveries");
                    false
                }
            };
        if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3_600)) {
            let before = now - chrono::Duration::days(i64::from(retention_days));
            match feed::prune(&mut conn, before) {
                Ok(n) if n > 0 => tracing::info!(entries = n, "change feed pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "change feed pruning"),
            }
            last_prune = Some(std::time::Instant::now());
        }
        if busy {
            Duration::ZERO
        } else {
            IDLE
        }
    })
}
