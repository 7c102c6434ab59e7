//! Configuration: an optional TOML file, then environment variables, then command-line flags.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::fields::validate::PhoneCountry;

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_MAX_UPLOAD_MB: u64 = 10;
pub const DEFAULT_MAX_IMPORT_MB: u64 = 200;
pub const DEFAULT_SESSION_IDLE_HOURS: u32 = 8;
pub const DEFAULT_API_REQUESTS_PER_MINUTE: u32 = 600;
pub const DEFAULT_FEED_RETENTION_DAYS: u32 = 30;
const SESSION_KEY_FILE: &str = "session.key";
/// actix-session signs and encrypts cookies with a 64-byte key.
const SESSION_KEY_BYTES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    File { path: String, message: String },
    #[error("{name} is invalid: {message}")]
    Invalid { name: &'static str, message: String },
    #[error("cannot use data folder {path}: {message}")]
    DataDir { path: String, message: String },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    pub database_url: String,
    pub data_dir: PathBuf,
    /// Hex or raw secret; `None` means "generate and keep one in the data folder".
    pub session_key: Option<String>,
    pub secure_cookies: bool,
    /// Country assumed for phone numbers without an international prefix.
    pub default_country: PhoneCountry,
    /// Largest accepted document upload, in bytes.
    pub max_upload_bytes: usize,
    /// Largest accepted import file uploaded in the console, in bytes.
    pub max_import_bytes: usize,
    /// A session unused this long ends (besides the absolute limit of 7 days).
    pub session_idle_hours: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client (sign-in throttling).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Requests per minute each API token may make; more are answered 429.
    pub api_requests_per_minute: u32,
    /// Change feed entries older than this are pruned.
    pub feed_retention_days: u32,
    /// Web requests' database tasks running at once; the others wait their turn in arrival
    /// order. `None`: twice the machine's cores.
    pub db_concurrency: Option<u32>,
    /// Webhooks may be sent to private, loopback and link-local addresses (a receiver on
    /// this host or network); off, only public addresses are reached.
    pub webhooks_allow_private: bool,
}

/// Keys of the optional config file; each one has the environment variable named in `load`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<String>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    session_key: Option<String>,
    secure_cookies: Option<bool>,
    default_country: Option<String>,
    max_upload_mb: Option<u64>,
    max_import_mb: Option<u64>,
    session_idle_hours: Option<u32>,
    trusted_proxies: Option<Vec<String>>,
    api_requests_per_minute: Option<u32>,
    feed_retention_days: Option<u32>,
    db_concurrency: Option<u32>,
    webhooks_allow_private: Option<bool>,
}

impl Config {
    /// Reads `file` (if given) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_sources(file, |name| std::env::var(name).ok())
    }

    /// The same as `load`, with the environment given as a function (tests use this).
    pub fn from_sources(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let from_file = match file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());

        let data_dir = env("SYNCDESK_DATA_DIR")
            .map(PathBuf::from)
            .or(from_file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database_url = env("DATABASE_URL")
            .or(from_file.database_url)
            .unwrap_or_else(|| crate::db::default_sqlite_url(&data_dir));
        crate::db::DbTarget::parse(&database_url).map_err(|e| ConfigError::Invalid {
            name: "DATABASE_URL",
            message: e.to_string(),
        })?;
        let secure_cookies = match env("SYNCDESK_SECURE_COOKIES") {
            Some(v) => parse_bool("SYNCDESK_SECURE_COOKIES", &v)?,
            None => from_file.secure_cookies.unwrap_or(false),
        };
        let webhooks_allow_private = match env("SYNCDESK_WEBHOOKS_ALLOW_PRIVATE") {
            Some(v) => parse_bool("SYNCDESK_WEBHOOKS_ALLOW_PRIVATE", &v)?,
            None => from_file.webhooks_allow_private.unwrap_or(false),
        };
        let bind = env("SYNCDESK_BIND")
            .or(from_file.bind)
            .unwrap_or_else(|| DEFAULT_BIND.to_string());
        let session_key = env("SYNCDESK_SESSION_KEY").or(from_file.session_key);
        if let Some(key) = &session_key {
            decode_session_key(key)?;
        }
        let default_country = match env("SYNCDESK_DEFAULT_COUNTRY").or(from_file.default_country) {
            Some(code) => PhoneCountry::parse(&code).map_err(|message| ConfigError::Invalid {
                name: "SYNCDESK_DEFAULT_COUNTRY",
                message,
            })?,
            None => PhoneCountry::default(),
        };
        let megabytes = |name: &'static str, default: u64| match env(name) {
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(to_bytes)
                .ok_or_else(|| ConfigError::Invalid {
                    name,
                    message: format!("'{v}' is not a positive whole number of megabytes"),
                }),
            None => Ok(to_bytes(default)),
        };
        let max_upload_bytes = megabytes(
            "SYNCDESK_MAX_UPLOAD_MB",
            from_file.max_upload_mb.unwrap_or(DEFAULT_MAX_UPLOAD_MB),
        )?;
        let max_import_bytes = megabytes(
            "SYNCDESK_MAX_IMPORT_MB",
            from_file.max_import_mb.unwrap_or(DEFAULT_MAX_IMPORT_MB),
        )?;
        let positive = |name: &'static str, unit: &str, from_file: Option<u32>, default: u32| {
            match env(name) {
                Some(v) => v
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| ConfigError::Invalid {
                        name,
                        message: format!("'{v}' is not a positive whole number of {unit}"),
                    }),
                None => Ok(from_file.unwrap_or(default)),
            }
        };
        let session_idle_hours = positive(
            "SYNCDESK_SESSION_IDLE_HOURS",
            "hours",
            from_file.session_idle_hours,
            DEFAULT_SESSION_IDLE_HOURS,
        )?;
        let api_requests_per_minute = positive(
            "SYNCDESK_API_REQUESTS_PER_MINUTE",
            "requests",
            from_file.api_requests_per_minute,
            DEFAULT_API_REQUESTS_PER_MINUTE,
        )?;
        let feed_retention_days = positive(
            "SYNCDESK_FEED_RETENTION_DAYS",
            "days",
            from_file.feed_retention_days,
            DEFAULT_FEED_RETENTION_DAYS,
        )?;
        let db_concurrency = match env("SYNCDESK_DB_CONCURRENCY") {
            Some(_) => Some(positive("SYNCDESK_DB_CONCURRENCY", "tasks", None, 1)?),
            None => from_file.db_concurrency.filter(|n| *n > 0),
        };
        let trusted_proxies = match env("SYNCDESK_TRUSTED_PROXIES") {
            Some(list) => list.split(',').map(str::to_string).collect(),
            None => from_file.trusted_proxies.unwrap_or_default(),
        }
        .iter()
        .map(|ip| {
            ip.trim()
                .parse::<std::net::IpAddr>()
                .map_err(|_| ConfigError::Invalid {
                    name: "SYNCDESK_TRUSTED_PROXIES",
                    message: format!("'{ip}' is not an IP address"),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            bind,
            database_url,
            data_dir,
            session_key,
            secure_cookies,
            default_country,
            max_upload_bytes,
            max_import_bytes,
            session_idle_hours,
            trusted_proxies,
            api_requests_per_minute,
            feed_retention_days,
            db_concurrency,
            webhooks_allow_private,
        })
    }

    /// Creates the data folder if needed, for this user alone (0700).
    pub fn ensure_data_dir(&self) -> Result<(), ConfigError> {
        create_private_dir(&self.data_dir).map_err(|e| ConfigError::DataDir {
            path: self.data_dir.display().to_string(),
            message: e.to_string(),
        })
    }

    /// The configured session key, or the one kept in the data folder (made on first start),
    /// so that a restart, or another instance sharing the folder, keeps people signed in.
    pub fn session_key_bytes(&self) -> Result<Vec<u8>, ConfigError> {
        if let Some(key) = &self.session_key {
            return decode_session_key(key);
        }
        self.ensure_data_dir()?;
        let path = self.data_dir.join(SESSION_KEY_FILE);
        let data_dir_error = |e: std::io::Error| ConfigError::DataDir {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => decode_session_key(text.trim()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; SESSION_KEY_BYTES];
                rand::fill(&mut key[..]);
                write_private(&path, &hex::encode(&key)).map_err(data_dir_error)?;
                Ok(key)
            }
            Err(e) => Err(data_dir_error(e)),
        }
    }
}

fn to_bytes(megabytes: u64) -> usize {
    usize::try_from(megabytes.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(ConfigError::Invalid {
            name,
            message: format!("'{other}' is not one of true/false, yes/no, on/off, 1/0"),
        }),
    }
}

/// A key is 128 hex characters (64 bytes) or any secret string of at least 64 bytes.
fn decode_session_key(key: &str) -> Result<Vec<u8>, ConfigError> {
    let bytes = hex::decode(key).unwrap_or_else(|_| key.as_bytes().to_vec());
    if bytes.len() < SESSION_KEY_BYTES {
        return Err(ConfigError::Invalid {
            name: "SYNCDESK_SESSION_KEY",
            message: format!(
                "it must hold at least {SESSION_KEY_BYTES} bytes (for example 128 hex characters \
                 from `openssl rand -hex 64`)"
            ),
        });
    }
    Ok(bytes)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = private_options();
    options.create_new(true);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())
}

/// Writing, and on Unix a new file is 0600 whatever the umask: what the console writes
/// (its database, reports, notes) holds people's data.
fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Creates (or empties) a file only this user can read: 0600 when it is new.
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = private_options();
    options.create(true).truncate(true);
    options.open(path)
}

/// Creates a file only this user can read, unless it exists (which is left as it is).
pub fn touch_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = private_options();
    options.create_new(true);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates a folder and its missing parents, each only this user can open (0700 on Unix,
/// whatever the umask). A folder that exists is left as it is.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_use_sqlite_in_the_data_folder() {
        let config = Config::from_sources(None, env_of(&[])).unwrap();
        assert_eq!(config.bind, "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.database_url, "sqlite://./data/syncdesk.db");
        assert!(!config.secure_cookies);
        assert!(!config.webhooks_allow_private);
    }

    #[test]
    fn webhooks_to_private_addresses_are_an_admin_setting() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("syncdesk.toml");
        std::fs::write(&file, "webhooks_allow_private = true\n").unwrap();
        let config = Config::from_sources(Some(&file), env_of(&[])).unwrap();
        assert!(config.webhooks_allow_private);
        let config = Config::from_sources(
            Some(&file),
            env_of(&[("SYNCDESK_WEBHOOKS_ALLOW_PRIVATE", "no")]),
        )
        .unwrap();
        assert!(!config.webhooks_allow_private);
    }

    #[test]
    fn unknown_database_scheme_is_refused_with_its_name() {
        let err = Config::from_sources(
            None,
            env_of(&[("DATABASE_URL", "mysql://root@localhost/x")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
        assert!(err.contains("mysql://"), "{err}");
    }

    #[test]
    fn short_session_key_and_bad_flag_are_refused() {
        let err = Config::from_sources(None, env_of(&[("SYNCDESK_SESSION_KEY", "short")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("SYNCDESK_SESSION_KEY"), "{err}");
        let err = Config::from_sources(None, env_of(&[("SYNCDESK_SECURE_COOKIES", "maybe")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'maybe'"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("syncdesk.toml");
        std::fs::write(&file, "bind = \"0.0.0.0:9000\"\nsecure_cookies = true\n").unwrap();
        let config =
            Config::from_sources(Some(&file), env_of(&[("SYNCDESK_SECURE_COOKIES", "off")]))
                .unwrap();
        assert_eq!(config.bind, "0.0.0.0:9000");
        assert!(!config.secure_cookies);
    }

    #[test]
    fn unknown_file_key_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("syncdesk.toml");
        std::fs::write(&file, "bnd = \"x\"\n").unwrap();
        let err = Config::from_sources(Some(&file), env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bnd"), "{err}");
    }

    #[test]
    fn generated_session_key_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = Config {
            bind: DEFAULT_BIND.into(),
            database_url: String::new(),
            data_dir: data,
            session_key: None,
            secure_cookies: false,
            default_country: PhoneCountry::default(),
            max_upload_bytes: 1024,
            max_import_bytes: 1024,
            session_idle_hours: DEFAULT_SESSION_IDLE_HOURS,
            trusted_proxies: Vec::new(),
            api_requests_per_minute: DEFAULT_API_REQUESTS_PER_MINUTE,
            feed_retention_days: DEFAULT_FEED_RETENTION_DAYS,
            db_concurrency: None,
            webhooks_allow_private: false,
        };
        let first = config.session_key_bytes().unwrap();
        let second = config.session_key_bytes().unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(first, second);
    }
}
