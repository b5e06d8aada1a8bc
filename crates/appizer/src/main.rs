//! The `appizer` command: `init`, `serve`, `backup`, `restore`, `push-emulator`,
//! `config default`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use appizer::{initialize, InitError};
use appizer_core::config::{default_toml, Config};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// mimalloc keeps memory compact under many threads allocating JSON values, where the
/// system allocator's per-thread arenas fragment (measured in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "appizer",
    version,
    about = "Self-hostable product analytics, user management and engagement"
)]
struct Cli {
    /// Config file (default: ./appizer.toml when it exists).
    #[arg(long, global = true, env = "APPIZER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The first admin member, created with the data dir.
#[derive(clap::Args)]
struct AdminArgs {
    /// Email of the first admin member (who signs in to the dashboard).
    #[arg(long, env = "APPIZER_ADMIN_EMAIL", default_value = "admin@localhost")]
    admin_email: String,
    /// Their password (10 to 256 characters), from the environment only; without it
    /// one is generated and printed once.
    #[arg(skip = std::env::var("APPIZER_ADMIN_PASSWORD").ok())]
    admin_password: Option<String>,
}

impl AdminArgs {
    fn first_admin(&self) -> appizer::FirstAdmin {
        appizer::FirstAdmin {
            email: self.admin_email.clone(),
            password: self.admin_password.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create the data dir, a default organisation and project, a write key and an
    /// admin key, and print the keys once.
    Init {
        /// Where embedded storage lives (default ./appizer-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print one JSON object {organization_id, project_id, write_key, admin_key,
        /// admin_email, admin_password (when generated)}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Run every component in one process (initialising the data dir on first start).
    Serve {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// What this node runs: all (the default), or some of api, worker, query, push
        /// (comma-separated or repeated); split roles need PostgreSQL and NATS.
        #[arg(long = "role", value_delimiter = ',')]
        roles: Vec<appizer_core::config::NodeRole>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Run local push services for tests and app development: APNs at the root (HTTP/2),
    /// Web Push under /webpush, FCM and its token endpoint under /fcm (what each
    /// checks, received, can fail).
    PushEmulator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Concurrent HTTP/2 streams allowed per connection (as APNs announces).
        #[arg(long)]
        max_streams: Option<u32>,
    },
    /// Copy this node's metadata (SQLite), embedded queue and event files, consistently
    /// and while it runs, to DEST: an empty directory or an s3://BUCKET/PREFIX.
    Backup {
        dest: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Put a backup (a directory or an s3://BUCKET/PREFIX) back into an empty data dir;
    /// `serve` then replays its queue.
    Restore {
        src: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a commented example appizer.toml with every key and its default.
    Default,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(file: Option<&PathBuf>) -> anyhow::Result<Config> {
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    Ok(Config::load(
        file.map(PathBuf::as_path),
        &cwd,
        std::env::vars(),
    )?)
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Config {
        command: ConfigCommand::Default,
    } = cli.command
    {
        print!("{}", default_toml());
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = load_config(cli.config.as_ref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Init {
            data_dir,
            json,
            admin,
        } => {
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            appizer::telemetry::init_logging(&config.log, Some("warn".into()))?;
            runtime.block_on(init_command(config, json, admin.first_admin()))
        }
        Command::Serve {
            data_dir,
            listen,
            roles,
            admin,
        } => {
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            if let Some(addr) = listen {
                config.server.listen = addr;
            }
            if !roles.is_empty() {
                config = config.with_roles(roles)?;
            }
            appizer::telemetry::init_logging(&config.log, std::env::var("APPIZER_LOG").ok())?;
            runtime.block_on(serve_command(config, admin.first_admin()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::PushEmulator {
            listen,
            max_streams,
        } => {
            appizer::telemetry::init_logging(&config.log, std::env::var("APPIZER_LOG").ok())?;
            runtime.block_on(push_emulator_command(listen, max_streams))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { dest, data_dir } => {
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            appizer::telemetry::init_logging(&config.log, Some("warn".into()))?;
            let manifest = runtime.block_on(appizer::backup::backup(&config, &dest))?;
            println!(
                "Backed up to {dest}: {} event files ({} bytes), {} queue files{}",
                manifest.event_files,
                manifest.event_bytes,
                manifest.queue_files.len(),
                if manifest.master_key {
                    ", the push master key"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { src, data_dir } => {
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            appizer::telemetry::init_logging(&config.log, Some("warn".into()))?;
            let manifest = runtime.block_on(appizer::backup::restore(&config, &src))?;
            println!(
                "Restored the backup of {} into {}: {} event files, {} queue files",
                manifest.created_at.to_rfc3339(),
                config.data_dir.display(),
                manifest.event_files,
                manifest.queue_files.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { .. } => unreachable!("handled above"),
    }
}

async fn init_command(
    config: Config,
    json: bool,
    admin: appizer::FirstAdmin,
) -> anyhow::Result<ExitCode> {
    let store = appizer::open_store(&config).await?;
    let outcome = initialize(store.as_ref(), &admin).await;
    // Closing the last connection checkpoints SQLite's write-ahead log into the
    // database file, so the process leaves one complete file behind.
    store.close().await;
    match outcome {
        Ok(output) if json => {
            println!("{}", serde_json::to_string(&output)?);
            Ok(ExitCode::SUCCESS)
        }
        Ok(output) => {
            println!("Data dir: {}", config.data_dir.display());
            print!("{}", output.to_text(&base_url(&config)));
            Ok(ExitCode::SUCCESS)
        }
        Err(InitError::AlreadyInitialized) => {
            eprintln!(
                "error: {} is already initialised; nothing was changed",
                describe_store(&config)
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

async fn serve_command(config: Config, admin: appizer::FirstAdmin) -> anyhow::Result<()> {
    let store = appizer::open_store(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let url = base_url_for(&config, listener.local_addr()?);
    if !store.is_initialized().await? {
        let output = initialize(store.as_ref(), &admin).await?;
        println!("First start: initialised {}.", describe_store(&config));
        print!("{}", output.to_text(&url));
    }
    println!("Appizer is listening on {url} (health: {url}/healthz, API: {url}/openapi.json)");
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    appizer::run(config, store, listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

fn describe_store(config: &Config) -> String {
    if config.database_url.is_empty() {
        format!("data dir {}", config.data_dir.display())
    } else {
        "the configured database".to_string()
    }
}

fn base_url(config: &Config) -> String {
    base_url_for(config, config.server.listen)
}

fn base_url_for(config: &Config, addr: SocketAddr) -> String {
    let scheme = if config.tls_enabled() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

async fn wait_for_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown signal received; draining connections");
    shutdown.cancel();
}

async fn push_emulator_command(listen: SocketAddr, max_streams: Option<u32>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let base = format!("http://{}", listener.local_addr()?);
    println!(
        "Push emulator on {base}: APNs at {base} (push.apns_url; signing keys at POST \
         {base}/apns/keys), Web Push subscriptions at POST {base}/webpush/subscriptions, \
         FCM at {base}/fcm (push.fcm_url; service accounts at POST {base}/fcm/service-accounts), \
         received messages at {base}/apns/notifications, {base}/webpush/messages and \
         {base}/fcm/messages"
    );
    let options = appizer_push::emulator::ServeOptions { max_streams };
    appizer_push::emulator::serve(listener, options, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
