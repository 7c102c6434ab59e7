use clap::Parser;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // One line per finished request (method, route, status, time) from tracing-actix-web.
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .init();
    let cli = syncdesk::cli::Cli::parse();
    if let Err(e) = syncdesk::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
