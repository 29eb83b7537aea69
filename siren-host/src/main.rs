//! `sirend`: the Siren server's command line.

#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use siren_api::{ServerName, Username};
use siren_host::admin;
use siren_host::config::{Config, DEFAULT_PORT};
use siren_host::control::wire::Request;
use siren_host::{filemodes, keyfile, registry, server};

/// The Siren server.
#[derive(Parser)]
#[command(
    name = "sirend",
    version,
    about = "The Siren end-to-end encrypted IM server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a configuration and a new Server Encryption Key, and print the DNS records.
    Init {
        /// Directory to write `sirend.toml` and `sek.key` into.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The server's DNS name (users will be user@NAME).
        #[arg(long, default_value = "localhost")]
        name: String,
        /// Address to listen on.
        #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)))]
        listen: SocketAddr,
        /// Address of the web listener (the browser client; loopback unless it has TLS or a
        /// reverse proxy in front).
        #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], siren_host::config::DEFAULT_WEB_PORT)))]
        web_listen: SocketAddr,
    },
    /// Run the server (default configuration: ./sirend.toml if present, else built-in defaults).
    Run {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file; names the exact key that is wrong.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the DNS SRV and TXT records to publish.
    DnsRecords {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the server's public key (SEK), base64, as clients need it.
    Key {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage users of the password backend (through the running server when there is one).
    User {
        /// Configuration file.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: UserAction,
    },
    /// A user's devices: list them, or end a device's sessions.
    Devices {
        /// Configuration file.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: DevicesAction,
    },
    /// Sessions: list them, or end a user's (or one device's).
    Sessions {
        /// Configuration file.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: SessionsAction,
    },
    /// Message queues.
    Queue {
        /// Configuration file.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Federation with other servers.
    Federation {
        /// Configuration file.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: FederationAction,
    },
    /// Read the configuration file again (as SIGHUP does): a file that fails its checks is
    /// refused and the running configuration stays; says what was applied and what waits for a
    /// restart.
    Reload {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// How the running server is doing: version, uptime, listeners, store, sessions,
    /// federation, plugins. Fails when no server runs.
    Status {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write a consistent backup of the store, the server key and the peers' pinned keys into
    /// a new directory, while the server runs (or not). RocksDB only: PostgreSQL is backed up
    /// with pg_dump.
    Backup {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The backup directory (new, or empty).
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into the empty data directory of a stopped server.
    Restore {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A directory `sirend backup` wrote.
        #[arg(long)]
        from: PathBuf,
    },
    /// Copy every account, device, roster, queued message and session from one store into
    /// another, empty, one; verified by counts and checksums. Stop the server first.
    MigrateStore {
        /// The configuration whose store is copied (its [storage] section).
        #[arg(long)]
        from: PathBuf,
        /// The configuration whose (empty) store receives the copy.
        #[arg(long)]
        to: PathBuf,
    },
    /// List the storage backends, credential backends and mechanisms: built in, and the
    /// configuration's plugins.
    Plugins {
        /// Configuration file.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: PluginAction,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Create a user; the password is read from the terminal or, with --password-stdin, stdin.
    Add {
        /// The username (the part before @).
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's password.
    Passwd {
        /// The username.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user.
    Del {
        /// The username.
        name: String,
    },
    /// List users.
    List,
}

#[derive(Subcommand)]
enum DevicesAction {
    /// List a user's devices: fingerprint, name, registration, queued items, session.
    List {
        /// The username.
        user: String,
    },
    /// End a device's sessions now (its live session gets error 209 and closes; none
    /// resumes). The device stays in the user's signed chain, which only the user's devices
    /// can change: to lock it out, change the password too.
    Revoke {
        /// The username.
        user: String,
        /// The start of the device's fingerprint, as `devices list` shows it.
        device: String,
    },
}

#[derive(Subcommand)]
enum SessionsAction {
    /// List sessions: live, and resumable ones.
    List,
    /// End a user's sessions (or only one device's): live ones close with error 209.
    Kick {
        /// The username.
        user: String,
        /// The start of a device fingerprint.
        device: Option<String>,
    },
}

#[derive(Subcommand)]
enum QueueAction {
    /// Items and bytes waiting, and the age of the oldest; per device with a user.
    Stats {
        /// Only this user's devices.
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum FederationAction {
    /// The peers: link state, outbox worker, envelopes waiting and the oldest one's age.
    Links,
}

#[derive(Subcommand)]
enum PluginAction {
    /// Show what is available, from where, with which interface version.
    List,
}

/// The configuration file: `--config`, or `./sirend.toml` if there is one (`None`: the
/// built-in defaults).
fn config_path(path: Option<&Path>) -> Option<PathBuf> {
    path.map(Path::to_path_buf).or_else(|| {
        Path::new("sirend.toml")
            .exists()
            .then(|| PathBuf::from("sirend.toml"))
    })
}

/// Loads [`config_path`], or the defaults (paths relative to the current directory).
fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let config = match config_path(path) {
        Some(p) => Config::load(&p)?,
        None => Config::default(),
    };
    registry::check_names(&config).map_err(|(key, e)| anyhow::anyhow!("`{key}`: {}", e.message))?;
    Ok(config)
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let second = rpassword::prompt_password("Again: ").context("cannot read the password")?;
        if first != second {
            bail!("the passwords differ");
        }
        first
    };
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}

/// Checks a username before asking for its password.
fn checked_user(name: &str) -> anyhow::Result<String> {
    Username::parse(name).with_context(|| format!("username {name:?}"))?;
    Ok(name.to_owned())
}

/// Runs an admin command (in the running server, or on the store) and prints its output.
fn admin_command(config: Option<&Path>, request: Request) -> anyhow::Result<()> {
    let config = load_config(config)?;
    print!("{}", runtime()?.block_on(admin::command(&config, request))?);
    Ok(())
}

/// Starts logging at `level` (or `SIREN_LOG`) in `format`; returns how to change the level
/// later (a reload), which leaves a `SIREN_LOG` setting alone.
fn init_logging(
    level: &str,
    format: siren_host::config::LogFormat,
) -> siren_host::reload::SetLogLevel {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let from_env = tracing_subscriber::EnvFilter::try_from_env("SIREN_LOG").ok();
    let overridden = from_env.is_some();
    let filter = from_env
        .or_else(|| tracing_subscriber::EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        siren_host::config::LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init(),
        siren_host::config::LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
    Box::new(move |level: &str| {
        if overridden {
            return Ok(());
        }
        let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> ExitCode {
    // Before anything is created and before any thread starts: every file and directory of
    // every command is private to this user (the store holds password hashes).
    filemodes::private_umask();
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sirend: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init {
            dir,
            name,
            listen,
            web_listen,
        } => {
            let name = ServerName::parse(&name).context("--name")?;
            print!("{}", admin::init(&dir, &name, listen, web_listen)?);
        }
        Command::Run { config } => {
            let path = config_path(config.as_deref());
            let config = load_config(path.as_deref())?;
            let set_log = init_logging(&config.log.level, config.log.format);
            let reloader = siren_host::reload::Reloader::new(path, config.clone(), set_log);
            runtime()?.block_on(server::run(config, std::sync::Arc::new(reloader)))?;
        }
        Command::CheckConfig { file } => {
            let config = Config::load(&file)?;
            registry::check_names(&config).map_err(|(key, e)| {
                anyhow::anyhow!("{}: `{key}`: {}", file.display(), e.message)
            })?;
            registry::check_plugins(&config)
                .map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.message))?;
            println!("{}: ok", file.display());
        }
        Command::DnsRecords { config } => {
            let config = load_config(config.as_deref())?;
            let sek = keyfile::read(&config.server.key_file)?;
            print!(
                "{}",
                admin::dns_records(
                    &config.server.name,
                    config.server.listen.port(),
                    &sek.public(),
                    &config.cluster.nodes,
                )
            );
        }
        Command::Key { config } => {
            let config = load_config(config.as_deref())?;
            println!("{}", keyfile::read(&config.server.key_file)?.public());
        }
        Command::User { config, action } => {
            let request = match action {
                UserAction::Add {
                    name,
                    password_stdin,
                } => Request::UserAdd {
                    user: checked_user(&name)?,
                    password: read_password(password_stdin)?,
                },
                UserAction::Passwd {
                    name,
                    password_stdin,
                } => Request::UserPasswd {
                    user: checked_user(&name)?,
                    password: read_password(password_stdin)?,
                },
                UserAction::Del { name } => Request::UserDel { user: name },
                UserAction::List => Request::UserList {},
            };
            admin_command(config.as_deref(), request)?;
        }
        Command::Devices { config, action } => {
            let request = match action {
                DevicesAction::List { user } => Request::DevicesList { user },
                DevicesAction::Revoke { user, device } => Request::DevicesRevoke { user, device },
            };
            admin_command(config.as_deref(), request)?;
        }
        Command::Sessions { config, action } => {
            let request = match action {
                SessionsAction::List => Request::SessionsList {},
                SessionsAction::Kick { user, device } => Request::SessionsKick { user, device },
            };
            admin_command(config.as_deref(), request)?;
        }
        Command::Queue {
            config,
            action: QueueAction::Stats { user },
        } => admin_command(config.as_deref(), Request::QueueStats { user })?,
        Command::Federation {
            config,
            action: FederationAction::Links,
        } => admin_command(config.as_deref(), Request::FederationLinks {})?,
        Command::Backup { config, to } => {
            let to = std::path::absolute(&to).with_context(|| format!("--to {}", to.display()))?;
            let to = to
                .to_str()
                .context("--to: the path is not UTF-8")?
                .to_owned();
            admin_command(config.as_deref(), Request::Backup { to })?;
        }
        Command::Restore { config, from } => {
            let config = load_config(config.as_deref())?;
            print!(
                "{}",
                runtime()?.block_on(siren_host::backup::restore(&config, &from))?
            );
        }
        Command::Reload { config } => {
            // The file is checked here first (this command needs it to find the server): a file
            // that does not pass is not sent, and the server keeps what it runs.
            if let Err(e) = load_config(config.as_deref()) {
                bail!("{e:#}\nreload refused, the running configuration stays");
            }
            admin_command(config.as_deref(), Request::Reload {})?
        }
        Command::Status { config } => admin_command(config.as_deref(), Request::Status {})?,
        Command::MigrateStore { from, to } => {
            let from_config = load_config(Some(&from))?;
            let to_config = load_config(Some(&to))?;
            if from_config.storage == to_config.storage
                && from_config.storage_path() == to_config.storage_path()
            {
                bail!("--from and --to name the same store");
            }
            let summary = runtime()?.block_on(async {
                let open = |c: &Config, which: &Path| {
                    let c = c.clone();
                    let which = which.display().to_string();
                    async move {
                        filemodes::create_private_dir(&c.server.data_dir)?;
                        registry::open_storage(&c)
                            .await
                            .map_err(|e| anyhow::anyhow!("{which}: {e}"))
                    }
                };
                let source = open(&from_config, &from).await?;
                let target = open(&to_config, &to).await?;
                siren_host::migrate::migrate(source, target)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })?;
            println!(
                "copied {} ({}) into {} ({}): {summary}; verified",
                from_config.storage.backend,
                from.display(),
                to_config.storage.backend,
                to.display()
            );
        }
        Command::Plugins {
            config,
            action: PluginAction::List,
        } => {
            let config = load_config(config.as_deref())?;
            println!("{:<12} {:<14} origin", "kind", "name");
            for (kind, name, origin) in registry::describe(&config) {
                println!("{kind:<12} {name:<14} {origin}");
            }
        }
    }
    Ok(())
}
