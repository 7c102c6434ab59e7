//! The command line: every command reads the same configuration (file, then environment).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth::model::Role;
use crate::auth::service::{self, NewUser};
use crate::config::Config;
use crate::{build_app, AppState, StartError};

#[derive(Debug, Parser)]
#[command(
    name = "syncdesk",
    version,
    about = "Keeps contact and company records in step"
)]
pub struct Cli {
    /// A TOML configuration file (keys: bind, database_url, data_dir, session_key,
    /// secure_cookies). Environment variables override it.
    #[arg(long, global = true, env = "SYNCDESK_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web console (migrates the database first).
    Serve {
        /// Address to listen on; overrides SYNCDESK_BIND.
        #[arg(long)]
        bind: Option<String>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Load a small demo data set (companies, contacts, custom fields). Safe to run twice.
    Demo,
    /// Manage user accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input (or prompted on a terminal).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["admin", "editor", "viewer"])]
        role: String,
        /// Display name (defaults to the part of the email before the @).
        #[arg(long, default_value = "")]
        name: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Auth(#[from] service::AuthError),
    #[error("{0}")]
    Input(String),
    #[error("cannot listen on {bind}: {source}")]
    Bind {
        bind: String,
        source: std::io::Error,
    },
    #[error("server stopped: {0}")]
    Server(std::io::Error),
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { bind } => serve(config, bind),
        Command::Migrate => migrate(config),
        Command::Demo => demo(config),
        Command::User {
            command: UserCommand::Create { email, role, name },
        } => create_user(config, email, &role, name),
    }
}

fn serve(mut config: Config, bind: Option<String>) -> Result<(), CliError> {
    if let Some(bind) = bind {
        config.bind = bind;
    }
    let bind = config.bind.clone();
    let database = crate::db::DbTarget::parse(&config.database_url)?;
    let state = AppState::open(config)?;
    actix_web::rt::System::new().block_on(async move {
        let server = actix_web::HttpServer::new(move || build_app(state.clone()))
            .bind(&bind)
            .map_err(|source| CliError::Bind {
                bind: bind.clone(),
                source,
            })?;
        let where_ = match &database {
            crate::db::DbTarget::Sqlite(path) => format!("SQLite file {}", path.display()),
            crate::db::DbTarget::Postgres(_) => "PostgreSQL".to_string(),
        };
        println!("syncdesk is running on http://{bind} with {where_}. Press Ctrl-C to stop.");
        tracing::info!(%bind, "listening");
        server.run().await.map_err(CliError::Server)
    })
}

fn migrate(config: Config) -> Result<(), CliError> {
    config.ensure_data_dir()?;
    let pool = crate::db::connect(&config.database_url)?;
    let mut conn = pool.get().map_err(crate::db::DbError::from)?;
    let applied = crate::db::run_migrations(&mut conn)?;
    if applied.is_empty() {
        println!("The database is up to date.");
    } else {
        for version in &applied {
            println!("applied {version}");
        }
        println!("{} migration(s) applied.", applied.len());
    }
    Ok(())
}

fn demo(config: Config) -> Result<(), CliError> {
    let country = config.default_country;
    let state = AppState::open(config)?;
    let mut conn = state.pool.get().map_err(crate::db::DbError::from)?;
    let summary = crate::records::demo::load(&mut conn, country)
        .map_err(|e| CliError::Input(format!("the demo data could not be loaded: {e}")))?;
    println!(
        "Demo data loaded: {} field(s) and {} record(s) added.",
        summary.fields_added, summary.records_added
    );
    Ok(())
}

fn create_user(config: Config, email: String, role: &str, name: String) -> Result<(), CliError> {
    let role = Role::parse(role).ok_or_else(|| {
        CliError::Input(format!("'{role}' is not a role: admin, editor or viewer"))
    })?;
    let password = read_password()?;
    let state = AppState::open(config)?;
    let mut conn = state.pool.get().map_err(crate::db::DbError::from)?;
    let user = service::create_user(
        &mut conn,
        &NewUser {
            email,
            display_name: name,
            password,
            role,
        },
    )?;
    println!(
        "Created {} ({}) with id {}.",
        user.email, user.role, user.id
    );
    Ok(())
}

/// On a terminal: asked twice without echo. Otherwise: the first line of standard input.
fn read_password() -> Result<String, CliError> {
    let input_error = |e: std::io::Error| CliError::Input(format!("cannot read the password: {e}"));
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(input_error)?;
        let second = rpassword::prompt_password("Password again: ").map_err(input_error)?;
        if first != second {
            return Err(CliError::Input("the two passwords differ".into()));
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(input_error)?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(CliError::Input(
            "no password on standard input: pipe one in, e.g. `echo \"$PASSWORD\" | syncdesk user create ...`"
                .into(),
        ));
    }
    Ok(password)
}
