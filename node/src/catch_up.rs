//! Catching up on blocks fetched from peers, in two stages: the consensus thread checks
//! and executes a block on top of the blocks before it that are still being written,
//! while a writer thread hashes the one before into the state tree, checks its state root
//! and commits it. An observer catching up spent about half of its consensus thread on
//! the tree and the commit, and its second core idle.
//!
//! A block executed here is only as good as the blocks under it: if the writer refuses
//! one (its state root is not ours), every block executed on top of it is dropped too,
//! and the driver fetches again from the last block written.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;

use bidchain_runtime::block::Block;
use bidchain_runtime::execute::Executed;
use bidchain_runtime::state::{Changes, StateError, StateView};

use crate::chain::{ChainError, CheckedCertificate, Tip};
use crate::shared::Shared;
use crate::storage::{Durability, Storage};

/// Blocks handed to the writer and not yet reported: one being written, the next waiting
/// for it. The block after is executed once the first is reported, on top of the second.
pub const MAX_BLOCKS_IN_FLIGHT: usize = 2;

/// Why catching up cannot go on (the node stops, as for any storage failure).
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("the catch-up writer thread stopped")]
    WriterGone,
    #[error("a block was handed to the catch-up writer without room for it")]
    NoRoom,
    #[error("could not start the catch-up writer thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// The committed state with the changes of the blocks still being written on top.
#[derive(Clone, Debug)]
pub struct Pending {
    base: Storage,
    /// Oldest first: a key's newest change wins.
    layers: Arc<[Arc<Changes>]>,
}

impl StateView for Pending {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        for layer in self.layers.iter().rev() {
            if let Some(value) = layer.get(key) {
                return Ok(value.clone());
            }
        }
        StateView::get(&self.base, key)
    }
}

/// A block executed on the consensus thread, for the writer.
struct Job {
    block: Block,
    executed: Executed,
    certificate: CheckedCertificate,
    durability: Durability,
}

/// What the writer did with a job.
enum Written {
    Committed,
    /// The block does not verify after all (its state root): nothing written.
    Refused(ChainError),
    /// A block executed on top of a refused one: not the next block any more.
    Skipped,
}

struct InFlight {
    tip: Tip,
    changes: Arc<Changes>,
    /// Executed on top of a block the writer refused: neither the tip nor a layer.
    void: bool,
}

/// The writer thread and the blocks handed to it, oldest first.
pub struct CatchUp {
    jobs: Option<SyncSender<Job>>,
    reports: Receiver<Result<Written, ChainError>>,
    in_flight: VecDeque<InFlight>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatchUp")
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl CatchUp {
    pub fn new(shared: Arc<Shared>) -> Result<CatchUp, CatchUpError> {
        // Each bound covers every block in flight, so neither side ever blocks on a send.
        let (jobs, job_inbox) = mpsc::sync_channel(MAX_BLOCKS_IN_FLIGHT);
        let (report_out, reports) = mpsc::sync_channel(MAX_BLOCKS_IN_FLIGHT);
        let writer = std::thread::Builder::new()
            .name("catch-up-writer".into())
            .spawn(move || {
                for job in job_inbox {
                    if report_out.send(write(&shared, job)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(CatchUp {
            jobs: Some(jobs),
            reports,
            in_flight: VecDeque::with_capacity(MAX_BLOCKS_IN_FLIGHT),
            writer: Some(writer),
        })
    }

    /// Nothing in flight: the committed tip is the driver's tip.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// The last block executed and not yet written, if any.
    pub fn tip(&self) -> Option<&Tip> {
        self.in_flight
            .iter()
            .rev()
            .find(|b| !b.void)
            .map(|b| &b.tip)
    }

    /// What the next fetched block executes on.
    pub fn view(&self, storage: &Storage) -> Pending {
        let layers = self.in_flight.iter().filter(|b| !b.void);
        Pending {
            base: storage.clone(),
            layers: layers.map(|b| Arc::clone(&b.changes)).collect(),
        }
    }

    /// Hands a block executed on [`CatchUp::view`] to the writer. Call
    /// [`CatchUp::make_room`] first.
    pub fn send(
        &mut self,
        block: Block,
        executed: Executed,
        certificate: CheckedCertificate,
        durability: Durability,
    ) -> Result<(), CatchUpError> {
        let tip = Tip {
            height: block.header.height,
            block_id: block.id(),
            time: block.header.time,
        };
        let changes = Arc::clone(&executed.changes);
        let job = Job {
            block,
            executed,
            certificate,
            durability,
        };
        let jobs = self.jobs.as_ref().ok_or(CatchUpError::WriterGone)?;
        jobs.try_send(job).map_err(|err| match err {
            TrySendError::Full(_) => CatchUpError::NoRoom,
            TrySendError::Disconnected(_) => CatchUpError::WriterGone,
        })?;
        self.in_flight.push_back(InFlight {
            tip,
            changes,
            void: false,
        });
        Ok(())
    }

    /// Waits until another block may be sent.
    pub fn make_room(&mut self) -> Result<(), CatchUpError> {
        while self.in_flight.len() >= MAX_BLOCKS_IN_FLIGHT {
            self.take_report(true)?;
        }
        Ok(())
    }

    /// Waits until every block sent is written (or refused).
    pub fn settle(&mut self) -> Result<(), CatchUpError> {
        while !self.in_flight.is_empty() {
            self.take_report(true)?;
        }
        Ok(())
    }

    /// Takes in what the writer has reported so far, without waiting.
    pub fn collect(&mut self) -> Result<(), CatchUpError> {
        while !self.in_flight.is_empty() && self.take_report(false)? {}
        Ok(())
    }

    /// One report, in the order the blocks were sent: `false` if none is ready and
    /// `wait` is not set.
    pub(crate) fn take_report(&mut self, wait: bool) -> Result<bool, CatchUpError> {
        let report = match wait {
            true => self.reports.recv().map_err(|_| CatchUpError::WriterGone)?,
            false => match self.reports.try_recv() {
                Ok(report) => report,
                Err(TryRecvError::Empty) => return Ok(false),
                Err(TryRecvError::Disconnected) => return Err(CatchUpError::WriterGone),
            },
        };
        let block = self.in_flight.pop_front().ok_or(CatchUpError::WriterGone)?;
        match report? {
            Written::Committed | Written::Skipped => {}
            Written::Refused(err) => {
                tracing::warn!(%err, height = block.tip.height.0, "peer's committed block does not verify");
                for later in &mut self.in_flight {
                    later.void = true;
                }
            }
        }
        Ok(true)
    }
}

impl Drop for CatchUp {
    fn drop(&mut self) {
        // The writer finishes what it holds, then sees its inbox closed.
        self.jobs = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the catch-up writer thread panicked");
        }
    }
}

/// The writer's side: the state root checked against the tree, then the commit (the
/// certificate was checked before the block was executed). Err only when this node's
/// storage or state fails ([`ChainError::is_local`]).
fn write(shared: &Shared, job: Job) -> Result<Written, ChainError> {
    let chain = &shared.chain;
    let tip = chain.tip()?;
    let header = &job.block.header;
    if header.height != tip.height.next() || header.prev_block_id != tip.block_id {
        return not_written(shared, Written::Skipped);
    }
    let refused = |err: ChainError| match err.is_local() {
        true => Err(err),
        false => not_written(shared, Written::Refused(err)),
    };
    let proposal = match chain.check_state_root(job.block, job.executed) {
        Ok(proposal) => proposal,
        Err(err) => return refused(err),
    };
    if let Err(err) = chain.commit_checked(&proposal, &job.certificate, job.durability) {
        return refused(err);
    }
    tracing::info!(
        height = proposal.block.header.height.0,
        "caught up a block from a peer"
    );
    shared.after_commit(&proposal);
    Ok(Written::Committed)
}

/// A block that is not written may have been the one to sync the log (see
/// `MAX_UNSYNCED_BLOCKS`, counted when the driver hands blocks over): the blocks written
/// before it are made durable here instead.
fn not_written(shared: &Shared, written: Written) -> Result<Written, ChainError> {
    shared.chain.storage().sync()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use bidchain_runtime::state::StateKey;

    use super::*;
    use crate::testing::genesis_for;

    /// A key's newest change wins, a deletion hides the stored value, and a key no layer
    /// changes is read from storage.
    #[test]
    fn a_pending_view_reads_the_newest_change_first() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), &genesis_for(&[1], &[])).unwrap();
        let stored = StateKey::ValidatorSet.to_bytes();
        let value = |v: &[u8]| Some(v.to_vec());
        let older = Changes::from([(b"k".to_vec(), value(b"old")), (b"j".to_vec(), value(b"j"))]);
        let newer = Changes::from([(b"k".to_vec(), value(b"new")), (stored.clone(), None)]);
        let view = |layers: Vec<Changes>| Pending {
            base: storage.clone(),
            layers: layers.into_iter().map(Arc::new).collect(),
        };

        let both = view(vec![older.clone(), newer]);
        assert_eq!(both.get(b"k").unwrap(), value(b"new"));
        assert_eq!(both.get(b"j").unwrap(), value(b"j"));
        assert_eq!(both.get(&stored).unwrap(), None);
        assert_eq!(both.get(b"absent").unwrap(), None);

        let stored_value = StateView::get(&storage, &stored).unwrap();
        assert!(stored_value.is_some());
        assert_eq!(view(vec![older]).get(&stored).unwrap(), stored_value);
    }
}
