//! Group commit for the hub's backends, as tasks: a request queues its
//! command and waits as a task; one drain task per organization takes
//! everything queued while its last group committed — lingering, by the
//! store's rule ([`Pace`]), while fewer are queued than its last group
//! held — and commits it as the next group, each command decided in
//! arrival order. No thread waits per request in flight:
//! `spkey_store::group`, the store's own algorithm, parks a thread per
//! caller — right for a library's callers, which are threads, but for the
//! hub a pool thread, a wake-up and a switch per request (docs/hub.md has
//! the profile).

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use spkey_store::group::{Pace, answer_each};
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
            let mut pace = Pace::default();
            while let Some(first) = jobs.recv().await {
                group.push(first);
                while group.len() < MAX_GROUP {
                    match jobs.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                // The store's rule: fewer queued than the last group held,
                // and the requests just answered are about to come again.
                // tokio's timer ticks in milliseconds: the wait ends at the
                // tick after its time.
                let (enough, linger) = pace.linger();
                let enough = enough.min(MAX_GROUP);
                if group.len() < enough {
                    let until = tokio::time::Instant::now() + linger;
                    while group.len() < enough {
                        match tokio::time::timeout_at(until, jobs.recv()).await {
                            Ok(Some(job)) => group.push(job),
                            Ok(None) | Err(_) => break,
                        }
                    }
                }
                let started = std::time::Instant::now();
                let (commands, answers): (Vec<C>, Vec<_>) = group.drain(..).unzip();
                let size = answers.len();
                let outcomes = match AssertUnwindSafe(commit(commands)).catch_unwind().await {
                    Ok(Ok(outcomes)) if outcomes.len() == size => Ok(outcomes),
                    Ok(Err(failure)) => Err(failure),
                    Ok(Ok(_)) | Err(_) => {
                        Err(HubError::Unavailable("the group commit failed".into()))
                    }
                };
                pace.committed(size, started.elapsed());
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

    /// A batcher whose commits take 2 ms of tokio's (paused) time and log
    /// each group's size, and a group of four already committed through it:
    /// the next group waits for four, up to a millisecond.
    async fn after_a_group_of_four() -> (Arc<Batcher<u32, u32>>, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let batcher = Arc::new(Batcher::start({
            let sizes = sizes.clone();
            move |commands: Vec<u32>| {
                sizes.lock().unwrap().push(commands.len());
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    Ok(commands)
                }
            }
        }));
        let four: Vec<_> = (0..4)
            .map(|c| {
                let b = batcher.clone();
                tokio::spawn(async move { b.submit(c).await.unwrap() })
            })
            .collect();
        for (c, answer) in (0..4).zip(four) {
            assert_eq!(answer.await.unwrap(), c);
        }
        assert_eq!(*sizes.lock().unwrap(), [4]);
        (batcher, sizes)
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_waits_for_as_many_as_the_last_one_held() {
        let (batcher, sizes) = after_a_group_of_four().await;
        let submit = |c: u32| {
            let b = batcher.clone();
            tokio::spawn(async move { b.submit(c).await.unwrap() })
        };
        // One arrives and its group is taken; three more come before any
        // time passes: they join it instead of forming the group after it.
        let first = submit(10);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (11..14).map(submit).collect();
        assert_eq!(first.await.unwrap(), 10);
        for (c, answer) in (11..14).zip(rest) {
            assert_eq!(answer.await.unwrap(), c);
        }
        assert_eq!(*sizes.lock().unwrap(), [4, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_no_one_joins_commits_after_a_millisecond_or_so() {
        let (batcher, sizes) = after_a_group_of_four().await;
        let sent = tokio::time::Instant::now();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(1), batcher.submit(7))
            .await
            .expect("a lone command waited for a group that never came");
        assert_eq!(answer.unwrap(), 7);
        // The linger (1 ms, ended at the timer's next tick) and the commit (2 ms).
        let took = sent.elapsed();
        assert!(
            took <= std::time::Duration::from_millis(4),
            "waited {took:?}"
        );
        assert_eq!(*sizes.lock().unwrap(), [4, 1]);
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
