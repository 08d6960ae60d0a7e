//! `custos` — the custody host's command line.
//!
//! Owns: argument parsing and wiring (clap lives only here):
//! - `custos dev [--data-dir DIR] [--listen ADDR] [--policies DIR] [--node-binary PATH]`:
//!   the whole service on one machine (dev PKI, 4 `custos-node` processes, dev
//!   credentials in `DIR/credentials.json`) until Ctrl-C / SIGTERM (`custos_service::dev`).
//! - `custos serve --config FILE`: the service alone, against an existing node group.
//! - `custos call [--credentials F] [--approver N] METHOD PATH [BODY]`: one signed API call
//!   (an approver's `approve` also signs the request's approval statement).
//! - `custos bench [--credentials F] [--clients 1,8,32] [--requests N]`: load benchmark
//!   through the HTTP API of a running service (`custos_service::bench`); with `--abuse`,
//!   one client signing undisturbed and then under a flood of unauthenticated requests.
//! - `custos plugin list|inspect`, `custos policy validate|test`, `custos pki init`.
//! - `custos policy admin-keygen|bundle|sign|verify`, `custos approver keygen`: policy-admin
//!   and approver keys, signed policy bundles (DESIGN §3a; `authority_cmd`).
//! - `custos custodian keygen --id NAME --out FILE`: a backup custodian's age key; prints
//!   the custodians-file line (DESIGN §4a; `custodian_cmd`).
//!
//! `dev` and `serve` log to stderr; `CUSTOS_LOG` (an env-filter, default `info`) sets the
//! level, and the dev nodes inherit it. Must not: hold logic that a library crate should own.

mod authority_cmd;
mod custodian_cmd;
mod policy_cmd;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use custos_plugin_runtime::{PluginRuntime, RuntimeConfig};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "custos", version, about = "threshold-signing custody host")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything on this machine: a dev PKI, 4 TSS node processes, dev credentials
    /// (written to DIR/credentials.json) and the API. Reuses DIR on the next run.
    Dev {
        /// The dev data folder (certificates, node stores, credentials, host store).
        #[arg(long, default_value = "./.custos")]
        data_dir: PathBuf,
        /// The API's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The Cedar policy folder; defaults to this checkout's `policies`, else `./policies`.
        #[arg(long)]
        policies: Option<PathBuf>,
        /// The `custos-node` binary; defaults to the one beside `custos`, else PATH.
        #[arg(long)]
        node_binary: Option<PathBuf>,
    },
    /// Run the service with a config file (TOML) until Ctrl-C or SIGTERM.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Send one API request, signed (HMAC) with a credentials file; prints the status on
    /// stderr and the answer on stdout. Exit 0 for 2xx, 1 otherwise.
    ///
    /// As an approver, `POST /api/v1/requests/{id}/approve` first GETs the request and
    /// signs its `approval_statement` with the approver's Ed25519 key (`signing_key` in
    /// the credentials file): only the canonical APPROVE statement naming that request id
    /// (and its key) is signed, and the statement is shown on stderr. The signature goes in
    /// the body as `statement_signature`; it is what the nodes check.
    Call {
        /// The credentials file `custos dev` wrote.
        #[arg(long, default_value = "./.custos/credentials.json")]
        credentials: PathBuf,
        /// Send as approver N (1 or 2) of the credentials file instead of the main client:
        /// its HMAC credentials, and for `approve` its Ed25519 key signs the request's
        /// approval statement (request id, key id, SHA-256 of the sign request, APPROVE).
        #[arg(long)]
        approver: Option<usize>,
        /// GET, POST, PUT, …
        method: String,
        /// The path with its query, e.g. `/api/v1/keys?status=ACTIVE`.
        path: String,
        /// The JSON body, if any.
        body: Option<String>,
    },
    /// Load benchmark through the real HTTP API of a running service: generates one key,
    /// then signs EIP-1559 transfers at each concurrency level and prints a table.
    Bench {
        #[arg(long, default_value = "./.custos/credentials.json")]
        credentials: PathBuf,
        /// Concurrent clients per row.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        clients: Vec<usize>,
        /// Requests per row.
        #[arg(long, default_value_t = 300)]
        requests: usize,
        /// DKLS23 or CGGMP21.
        #[arg(long, default_value = "DKLS23")]
        algo: String,
        /// Abuse mode: `--clients` (first value) sign for `--abuse-secs` undisturbed, then
        /// as long again while one core floods the API with unauthenticated requests.
        #[arg(long)]
        abuse: bool,
        #[arg(long, default_value_t = 30)]
        abuse_secs: u64,
        /// Connections the abuser keeps open.
        #[arg(long, default_value_t = 64)]
        abuse_connections: usize,
        /// Loopback source addresses the abuser spreads over (127.0.0.2, .3, …).
        #[arg(long, default_value_t = 1)]
        abuse_sources: usize,
        /// The host's data folder, to measure how much it grows (e.g. `.custos/host/data`).
        #[arg(long)]
        host_data: Option<PathBuf>,
    },
    /// Chain plugins (WebAssembly components).
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Dev PKI for the host and the TSS nodes (internal CA, gateway and node certificates).
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Cedar policies: validate a policy folder, run its test cases; policy-admin keys and
    /// signed policy bundles.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Approver keys (the Ed25519 keys that sign approval statements).
    Approver {
        #[command(subcommand)]
        command: ApproverCommand,
    },
    /// Backup custodians' keys (age X25519 identities that open backup shares).
    Custodian {
        #[command(subcommand)]
        command: CustodianCommand,
    },
}

#[derive(Subcommand)]
enum CustodianCommand {
    /// Write a new custodian age key file (owner only, never overwritten) and print its
    /// custodians-file line (`{"id","recipient"}`). Nothing secret is printed.
    Keygen {
        /// The custodian's id (1–64 of [A-Za-z0-9._-]).
        #[arg(long)]
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ApproverCommand {
    /// Write a new approver key file (owner only, never overwritten) and print its pin
    /// (`{"id","public_key"}`) for the nodes' approvers pin file. Nothing secret is printed.
    Keygen {
        /// The approver's id: its API client name (1–64 of [A-Za-z0-9._-]).
        #[arg(long)]
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create DIR/ca.cert + ca.key, DIR/gateway/gateway.{cert,key} and
    /// DIR/tssN/tssN.{cert,key} for nodes 1..=N (CA 10 years, leaves 1 year).
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 4)]
        nodes: u16,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy folder (schema, every `*.cedar`, every `*.entities.json`) in
    /// strict mode, as the service does before putting it in force. Exit 0 if valid, 1 if not.
    Validate {
        /// The folder, e.g. `policies`.
        dir: PathBuf,
    },
    /// Run policy test cases through the real engine. Exit 0 when every case passes,
    /// 1 when one fails or is invalid, 2 when the policy folder itself is refused.
    Test {
        /// The policy folder, e.g. `policies`.
        dir: PathBuf,
        /// The folder of case files (`*.json`); defaults to `DIR/tests`.
        #[arg(long)]
        cases: Option<PathBuf>,
        /// Print passing cases too.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Decide the sign requests the service recorded over a period again with a candidate
    /// policy folder and print what would change (nothing is put in force). Sent to the
    /// service (`POST /api/v1/policies/replay`, admin or auditor role). Exit 0 when
    /// nothing changes, 3 when some decisions change, 1 on error.
    Replay {
        /// The period back from now: `30d`, `12h`, `90m` or seconds (at most 90 days).
        #[arg(long, default_value = "30d")]
        since: String,
        /// The candidate policy folder.
        #[arg(long)]
        policies: PathBuf,
        /// The credentials file `custos dev` wrote.
        #[arg(long, default_value = "./.custos/credentials.json")]
        credentials: PathBuf,
        /// Print the whole answer as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a new policy-admin key file (owner only, never overwritten) and print its pin
    /// (`{"id","public_key"}`) for the nodes' policy-admins pin file. Nothing secret is
    /// printed.
    AdminKeygen {
        /// The admin's id (1–64 of [A-Za-z0-9._-]).
        #[arg(long)]
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Bundle a policy folder (schema, `*.cedar`, `*.entities.json`; checked to load) as
    /// an unsigned policy bundle of version N. Refuses to overwrite FILE.
    Bundle {
        /// The policy folder, e.g. `policies`.
        dir: PathBuf,
        /// The bundle's version; nodes take only a bundle newer than the one in force.
        #[arg(long)]
        version: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a policy admin's signature to a bundle file, in place. Refuses a key that is
    /// not a policy-admin key, and a bundle that does not load.
    Sign {
        /// The admin's key file (`custos policy admin-keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The bundle file.
        bundle: PathBuf,
    },
    /// Check a bundle as a node does: every signature a pinned admin's and valid, at least
    /// the pinned threshold of them. Prints version, digest and signers; exit 1 with the
    /// reason when it is unsigned, under-signed, badly signed or signed by an unknown admin.
    Verify {
        /// The bundle file.
        bundle: PathBuf,
        /// The policy-admins pin file (`{"threshold":M,"keys":[{"id","public_key"}]}`).
        #[arg(long)]
        admins: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load a pinned plugin set (default: the one this build produced), verifying every
    /// sha256, and list it.
    List {
        /// A manifest (`plugins.toml`); defaults to the build's own.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Print a plugin component's info, WIT version, imports, exports and sha256.
    Inspect {
        /// The component file (`.wasm`).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Policy { command } = &cli.command {
        return match command {
            PolicyCommand::Validate { dir } => policy_cmd::validate(dir),
            PolicyCommand::Test {
                dir,
                cases,
                verbose,
            } => policy_cmd::test(dir, cases.as_deref(), *verbose),
            PolicyCommand::Verify { bundle, admins } => authority_cmd::verify(bundle, admins),
            PolicyCommand::Replay {
                since,
                policies,
                credentials,
                json,
            } => match client_runtime() {
                Ok(rt) => rt.block_on(policy_cmd::replay(since, policies, credentials, *json)),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            },
            PolicyCommand::AdminKeygen { .. }
            | PolicyCommand::Bundle { .. }
            | PolicyCommand::Sign { .. } => exit(authority(command)),
        };
    }
    exit(run(cli))
}

fn exit(r: Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The policy commands that write keys and bundles.
fn authority(command: &PolicyCommand) -> Result<()> {
    use custos_authority::keys::Role;
    match command {
        PolicyCommand::AdminKeygen { id, out } => authority_cmd::keygen(id, Role::PolicyAdmin, out),
        PolicyCommand::Bundle { dir, version, out } => authority_cmd::bundle(dir, *version, out),
        PolicyCommand::Sign { key, bundle } => authority_cmd::sign(key, bundle),
        PolicyCommand::Validate { .. }
        | PolicyCommand::Test { .. }
        | PolicyCommand::Replay { .. }
        | PolicyCommand::Verify { .. } => {
            unreachable!("answered with their own exit codes in main")
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Plugin {
            command: PluginCommand::Inspect { file, json },
        } => inspect(&file, json),
        Command::Plugin {
            command: PluginCommand::List { manifest },
        } => list(manifest),
        Command::Pki {
            command: PkiCommand::Init { dir, nodes },
        } => {
            custos_coordinator::pki::create(&dir, nodes)?;
            println!(
                "dev PKI written to `{}` (CA, gateway, tss1..tss{nodes})",
                dir.display()
            );
            Ok(())
        }
        Command::Dev {
            data_dir,
            listen,
            policies,
            node_binary,
        } => {
            let opts = custos_service::dev::DevOptions {
                data_dir,
                listen,
                policies_dir: policies.unwrap_or_else(default_policies),
                node_binary,
            };
            service_runtime()?.block_on(custos_service::dev::run(opts))
        }
        Command::Serve { config } => service_runtime()?.block_on(serve(&config)),
        Command::Call {
            credentials,
            approver,
            method,
            path,
            body,
        } => client_runtime()?.block_on(call(&credentials, approver, &method, &path, body)),
        Command::Bench {
            credentials,
            clients,
            abuse: true,
            abuse_secs,
            abuse_connections,
            abuse_sources,
            host_data,
            algo,
            ..
        } => client_runtime()?.block_on(async {
            let creds = custos_service::client::Credentials::load(&credentials)?;
            let phases = custos_service::bench::run_abuse(custos_service::bench::AbuseOptions {
                credentials: creds,
                algo: algo.clone(),
                signers: clients.first().copied().unwrap_or(1),
                secs: abuse_secs,
                connections: abuse_connections,
                sources: abuse_sources,
                host_data,
            })
            .await?;
            print!("{}", custos_service::bench::abuse_table(&phases, &algo));
            Ok(())
        }),
        Command::Bench {
            credentials,
            clients,
            requests,
            algo,
            ..
        } => client_runtime()?.block_on(async {
            let creds = custos_service::client::Credentials::load(&credentials)?;
            let rows = custos_service::bench::run(custos_service::bench::BenchOptions {
                credentials: creds,
                levels: clients,
                requests,
                algo: algo.clone(),
            })
            .await?;
            print!("{}", custos_service::bench::table(&rows, &algo));
            Ok(())
        }),
        Command::Approver {
            command: ApproverCommand::Keygen { id, out },
        } => authority_cmd::keygen(&id, custos_authority::keys::Role::Approver, &out),
        Command::Custodian {
            command: CustodianCommand::Keygen { id, out },
        } => custodian_cmd::keygen(&id, &out),
        Command::Policy { .. } => unreachable!("handled in main"),
    }
}

/// This checkout's `policies` folder when it is there (a dev build), else `./policies`.
fn default_policies() -> PathBuf {
    let checkout = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies"));
    if checkout.is_dir() {
        checkout.to_path_buf()
    } else {
        PathBuf::from("policies")
    }
}

/// Logging to stderr and a multi-thread runtime, for `dev` and `serve`.
fn service_runtime() -> Result<tokio::runtime::Runtime> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn client_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn call(
    credentials: &Path,
    approver: Option<usize>,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<()> {
    use custos_service::client::{Credentials, CustosClient, approve_target};
    let creds = Credentials::load(credentials)?;
    let client = match approver {
        None => CustosClient::from_credentials(&creds),
        Some(0) => bail!("approvers are numbered from 1"),
        Some(n) => CustosClient::approver(&creds, n.saturating_sub(1))
            .with_context(|| format!("the credentials file has no approver {n}"))?,
    };
    let body: Option<serde_json::Value> = match body {
        None => None,
        Some(b) => Some(serde_json::from_str(&b).context("the body is not valid JSON")?),
    };
    let method = method.to_uppercase();
    let approving = approver.zip(approve_target(&method, path));
    let (status, answer) = match approving {
        None => client.call(&method, path, body.as_ref()).await?,
        Some((n, request_id)) => {
            let a = creds
                .approvers
                .get(n.saturating_sub(1))
                .with_context(|| format!("the credentials file has no approver {n}"))?;
            let signer = a.statement_signer()?.with_context(|| {
                format!(
                    "approver {n} in `{}` has no `signing_key` to sign the approval statement; \
                     run `custos dev` again to add it",
                    credentials.display()
                )
            })?;
            let who = a
                .approver_id
                .clone()
                .unwrap_or_else(|| format!("approver {n}"));
            client
                .approve_signed_at(path, request_id, body.as_ref(), |statement| {
                    eprintln!("signing as `{who}`: {}", String::from_utf8_lossy(statement));
                    signer.sign(statement)
                })
                .await?
        }
    };
    eprintln!("HTTP {status}");
    println!("{}", serde_json::to_string_pretty(&answer)?);
    if !(200..300).contains(&status) {
        std::process::exit(1);
    }
    Ok(())
}

async fn serve(config: &Path) -> Result<()> {
    let shutdown = custos_service::dev::shutdown_signal()?;
    let cfg = custos_service::config::ServiceConfig::load(config)?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("binding the API to `{}`", cfg.listen))?;
    let addr = listener.local_addr().context("reading the API's address")?;
    let service = custos_service::Service::start(&cfg)
        .await
        .context("starting the service")?;
    eprintln!("custos: serving on http://{addr}");
    service
        .run(listener, async move {
            let why = shutdown.await;
            eprintln!("custos: {why}: draining requests and stopping");
        })
        .await
}

fn list(manifest: Option<PathBuf>) -> Result<()> {
    let path = manifest.unwrap_or_else(custos_plugin_artifacts::manifest_path);
    let mut rt =
        PluginRuntime::new(RuntimeConfig::default()).context("starting the plugin runtime")?;
    rt.load_manifest(&path)
        .with_context(|| format!("loading plugins from `{}`", path.display()))?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    println!("manifest: {}", path.display());
    println!("| plugin | chain family | version | wit | sha256 | file |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for p in rt.plugins() {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            p.name,
            p.info.chain_family,
            p.info.version,
            p.wit_version,
            p.sha256,
            dir.join(format!("{}.wasm", p.name)).display()
        );
    }
    Ok(())
}

fn inspect(file: &PathBuf, json: bool) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading `{}`", file.display()))?;
    let rt = PluginRuntime::new(RuntimeConfig::default()).context("starting the plugin runtime")?;
    let i = rt
        .inspect(&file.display().to_string(), &bytes)
        .with_context(|| format!("inspecting `{}`", file.display()))?;
    let schemes: Vec<&str> = i.info.schemes.iter().map(|s| s.as_str()).collect();
    if json {
        let v = serde_json::json!({
            "file": file.display().to_string(),
            "sha256": i.sha256,
            "wit_version": i.wit_version,
            "name": i.info.name,
            "chain_family": i.info.chain_family,
            "version": i.info.version,
            "curve": i.info.curve.as_str(),
            "schemes": schemes,
            "networks": i.info.networks,
            "imports": i.imports,
            "exports": i.exports,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let none = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(", ")
        }
    };
    println!("file:           {}", file.display());
    println!("sha256:         {}", i.sha256);
    println!("wit version:    {}", i.wit_version);
    println!("name:           {}", i.info.name);
    println!("chain family:   {}", i.info.chain_family);
    println!("plugin version: {}", i.info.version);
    println!("curve:          {}", i.info.curve.as_str());
    println!("schemes:        {}", schemes.join(", "));
    println!("networks:       {}", none(&i.info.networks));
    println!("imports:        {}", none(&i.imports));
    println!("exports:        {}", none(&i.exports));
    Ok(())
}
