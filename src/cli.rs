//! The command line: every command reads the same configuration (file, then environment).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth::model::Role;
use crate::auth::service::{self, NewUser};
use crate::config::Config;
use crate::fields::model::RecordKind;
use crate::fields::validate::PhoneCountry;
use crate::sources::model::OnInvalid;
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
    /// Manage sources (external systems) for scripted set-ups.
    Source {
        #[command(subcommand)]
        command: SourceCommand,
    },
    /// Import a CSV file through a source (with a progress bar and a summary).
    Import(ImportArgs),
    /// Carry on an import run of the command line that was interrupted (in the foreground).
    Resume {
        /// The run's number.
        run: i64,
    },
    /// Cancel a queued or running import run; rows imported before stay (undo takes them back).
    Cancel {
        /// The run's number.
        run: i64,
    },
    /// Undo an applied import run (in the foreground, with a progress bar); values edited
    /// since the import are left as they are and listed.
    Undo {
        /// The run's number (shown by `import` and on the run page).
        run: i64,
    },
    /// Read records from a script's point of view.
    Records {
        #[command(subcommand)]
        command: RecordsCommand,
    },
    /// Manage user accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once: only its hash is kept).
    Create {
        #[arg(long)]
        name: String,
        /// records:read, rows:write, changes:read or activities:write; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Restrict the token to one source (its id or name).
        #[arg(long)]
        source: Option<String>,
    },
    /// Revoke a token: its next request is refused.
    Revoke {
        /// The token's number (shown by `token list` and on the tokens page).
        id: i64,
    },
    /// List tokens (never their secrets).
    List,
}

// Parsed once per run: the size of `Add` costs nothing worth boxing its fields for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Create a source with its mapping: --map 'COLUMN=field[:TO_RECORD[:TO_SOURCE]]' (rules:
    /// always, fill_blanks, review, never; inward default always, outward default never);
    /// --map 'tag1=+tag1:number' also creates the custom field tag1 (a number).
    Add {
        name: String,
        /// What the rows are: contacts, companies, or activities of contacts.
        #[arg(long, value_parser = ["contact", "company", "activity"])]
        kind: String,
        /// For --kind activity: the contact source (id or name) whose ids the files name
        /// (mapped as contact_external_id).
        #[arg(long)]
        contacts_from: Option<String>,
        /// For --kind activity: the type of rows when the file has no type column.
        #[arg(long)]
        activity_type: Option<String>,
        /// The column carrying the external system's id.
        #[arg(long, required_unless_present = "match_by")]
        id_column: Option<String>,
        /// For files without an id column: the fields whose values identify a row
        /// (email, phone, name,email).
        #[arg(long, conflicts_with = "id_column", value_delimiter = ',')]
        match_by: Vec<String>,
        /// Country of phone numbers written without one (two letters, such as FR).
        #[arg(long)]
        country: Option<String>,
        /// Propose the mapping from this file's header and first rows (printed column by
        /// column); --map lines are added to it and win for their columns.
        #[arg(long)]
        propose_from: Option<PathBuf>,
        /// Import the files that appear in this folder (absolute path) by themselves, while
        /// `serve` runs; they then move to done/ or failed/ beside them with their report.
        #[arg(long)]
        watch: Option<PathBuf>,
        #[arg(long, default_value = "full", value_parser = ["full", "delta"])]
        mode: String,
        #[arg(long = "map")]
        maps: Vec<String>,
        /// A row with an invalid value: import it without that field (skip_field) or reject
        /// the whole row (reject_row).
        #[arg(long, default_value = "skip_field", value_parser = ["skip_field", "reject_row"])]
        on_invalid: String,
    },
    /// List sources with their mapping.
    List,
    /// Send a source's change feed to a URL by signed webhook (prints the signing secret
    /// once), or stop with --off.
    Webhook {
        /// The source's id or name.
        source: String,
        /// http:// or https:// URL that receives the batches.
        #[arg(required_unless_present = "off")]
        url: Option<String>,
        #[arg(long, conflicts_with = "url")]
        off: bool,
    },
    /// Print a source's outbound change feed as JSON lines, oldest first; pass the last
    /// `cursor` printed as --after to get only what came since.
    Changes {
        /// The source's id or name.
        source: String,
        #[arg(long, default_value = "0")]
        after: i64,
        /// At most this many changes.
        #[arg(long, default_value_t = 10_000)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecordsCommand {
    /// Every record of a kind with id, fields, owner, forced manual, links and flags.
    Export {
        #[arg(long, value_parser = ["contact", "company"])]
        kind: String,
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
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
    #[error("cannot start a background worker: {0}")]
    Worker(std::io::Error),
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { bind } => serve(config, bind),
        Command::Migrate => migrate(config),
        Command::Demo => demo(config),
        Command::Source { command } => source(config, command),
        Command::Import(args) => import(config, args),
        Command::Undo { run } => undo(config, run),
        Command::Resume { run } => resume(config, run),
        Command::Cancel { run } => cancel(config, run),
        Command::Records {
            command: RecordsCommand::Export { kind, format },
        } => export_records(config, &kind, &format),
        Command::User {
            command: UserCommand::Create { email, role, name },
        } => create_user(config, email, &role, name),
        Command::Token { command } => token(config, command),
    }
}

fn serve(mut config: Config, bind: Option<String>) -> Result<(), CliError> {
    if let Some(bind) = bind {
        config.bind = bind;
    }
    let bind = config.bind.clone();
    let database = crate::db::DbTarget::parse(&config.database_url)?;
    let state = AppState::open(config)?;
    // Held until the server stops; dropping them ends the loops.
    let _workers = [
        crate::sync::webhooks::spawn_worker(
            state.pool.clone(),
            state.config.feed_retention_days,
            &crate::sync::webhooks::Settings::new(
                &state.secret(),
                state.config.webhooks_allow_private,
            ),
        ),
        crate::sync::jobs::spawn_worker(
            state.pool.clone(),
            state.config.data_dir.clone(),
            state.config.default_country,
        ),
        crate::sync::watch::spawn_automatic_imports(
            state.pool.clone(),
            state.config.data_dir.clone(),
            state.config.max_import_bytes as u64,
            state.secret(),
        ),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(CliError::Worker)?;
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
    let data_dir = state.config.data_dir.clone();
    let summary = crate::demo::load(&state.pool, &data_dir, country)
        .map_err(|e| CliError::Input(format!("the demo data could not be loaded: {e}")))?;
    println!(
        "Demo data loaded: {} field(s), {} record(s), {} source(s) with {} import run(s), {} process(es) with a submitted application, {} template(s) and {} activit(ies) added.",
        summary.fields, summary.records, summary.sources, summary.runs, summary.processes, summary.templates, summary.activities
    );
    println!("Sign in, then see: Sources (Practice manager's runs: converted, forced manual, proposed), Desynchronised (pending proposals), Processes (Customer onboarding), Templates (Account review), and Ada Lovelace's page (owner, links, activities).");
    Ok(())
}

fn source(config: Config, command: SourceCommand) -> Result<(), CliError> {
    use crate::sources::service as sources;
    let state = AppState::open(config)?;
    let mut conn = state.pool.get().map_err(crate::db::DbError::from)?;
    match command {
        SourceCommand::Add {
            name,
            kind,
            contacts_from,
            activity_type,
            id_column,
            match_by,
            country,
            propose_from,
            watch,
            mode,
            maps,
            on_invalid,
        } => {
            let on_invalid = OnInvalid::parse(&on_invalid).ok_or_else(|| {
                CliError::Input(format!("'{on_invalid}' is not skip_field or reject_row"))
            })?;
            let (mut lines, new_fields): (Vec<_>, Vec<_>) = maps
                .iter()
                .map(|m| sources::parse_map_arg(m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(CliError::Input)?
                .into_iter()
                .unzip();
            let new_fields: Vec<_> = new_fields.into_iter().flatten().collect();
            let activities = if kind == "activity" {
                Some(sources::ActivitySettings {
                    contacts_from: match contacts_from {
                        Some(text) => Some(find_source(&mut conn, &text)?.id),
                        None => None,
                    },
                    default_type: activity_type.unwrap_or_default(),
                })
            } else {
                None
            };
            let kind = match activities {
                Some(_) => RecordKind::Contact,
                None => RecordKind::parse(&kind)
                    .ok_or_else(|| CliError::Input(format!("'{kind}' is not a record kind")))?,
            };
            let id_column = id_column.unwrap_or_default();
            if let Some(file) = propose_from {
                let proposal_country = match &country {
                    Some(code) => PhoneCountry::parse(code).map_err(CliError::Input)?,
                    None => state.config.default_country,
                };
                let proposed = propose_for_file(
                    &mut conn,
                    &file,
                    kind,
                    activities.is_some(),
                    &id_column,
                    proposal_country,
                )?;
                for line in proposed {
                    let field = line.field_key.clone();
                    println!(
                        "{:<40} -> {:<20} {}{}",
                        line.column,
                        field.as_deref().unwrap_or("(not mapped)"),
                        line.why,
                        if line.sample.is_empty() {
                            String::new()
                        } else {
                            format!(" (e.g. {})", line.sample)
                        }
                    );
                    let overridden = lines.iter().any(|l| {
                        crate::sources::model::same_column(&l.column_name, &line.column)
                            || Some(&l.field_key) == field.as_ref()
                    });
                    if let (Some(field_key), false) = (field, overridden) {
                        lines.push(crate::sources::model::MappingInput {
                            column_name: line.column,
                            field_key,
                            to_record: crate::rules::Rule::Always,
                            to_source: crate::rules::Rule::Never,
                            blanks_clear: false,
                        });
                    }
                }
            }
            let created =
                crate::db::write_tx(&mut conn, |conn| -> Result<_, sources::SourceError> {
                    let source = sources::create(
                        conn,
                        &sources::SourceInput {
                            name,
                            kind,
                            id_column,
                            match_by,
                            full_mode: mode == "full",
                            country: country.unwrap_or_default(),
                            watch_dir: watch
                                .map(|w| w.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            activities,
                        },
                    )?;
                    let mapping =
                        sources::create_fields_and_map(conn, source.id, &new_fields, &lines)?;
                    let source = sources::set_on_invalid(conn, source.id, on_invalid)?;
                    Ok((source, mapping))
                })
                .map_err(|e| CliError::Input(e.to_string()))?;
            println!(
                "Created source {} (#{}, {}, {}, {} mode, invalid values: {}) with {} mapped column(s).",
                created.0.name, created.0.id, created.0.content_description(), created.0.key_description(), created.0.mode,
                created.0.on_invalid().describe(), created.1.len()
            );
        }
        SourceCommand::Webhook { source, url, off } => {
            use crate::sync::webhooks;
            let source = find_source(&mut conn, &source)?;
            if off {
                let removed =
                    webhooks::remove(&mut conn, source.id).map_err(crate::db::DbError::from)?;
                println!(
                    "{}",
                    if removed {
                        format!("Source {} has no webhook any more.", source.name)
                    } else {
                        format!("Source {} had no webhook.", source.name)
                    }
                );
            } else {
                let url = url.unwrap_or_default();
                let settings =
                    webhooks::Settings::new(&state.secret(), state.config.webhooks_allow_private);
                let secret = webhooks::set(&mut conn, source.id, &url, &settings)
                    .map_err(|e| CliError::Input(e.to_string()))?;
                eprintln!(
                    "Source {} sends its change feed to {url}. Its signing secret, shown only now:",
                    source.name
                );
                println!("{secret}");
            }
        }
        SourceCommand::Changes {
            source,
            after,
            limit,
        } => {
            let source = find_source(&mut conn, &source)?;
            let db = |e| CliError::from(crate::db::DbError::from(e));
            crate::sync::feed::sequence(&mut conn).map_err(db)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let (mut after, mut left) = (after, limit.max(0));
            while left > 0 {
                let page = crate::sync::feed::page(&mut conn, source.id, after, left.min(1_000))
                    .map_err(db)?;
                let Some(last) = page.last().and_then(|e| e.seq) else {
                    break;
                };
                for entry in &page {
                    let line =
                        serde_json::to_string(entry).map_err(|e| CliError::Input(e.to_string()))?;
                    writeln!(out, "{line}").map_err(|e| CliError::Input(e.to_string()))?;
                }
                left -= page.len() as i64;
                after = last;
            }
            out.flush().map_err(|e| CliError::Input(e.to_string()))?;
        }
        SourceCommand::List => {
            let all = sources::list(&mut conn).map_err(crate::db::DbError::from)?;
            if all.is_empty() {
                println!("No sources yet: add one with `syncdesk source add`.");
            }
            for source in all {
                println!(
                    "#{} {} ({}, {}, {} mode, {})",
                    source.id,
                    source.name,
                    source.kind,
                    source.status,
                    source.mode,
                    source.key_description()
                );
                for m in sources::mapping(&mut conn, source.id).map_err(crate::db::DbError::from)? {
                    let clear = if m.blanks_clear { ", blanks clear" } else { "" };
                    println!(
                        "    {} -> {} (to record: {}, to source: {}{clear})",
                        m.column_name, m.field_key, m.to_record, m.to_source
                    );
                }
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn undo(config: Config, run_id: i64) -> Result<(), CliError> {
    use crate::records::model::Actor;
    use crate::sync::{engine, undo};
    let state = AppState::open(config)?;
    let mut conn = state.pool.get().map_err(crate::db::DbError::from)?;
    undo::request_undo(&mut conn, run_id, &Actor::system("command line"), true)
        .map_err(|e| CliError::Input(e.to_string()))?;
    let total = engine::load_run(&mut conn, run_id)
        .map_err(crate::db::DbError::from)?
        .map(|run| run.rows_total)
        .unwrap_or(0);
    let bar = indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(0));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} report lines ({eta} left)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let left = undo::continue_undo(&mut conn, run_id, &mut |done| {
        bar.set_position(u64::try_from(done).unwrap_or(0));
    });
    bar.finish_and_clear();
    let left = left.map_err(|e| CliError::Input(format!("undo of run #{run_id} failed: {e}")))?;
    println!("Run #{run_id} undone.");
    if !left.is_empty() {
        println!("Left as they are ({}):", left.len());
        for line in left {
            println!("  {line}");
        }
    }
    Ok(())
}

/// `syncdesk import`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The source's name.
    source: String,
    file: PathBuf,
    /// Report what would happen; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also write the run report as CSV (line,external_id,outcome,record_id,reason,changes).
    #[arg(long)]
    report: Option<PathBuf>,
    /// utf-8, utf-8-bom or windows-1252 (detected when not given).
    #[arg(long)]
    encoding: Option<String>,
    /// comma, semicolon or tab (detected when not given).
    #[arg(long)]
    delimiter: Option<String>,
    /// In full mode, flag the records the file lacks even when they are more than a tenth of
    /// the source's (without it such a run flags nothing and says how many it would have).
    #[arg(long)]
    confirm_flagging: bool,
}

fn import(config: Config, args: ImportArgs) -> Result<(), CliError> {
    use crate::sync::{csvfile, jobs};
    let ImportArgs {
        source: source_name,
        file,
        dry_run,
        report,
        encoding,
        delimiter,
        confirm_flagging: flag_confirmed,
    } = args;
    let (source_name, file) = (source_name.as_str(), file.as_path());
    let data_dir = config.data_dir.clone();
    let state = AppState::open(config)?;
    let mut conn = state.pool.get().map_err(crate::db::DbError::from)?;
    let source = crate::sources::service::find_by_name(&mut conn, source_name)
        .map_err(crate::db::DbError::from)?
        .ok_or_else(|| {
            CliError::Input(format!(
                "there is no source named '{source_name}' (see `syncdesk source list`)"
            ))
        })?;
    // Read first: a second import of a busy source is told who holds it, without queueing
    // for SQLite's write lock behind the running import.
    if let Some(refusal) =
        jobs::already_running(&mut conn, &source).map_err(crate::db::DbError::from)?
    {
        return Err(CliError::Input(refusal.to_string()));
    }
    let input = std::fs::File::open(file)
        .map_err(|e| CliError::Input(format!("cannot open {}: {e}", file.display())))?;
    let (mut format, doubt) =
        csvfile::detect_file(file).map_err(|e| CliError::Input(e.to_string()))?;
    if let (Some(doubt), None) = (doubt, &encoding) {
        return Err(CliError::Input(format!(
            "{doubt} Nothing was imported: give --encoding utf-8 or --encoding windows-1252."
        )));
    }
    if let Some(encoding) = encoding {
        format.encoding = csvfile::TextEncoding::parse(&encoding).ok_or_else(|| {
            CliError::Input(format!(
                "'{encoding}' is not utf-8, utf-8-bom or windows-1252"
            ))
        })?;
    }
    if let Some(delimiter) = delimiter {
        format.delimiter = csvfile::FileFormat::parse_delimiter(&delimiter).ok_or_else(|| {
            CliError::Input(format!("'{delimiter}' is not comma, semicolon or tab"))
        })?;
    }
    let sha =
        jobs::store_file(&data_dir, input, u64::MAX).map_err(|e| CliError::Input(e.to_string()))?;
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let run_id = jobs::enqueue_claimed(
        &mut conn,
        &jobs::NewRun {
            source: &source,
            file_name: &file_name,
            sha256: &sha,
            format,
            dry_run,
            plan_of: None,
            flag_confirmed,
            user_id: None,
            user_label: "command line",
        },
    )
    .map_err(|e| CliError::Input(e.to_string()))?;
    drop(conn);
    eprintln!(
        "{} {} into {} ({}, {})",
        if dry_run { "Dry run of" } else { "Importing" },
        file.display(),
        source.name,
        format.encoding.label(),
        format.delimiter_label()
    );
    run_in_foreground(&state, run_id, report)
}

/// Runs a claimed import with a progress bar, then prints its summary.
fn run_in_foreground(
    state: &AppState,
    run_id: i64,
    report: Option<PathBuf>,
) -> Result<(), CliError> {
    use crate::sync::{engine, jobs, report};
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} rows ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let result = jobs::process(
        &state.pool,
        run_id,
        &state.config.data_dir,
        state.config.default_country,
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    let mut conn = state.pool.get().map_err(crate::db::DbError::from)?;
    if let Some(path) = report {
        let out = crate::config::create_private_file(&path)
            .map_err(|e| CliError::Input(format!("cannot write {}: {e}", path.display())))?;
        report::report_csv(&mut conn, run_id, std::io::BufWriter::new(out))
            .map_err(|e| CliError::Input(e.to_string()))?;
        eprintln!("Report written to {}.", path.display());
    }
    result.map_err(|e| CliError::Input(format!("import run #{run_id} failed: {e}")))?;
    let run = engine::load_run(&mut conn, run_id)
        .map_err(crate::db::DbError::from)?
        .ok_or_else(|| CliError::Input("the run disappeared".into()))?;
    println!(
        "Run #{run_id}{}: {} rows.",
        if run.dry_run {
            " (dry run, nothing written)"
        } else {
            ""
        },
        run.rows_total
    );
    for (outcome, n) in run.counts() {
        println!("  {outcome:<22} {n}");
    }
    if let Some(notice) = &run.notice {
        println!("{notice}");
        if run.count(engine::MISSING_NOT_FLAGGED) > 0 && !run.dry_run {
            println!("To flag them, import the file again with --confirm-flagging.");
        }
    }
    Ok(())
}

fn resume(config: Config, run_id: i64) -> Result<(), CliError> {
    let state = AppState::open(config)?;
    let mut conn = state.pool.get().map_err(crate::db::DbError::from)?;
    crate::sync::jobs::claim_for_resume(&mut conn, run_id)
        .map_err(|e| CliError::Input(e.to_string()))?;
    drop(conn);
    eprintln!("Resuming run #{run_id} after its last saved chunk.");
    run_in_foreground(&state, run_id, None)
}

fn cancel(config: Config, run_id: i64) -> Result<(), CliError> {
    let state = AppState::open(config)?;
    let mut conn = state.pool.get().map_err(crate::db::DbError::from)?;
    crate::sync::jobs::cancel(&mut conn, run_id, "the command line")
        .map_err(|e| CliError::Input(e.to_string()))?;
    println!("Run #{run_id} cancelled. Rows imported before stay; `syncdesk undo {run_id}` takes them back.");
    Ok(())
}

/// A source by id or by exact name.
fn find_source(
    conn: &mut crate::db::DbConn,
    text: &str,
) -> Result<crate::sources::model::Source, CliError> {
    use crate::sources::service as sources;
    let db = |e| CliError::from(crate::db::DbError::from(e));
    let found = match text.trim().parse::<i64>() {
        Ok(id) => sources::find(conn, id).map_err(db)?,
        Err(_) => sources::find_by_name(conn, text.trim()).map_err(db)?,
    };
    found.ok_or_else(|| {
        CliError::Input(format!(
            "There is no source '{text}': `syncdesk source list` shows them."
        ))
    })
}

fn token(config: Config, command: TokenCommand) -> Result<(), CliError> {
    use crate::api::model::Scope;
    use crate::api::service as tokens;
    let state = AppState::open(config)?;
    let mut conn = state.pool.get().map_err(crate::db::DbError::from)?;
    let refused = |e: tokens::TokenError| CliError::Input(e.to_string());
    match command {
        TokenCommand::Create {
            name,
            scopes,
            source,
        } => {
            let scopes = scopes
                .iter()
                .map(|s| {
                    Scope::parse(s).ok_or_else(|| {
                        CliError::Input(format!(
                            "'{s}' is not a scope: records:read, rows:write, changes:read or activities:write"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let source_id = match source {
                Some(source) => Some(find_source(&mut conn, &source)?.id),
                None => None,
            };
            let (token, secret) = tokens::create(
                &mut conn,
                &tokens::NewToken {
                    name,
                    scopes,
                    source_id,
                    created_by: None,
                },
            )
            .map_err(refused)?;
            eprintln!(
                "Created token #{} '{}' ({}). It is shown only now: keep it safe.",
                token.id,
                token.name,
                token.scope_list()
            );
            println!("{secret}");
        }
        TokenCommand::Revoke { id } => {
            let token = tokens::revoke(&mut conn, id).map_err(refused)?;
            println!(
                "Token #{} '{}' ({}) is revoked.",
                token.id, token.name, token.prefix
            );
        }
        TokenCommand::List => {
            let all = tokens::list(&mut conn).map_err(crate::db::DbError::from)?;
            if all.is_empty() {
                println!("No tokens yet: create one with `syncdesk token create`.");
            }
            for t in all {
                println!(
                    "#{} {} ({}…) {}{}{}",
                    t.id,
                    t.name,
                    t.prefix,
                    t.scope_list(),
                    t.source_id
                        .map(|s| format!(", source #{s} only"))
                        .unwrap_or_default(),
                    if t.revoked() { ", revoked" } else { "" }
                );
            }
        }
    }
    Ok(())
}

fn export_records(config: Config, kind: &str, format: &str) -> Result<(), CliError> {
    let kind = RecordKind::parse(kind)
        .ok_or_else(|| CliError::Input(format!("'{kind}' is not a record kind")))?;
    let state = AppState::open(config)?;
    let mut conn = state.pool.get().map_err(crate::db::DbError::from)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    crate::records::export::all_records(&mut conn, kind, format == "json", &mut out)
        .map_err(|e| CliError::Input(format!("export failed: {e}")))?;
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

/// The mapping proposal for a file's header and first rows, as the mapping page shows it.
fn propose_for_file(
    conn: &mut crate::db::DbConn,
    file: &std::path::Path,
    kind: RecordKind,
    activities: bool,
    id_column: &str,
    country: PhoneCountry,
) -> Result<Vec<crate::sources::propose::ProposedLine>, CliError> {
    use crate::sync::csvfile;
    let unreadable = |e: csvfile::FileError| CliError::Input(format!("{}: {e}", file.display()));
    let format = csvfile::sniff_file(file).map_err(unreadable)?;
    let (headers, rows) = csvfile::preview(file, format, 20).map_err(unreadable)?;
    if activities {
        return Ok(crate::activities::import::propose(
            &headers, &rows, id_column,
        ));
    }
    let defs = crate::fields::service::list(conn, kind, false).map_err(crate::db::DbError::from)?;
    Ok(crate::sources::propose::propose(
        &headers, &rows, id_column, &defs, country,
    ))
}
