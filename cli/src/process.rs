//! Node processes started by this binary (the demo, tests): spawn, wait until the API
//! answers, stop with SIGTERM or kill with SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::client::Client;

/// How long a node may take to open its database and start answering.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The `bidchain` binary for tests and benchmarks: `BIDCHAIN_BIN`, or the one built in the
/// same target profile directory as the running executable (target/<profile>/deps/<exe>).
pub fn locate_bidchain() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("BIDCHAIN_BIN") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe().context("locate the running executable")?;
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("bidchain"));
    match bin {
        Some(bin) if bin.exists() => Ok(bin),
        _ => bail!(
            "bidchain binary not found next to {}; build it (cargo build --workspace, with \
             --release for benchmarks) or set BIDCHAIN_BIN",
            exe.display()
        ),
    }
}

#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    pub home: PathBuf,
    pub log: PathBuf,
    pub client: Client,
}

impl NodeProcess {
    /// Starts `bin node --home HOME`, logging to `log`, and waits until its API answers.
    pub async fn spawn(bin: &Path, home: &Path, log: &Path) -> Result<NodeProcess> {
        let addr_file = bidchain_node::node::rpc_addr_path(&home.join("data"));
        let _ = std::fs::remove_file(&addr_file);
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open log {}", log.display()))?;
        let child = Command::new(bin)
            .arg("node")
            .arg("--home")
            .arg(home)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut process = NodeProcess {
            child,
            home: home.to_owned(),
            log: log.to_owned(),
            client: Client::new("http://127.0.0.1:0")?,
        };
        let addr = process.wait_for_addr(&addr_file).await?;
        process.client = Client::new(&format!("http://{addr}"))?;
        process.client.wait_ready(START_TIMEOUT).await?;
        Ok(process)
    }

    async fn wait_for_addr(&mut self, addr_file: &Path) -> Result<String> {
        let start = Instant::now();
        loop {
            if let Ok(addr) = std::fs::read_to_string(addr_file) {
                return Ok(addr.trim().to_owned());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "node exited with {status} before it started; see {}",
                    self.log.display()
                );
            }
            if start.elapsed() > START_TIMEOUT {
                bail!(
                    "node did not start within {START_TIMEOUT:?}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the node gets no chance to clean up (a crash).
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().ok();
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then waits for a clean exit; kills after a timeout.
    pub async fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(i32::try_from(self.child.id())?);
        kill(pid, Signal::SIGTERM).context("send SIGTERM")?;
        let start = Instant::now();
        while start.elapsed() < STOP_TIMEOUT {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("node exited with {status}; see {}", self.log.display());
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill()?;
        bail!("node did not stop within {STOP_TIMEOUT:?} of SIGTERM and was killed")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
