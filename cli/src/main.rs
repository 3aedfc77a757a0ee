//! The `bidchain` command.
// A command-line tool's output is its interface: printing is what it is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use bidchain_cli::client::Client;
use bidchain_cli::localnet::{Localnet, LocalnetSpec};
use bidchain_cli::proof_cli::{self, AuditCommand, ReceiptCommand, Verdict};
use bidchain_cli::trading_cli::{self, ArchiveCommand, BidCommand, ExpertsCommand, TenderCommand};
use bidchain_cli::{demo, setup};
use bidchain_genesis::{ConsensusParams, Genesis};
use bidchain_node::config::NodeConfig;
use bidchain_node::keyfile::{read_key_file, write_key_file};
use bidchain_runtime::bounded::BoundedString;
use bidchain_runtime::crypto::{Keypair, PublicKey};
use bidchain_runtime::ids::AccountId;
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::{NativeCall, Payload, Role, TxHash};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bidchain",
    version,
    about = "A permissioned ledger for public resource trading"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate or show ed25519 keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create or verify a genesis file.
    #[command(subcommand)]
    Genesis(GenesisCommand),
    /// Create a node home directory (genesis, key, config.toml).
    Init {
        #[arg(long)]
        home: PathBuf,
        #[arg(long)]
        genesis: PathBuf,
        /// The node's key file (copied into the home).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "127.0.0.1:26657")]
        rpc_listen: SocketAddr,
        /// libp2p listen multiaddr.
        #[arg(long, default_value = "/ip4/0.0.0.0/tcp/26656")]
        p2p_listen: String,
    },
    /// Run a node from its home directory until Ctrl-C or SIGTERM.
    Node {
        #[arg(long)]
        home: PathBuf,
        /// Follow and verify the chain without voting (a peer in another province).
        #[arg(long)]
        observer: bool,
    },
    /// Show a node's status.
    Status {
        #[arg(long, env = "BIDCHAIN_RPC")]
        rpc: String,
    },
    /// Accounts and roles (native transactions).
    #[command(subcommand)]
    Account(AccountCommand),
    /// Validator-set changes (hub only; effective from the next height).
    #[command(subcommand)]
    Validator(ValidatorCommand),
    /// Show a transaction's receipt.
    Tx {
        hash: TxHash,
        #[arg(long, env = "BIDCHAIN_RPC")]
        rpc: String,
    },
    /// Run N validators and M observers as processes on 127.0.0.1 until Ctrl-C; the same
    /// DIR again restarts the same network with its data.
    Localnet {
        #[arg(long, default_value_t = 4)]
        validators: usize,
        #[arg(long, default_value_t = 0)]
        observers: usize,
        #[arg(long)]
        dir: PathBuf,
        /// Node i uses p2p port BASE + 2i and RPC port BASE + 2i + 1 (0: any free ports).
        #[arg(long, default_value_t = 26_600)]
        base_port: u16,
    },
    /// Tenders: create, open, close the decryption window, award, show.
    #[command(subcommand)]
    Tender(TenderCommand),
    /// Sealed bids: submit, replace, withdraw, reveal.
    #[command(subcommand)]
    Bid(BidCommand),
    /// The expert registry and committee draws.
    #[command(subcommand)]
    Experts(ExpertsCommand),
    /// Archive records of a tender's files.
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Check a receipt from genesis (exit 0 verified, 1 not verified, 2 could not check).
    #[command(subcommand)]
    Receipt(ReceiptCommand),
    /// Verify a file against its archive record from genesis, online or offline (exit 0
    /// verified, 1 not verified, 2 could not check).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run a local chain end to end, checking every step; exits 0 only if all held.
    Demo {
        /// Where to put keys, homes and logs (default: a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the directory afterwards.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new key file (mode 0600) and print its public key.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a key file's public key and account id.
    Show { file: PathBuf },
}

#[derive(Subcommand)]
enum GenesisCommand {
    /// Write a new genesis file.
    New {
        #[arg(long)]
        chain_id: String,
        /// NAME:ROLE:PUBKEY:P2P_ADDR, e.g. hub:hub:<hex>:/ip4/10.0.0.1/tcp/26656
        #[arg(long = "validator", required = true)]
        validators: Vec<String>,
        /// LABEL:ROLE:PUBKEY
        #[arg(long = "account")]
        accounts: Vec<String>,
        /// RFC 3339 (default: now).
        #[arg(long)]
        genesis_time: Option<String>,
        #[arg(long, default_value_t = ConsensusParams::default().block_interval_ms)]
        block_interval_ms: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Validate a genesis file and print its hash.
    Verify { file: PathBuf },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Open an account (the hub: any role; a center: tenderers and bidders).
    Create {
        /// Key file of the sending account.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        public_key: PublicKey,
        #[arg(long)]
        role: Role,
        #[arg(long)]
        label: String,
        #[arg(long, env = "BIDCHAIN_RPC")]
        rpc: String,
        /// Return after admission instead of waiting for the block.
        #[arg(long)]
        no_wait: bool,
    },
    /// Change an account's role (hub only).
    SetRole {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        account: AccountId,
        #[arg(long)]
        role: Role,
        #[arg(long, env = "BIDCHAIN_RPC")]
        rpc: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Show an account.
    Show {
        account: AccountId,
        #[arg(long, env = "BIDCHAIN_RPC")]
        rpc: String,
    },
}

#[derive(Subcommand)]
enum ValidatorCommand {
    /// Add a validator, change its voting power, or remove it with `--power 0`.
    Set {
        /// Key file of the sending (hub) account.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        validator_key: PublicKey,
        #[arg(long)]
        name: String,
        #[arg(long)]
        power: u64,
        #[arg(long, env = "BIDCHAIN_RPC")]
        rpc: String,
        #[arg(long)]
        no_wait: bool,
    },
}

/// RocksDB's C++ is built with SSE 4.2 and PCLMUL on x86-64 Linux (`.cargo/config.toml`,
/// for its hardware CRC32C): on a CPU without them the process would die of an illegal
/// instruction at its first write, so it says so and stops instead.
fn missing_cpu_feature() -> Option<&'static str> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    {
        if !std::arch::is_x86_feature_detected!("sse4.2") {
            return Some("SSE 4.2");
        }
        if !std::arch::is_x86_feature_detected!("pclmulqdq") {
            return Some("PCLMUL");
        }
    }
    None
}

/// A validator's commit builds a write batch of megabytes and drops a block's worth of
/// receipts and changes at each height. With glibc's malloc about a tenth of a loaded
/// validator's time went to page faults on fresh memory (the batch growing) and to
/// consolidating freed chunks; jemalloc keeps freed pages for reuse. The symbols are
/// unprefixed, so RocksDB's C++ allocates here too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(missing) = missing_cpu_feature() {
        eprintln!("error: this CPU lacks {missing}, which this build's RocksDB uses");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let check = match cli.command {
        Command::Receipt(cmd) => runtime.block_on(proof_cli::receipt(cmd)),
        Command::Audit(cmd) => runtime.block_on(proof_cli::audit(cmd)),
        Command::Experts(ExpertsCommand::VerifyDraw {
            tender,
            rpc,
            genesis,
        }) => runtime.block_on(proof_cli::verify_draw(&tender, &rpc, &genesis)),
        command => return run(&runtime, command),
    };
    if let Err(err) = &check {
        eprintln!("could not check: {err:#}");
    }
    ExitCode::from(Verdict::exit_code(&check))
}

fn run(runtime: &tokio::runtime::Runtime, command: Command) -> ExitCode {
    match runtime.block_on(dispatch(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Keys(cmd) => keys(cmd),
        Command::Genesis(cmd) => genesis(cmd),
        Command::Init {
            home,
            genesis,
            key,
            name,
            rpc_listen,
            p2p_listen,
        } => {
            let genesis = Genesis::load(&genesis)?;
            let key = read_key_file(&key)?;
            let mut config = NodeConfig::new(&name, rpc_listen);
            config.p2p_listen = p2p_listen;
            setup::init_home(&home, &genesis, &key, &config)?;
            println!(
                "initialised {} for chain {}",
                home.display(),
                genesis.chain_id
            );
            Ok(())
        }
        Command::Node { home, observer } => run_node(&home, observer).await,
        Command::Status { rpc } => print_json(&Client::new(&rpc)?.status().await?),
        Command::Account(cmd) => account(cmd).await,
        Command::Validator(ValidatorCommand::Set {
            key,
            validator_key,
            name,
            power,
            rpc,
            no_wait,
        }) => {
            let name = BoundedString::new(name).context("validator name")?;
            let call = NativeCall::SetValidator {
                key: validator_key,
                name,
                power,
            };
            submit_native(&key, Payload::Native(call), &rpc, no_wait).await
        }
        Command::Tx { hash, rpc } => print_json(&Client::new(&rpc)?.tx(&hash).await?),
        Command::Tender(cmd) => trading_cli::tender(cmd).await,
        Command::Bid(cmd) => trading_cli::bid(cmd).await,
        Command::Experts(cmd) => trading_cli::experts(cmd).await,
        Command::Archive(cmd) => trading_cli::archive(cmd).await,
        Command::Receipt(_) | Command::Audit(_) => {
            anyhow::bail!("proof checks are dispatched by main, with their own exit codes")
        }
        Command::Demo { dir, keep } => demo::run(demo::DemoOptions { dir, keep }).await,
        Command::Localnet {
            validators,
            observers,
            dir,
            base_port,
        } => {
            let mut spec = LocalnetSpec::new(validators, observers);
            spec.base_port = base_port;
            run_localnet(&dir, &spec).await
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn keys(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Generate { out } => {
            let key = Keypair::generate();
            write_key_file(&out, &key)?;
            println!("{}", key.public());
        }
        KeysCommand::Show { file } => {
            let key = read_key_file(&file)?;
            println!(
                "public_key {}\naccount_id {}",
                key.public(),
                AccountId::of(&key.public())
            );
        }
    }
    Ok(())
}

fn genesis(cmd: GenesisCommand) -> Result<()> {
    match cmd {
        GenesisCommand::New {
            chain_id,
            validators,
            accounts,
            genesis_time,
            block_interval_ms,
            out,
        } => {
            let validators = validators
                .iter()
                .map(|v| setup::parse_validator(v))
                .collect::<Result<_>>()?;
            let accounts = accounts
                .iter()
                .map(|a| setup::parse_account(a))
                .collect::<Result<_>>()?;
            let time = match genesis_time {
                Some(text) => Timestamp::parse_rfc3339(&text)?,
                None => Timestamp::from_system(std::time::SystemTime::now()),
            };
            let consensus = ConsensusParams {
                block_interval_ms,
                ..ConsensusParams::default()
            };
            let genesis = setup::new_genesis(&chain_id, time, consensus, validators, accounts)?;
            if out.exists() {
                anyhow::bail!(
                    "{} exists; refusing to overwrite a genesis file",
                    out.display()
                );
            }
            std::fs::write(&out, genesis.to_json())
                .with_context(|| format!("write {}", out.display()))?;
            println!("{}", genesis.hash());
        }
        GenesisCommand::Verify { file } => {
            let genesis = Genesis::load(&file)?;
            println!("{}", genesis.hash());
        }
    }
    Ok(())
}

async fn run_node(home: &Path, observer: bool) -> Result<()> {
    let config = NodeConfig::load(home)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log))
        .context("log filter in config.toml")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    bidchain_node::node::run(home, observer, shutdown_signal()).await?;
    Ok(())
}

async fn run_localnet(dir: &Path, spec: &LocalnetSpec) -> Result<()> {
    let mut net = Localnet::create_or_load(dir, spec)?;
    let bin = std::env::current_exe().context("locate the bidchain binary")?;
    let started = net.start_all(&bin).await;
    let mut nodes = match started {
        Ok(nodes) => nodes,
        Err(err) => {
            net.clear_pids()?;
            return Err(err);
        }
    };
    println!("chain {} ({})", net.genesis.chain_id, net.genesis.hash());
    for node in &net.nodes {
        println!(
            "{:<12} {:<9} {}  pid {}  home {}",
            node.name,
            format!("{:?}", node.role).to_lowercase(),
            node.rpc_url,
            node.pid.unwrap_or(0),
            node.home.display()
        );
    }
    println!(
        "{} written; Ctrl-C stops the network",
        dir.join("localnet.json").display()
    );
    shutdown_signal().await;
    let mut failed = Vec::new();
    for (node, process) in net.nodes.iter().zip(&mut nodes) {
        if let Err(err) = process.stop().await {
            failed.push(format!("{}: {err:#}", node.name));
        }
    }
    net.clear_pids()?;
    if !failed.is_empty() {
        anyhow::bail!("some nodes did not stop cleanly: {}", failed.join("; "));
    }
    println!("all nodes stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

async fn account(cmd: AccountCommand) -> Result<()> {
    let (key, payload, rpc, no_wait) = match cmd {
        AccountCommand::Show { account, rpc } => {
            return print_json(&Client::new(&rpc)?.account(&account).await?);
        }
        AccountCommand::Create {
            key,
            public_key,
            role,
            label,
            rpc,
            no_wait,
        } => {
            let label = BoundedString::new(label).context("label")?;
            let call = NativeCall::CreateAccount {
                key: public_key,
                role,
                label,
            };
            (key, Payload::Native(call), rpc, no_wait)
        }
        AccountCommand::SetRole {
            key,
            account,
            role,
            rpc,
            no_wait,
        } => (
            key,
            Payload::Native(NativeCall::SetRole { account, role }),
            rpc,
            no_wait,
        ),
    };
    submit_native(&key, payload, &rpc, no_wait).await
}

/// Signs `payload` with the key file's key at its next nonce, submits it and, unless
/// `no_wait`, waits for its receipt.
async fn submit_native(key: &Path, payload: Payload, rpc: &str, no_wait: bool) -> Result<()> {
    let key = read_key_file(key)?;
    let client = Client::new(rpc)?;
    let admitted = client.sign_and_submit(&key, payload).await?;
    if no_wait {
        return print_json(&admitted);
    }
    print_json(
        &client
            .wait_included(&admitted.tx_hash, Duration::from_secs(60))
            .await?,
    )
}
