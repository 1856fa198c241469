//! Group commit for the hub's backends, as tasks: a request queues its
//! command and waits as a task; one drain task per organization takes
//! everything queued while its last group committed and commits it as the
//! next group, each command decided in arrival order. No thread waits per
//! request in flight: `spkey_store::group`, the store's own algorithm,
//! parks a thread per caller — right for a library's callers, which are
//! threads, but for the hub a pool thread, a wake-up and a switch per
//! request (docs/hub.md has the profile).

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use spkey_store::group::answer_each;
use tokio::sync::{mpsc, oneshot};

use crate::storage::HubError;

/// A queued command and where its answer goes.
type Job<C, A> = (C, oneshot::Sender<Result<A, HubError>>);

/// The most commands one group takes.
pub(crate) const MAX_GROUP: usize = 256;

/// An organization's queue of commands and the task that commits them.
/// Dropping it closes the queue; the task commits what is queued and ends.
pub(crate) struct Batcher<C, A> {
    queue: mpsc::UnboundedSender<Job<C, A>>,
}

impl<C: Send + 'static, A: Send + 'static> Batcher<C, A> {
    /// Starts the drain task on the current tokio runtime. `commit` runs
    /// one group as a whole, returning each command's outcome in order; a
    /// group that fails gives each of its commands the failure (nothing of
    /// it was committed), one that panics or answers too few gives each
    /// [`HubError::Unavailable`], and the next group goes on.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub(crate) fn start<F, Fut>(mut commit: F) -> Self
    where
        F: FnMut(Vec<C>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<A>, HubError>> + Send + 'static,
    {
        // Unbounded: what may wait here is capped before it arrives (the
        // server's requests in flight, per organization and in all).
        let (queue, mut jobs) = mpsc::unbounded_channel::<Job<C, A>>();
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while let Some(first) = jobs.recv().await {
                group.push(first);
                while group.len() < MAX_GROUP {
                    match jobs.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                let (commands, answers): (Vec<C>, Vec<_>) = group.drain(..).unzip();
                let size = answers.len();
                let outcomes = match AssertUnwindSafe(commit(commands)).catch_unwind().await {
                    Ok(Ok(outcomes)) if outcomes.len() == size => Ok(outcomes),
                    Ok(Err(failure)) => Err(failure),
                    Ok(Ok(_)) | Err(_) => {
                        Err(HubError::Unavailable("the group commit failed".into()))
                    }
                };
                let outcomes = answer_each(size, outcomes, HubError::duplicate);
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    // A client that hung up dropped its receiver; its
                    // command was decided all the same.
                    let _ = answer.send(outcome);
                }
            }
        });
        Batcher { queue }
    }

    /// Queues `command` for the next group and waits for its answer. The
    /// command is decided (and, if it records, committed) even when the
    /// caller stops waiting.
    ///
    /// # Errors
    ///
    /// `commit`'s error for the command's group, or
    /// [`HubError::Unavailable`] when the group failed without one.
    pub(crate) async fn submit(&self, command: C) -> Result<A, HubError> {
        let (answer, outcome) = oneshot::channel();
        self.queue
            .send((command, answer))
            .map_err(|_| HubError::Unavailable("the organization's writer has stopped".into()))?;
        outcome
            .await
            .map_err(|_| HubError::Unavailable("the organization's writer stopped".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A batcher whose commits wait for `gate` and log each group's size.
    fn gated(
        gate: Arc<tokio::sync::Semaphore>,
        sizes: Arc<Mutex<Vec<usize>>>,
    ) -> Batcher<u32, u32> {
        Batcher::start(move |commands: Vec<u32>| {
            let (gate, sizes) = (gate.clone(), sizes.clone());
            async move {
                sizes.lock().unwrap().push(commands.len());
                gate.acquire().await.unwrap().forget();
                if commands.contains(&666) {
                    panic!("a planted failure");
                }
                Ok(commands.into_iter().map(|c| c * 2).collect())
            }
        })
    }

    #[tokio::test]
    async fn what_queues_during_a_commit_is_the_next_group_answered_in_order() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let batcher = Arc::new(gated(gate.clone(), sizes.clone()));
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.submit(1).await.unwrap() }
        });
        // The first group (of one) is committing; ten more queue meanwhile.
        while sizes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (2..12)
            .map(|c| {
                let b = batcher.clone();
                tokio::spawn(async move { b.submit(c).await.unwrap() })
            })
            .collect();
        // One thread: every task runs to its wait before the gate opens.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(100);
        assert_eq!(first.await.unwrap(), 2);
        for (c, answer) in (2..12).zip(rest) {
            assert_eq!(answer.await.unwrap(), c * 2);
        }
        assert_eq!(*sizes.lock().unwrap(), [1, 10]);
    }

    #[tokio::test]
    async fn a_commit_that_panics_answers_its_group_and_the_next_goes_on() {
        let gate = Arc::new(tokio::sync::Semaphore::new(100));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let batcher = gated(gate, sizes);
        assert!(matches!(
            batcher.submit(666).await,
            Err(HubError::Unavailable(_))
        ));
        assert_eq!(batcher.submit(7).await.unwrap(), 14);
    }
}
