//! Group commit, the one algorithm of the store and of the hub (whose
//! batcher runs it as tasks, with this module's [`Pace`] and
//! [`answer_each`]): concurrent writers share one transaction and one
//! sync. The first caller to find no commit under way leads: it takes every
//! command queued so far, runs them as one batch, hands each caller its own
//! answer, and steps down; callers that arrived meanwhile form the next
//! group. Each caller is answered only after the commit holding its
//! command is durable, exactly as if it had committed alone.
//!
//! A new leader lingers briefly when fewer callers are queued than joined the
//! last group: the callers just answered are usually about to submit again,
//! and without the wait groups alternate between one straggler and everyone
//! else, which halves the sharing. The wait is at most half the last
//! commit's time (and a millisecond); a lone caller never waits at all, as
//! its last group had one command and one is queued.
//!
//! The callers are threads (the hub's async requests reach it from tokio's
//! blocking pool). It knows nothing of stores or errors: a batch answers
//! each of its commands, failures included, and a leader that panics or
//! answers too few leaves the rest [`Lost`], never waiting forever.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A command whose group ended without answering it: its leader panicked
/// (or its batch gave fewer answers than commands). Whether the command
/// was committed is unknown to the group; callers retry or report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost;

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the group commit holding this command ended without an answer")
    }
}

impl std::error::Error for Lost {}

/// One caller's answer, once its group has ended.
type Slot<A> = Arc<Mutex<Option<Result<A, Lost>>>>;

struct Queue<C, A> {
    waiting: Vec<(C, Slot<A>)>,
    leading: bool,
    pace: Pace,
}

/// The longest a leader lingers, whatever the last commit took.
const MAX_LINGER: Duration = Duration::from_millis(1);

/// How long a new leader lingers for more commands (see the module docs):
/// the one rule of the store's group commit and of the hub's batcher, which
/// commits as tasks what this module commits as threads.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pace {
    /// How many commands the last group held, and how long it took.
    last_size: usize,
    last_took: Duration,
}

impl Pace {
    /// How many queued commands the next group waits for (as many as the
    /// last group held), and for how long at most (half the last commit's
    /// time, and a millisecond). Fewer queued than that, and a leader
    /// waits until they come or the time is up; as many, and it does not
    /// wait at all.
    #[must_use]
    pub fn linger(&self) -> (usize, Duration) {
        (self.last_size, (self.last_took / 2).min(MAX_LINGER))
    }

    /// Records the group just committed: how many commands it held and
    /// how long its commit took.
    pub fn committed(&mut self, size: usize, took: Duration) {
        self.last_size = size;
        self.last_took = took;
    }
}

/// The queue of commands (`C`) waiting for the next group commit, each
/// caller answered with an `A`.
pub struct Group<C, A> {
    queue: Mutex<Queue<C, A>>,
    /// Signalled when a command joins the queue: only a lingering leader
    /// waits here, so an arrival does not wake every waiting caller.
    arrived: Condvar,
    /// Signalled when a group has been answered and leadership is free.
    answered: Condvar,
}

impl<C, A> Default for Group<C, A> {
    fn default() -> Self {
        Group {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                leading: false,
                pace: Pace::default(),
            }),
            arrived: Condvar::new(),
            answered: Condvar::new(),
        }
    }
}

impl<C, A> std::fmt::Debug for Group<C, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A leader's panic is answered by `Leading::drop`; the queue itself is
    // only pushed to and taken from, so it stays consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<C, A> Group<C, A> {
    /// Runs `command` in the next group and returns its answer. `run`
    /// executes a whole group as one batch, in the order its commands were
    /// submitted, and answers each of them in that order (the leader's own
    /// `run` is the one called; the others' are dropped unused).
    ///
    /// # Errors
    ///
    /// [`Lost`] when the group's leader panicked inside `run`, or `run`
    /// answered fewer commands than it was given. The leader's panic itself
    /// goes on unwinding in the leader's thread.
    pub fn submit(&self, command: C, run: impl FnOnce(Vec<C>) -> Vec<A>) -> Result<A, Lost> {
        let slot: Slot<A> = Arc::new(Mutex::new(None));
        let mut queue = lock(&self.queue);
        queue.waiting.push((command, slot.clone()));
        self.arrived.notify_one();
        loop {
            if let Some(answer) = lock(&slot).take() {
                return answer;
            }
            if !queue.leading {
                break;
            }
            // Never reached on one thread, where no other caller can be
            // leading.
            queue = self.answered.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
        queue.leading = true;
        let (enough, linger) = queue.pace.linger();
        let until = Instant::now() + linger;
        while queue.waiting.len() < enough {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queue = self
                .arrived
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let (commands, slots): (Vec<_>, Vec<_>) =
            std::mem::take(&mut queue.waiting).into_iter().unzip();
        drop(queue);

        let leading = Leading {
            group: self,
            slots,
            started: Instant::now(),
        };
        for (slot, answer) in leading.slots.iter().zip(run(commands)) {
            *lock(slot) = Some(Ok(answer));
        }
        drop(leading);
        lock(&slot).take().unwrap_or(Err(Lost))
    }
}

/// Each command's answer from a batch that committed as a whole or failed
/// as a whole: its outcomes, or a copy of its failure for every command
/// (`duplicate`: the error types of storage engines do not clone).
pub fn answer_each<A, E>(
    size: usize,
    batch: Result<Vec<A>, E>,
    duplicate: impl Fn(&E) -> E,
) -> Vec<Result<A, E>> {
    match batch {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(error) => (0..size).map(|_| Err(duplicate(&error))).collect(),
    }
}

/// A leader's group between taking it and stepping down. Dropping it —
/// after `run` returned, or while a panic in `run` unwinds — answers every
/// caller `run` did not answer with [`Lost`] and frees leadership, so no
/// caller waits for a leader that is gone.
struct Leading<'g, C, A> {
    group: &'g Group<C, A>,
    slots: Vec<Slot<A>>,
    started: Instant,
}

impl<C, A> Drop for Leading<'_, C, A> {
    fn drop(&mut self) {
        for slot in &self.slots {
            lock(slot).get_or_insert(Err(Lost));
        }
        {
            let mut queue = lock(&self.group.queue);
            queue.leading = false;
            queue
                .pace
                .committed(self.slots.len(), self.started.elapsed());
        }
        self.group.answered.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_caller_gets_its_own_answer() {
        let group: Group<u32, u32> = Group::default();
        let answer = group.submit(7, |batch| batch.into_iter().map(|c| c * 2).collect());
        assert_eq!(answer, Ok(14));
    }

    #[test]
    fn concurrent_callers_each_get_their_own_answer_and_share_batches() {
        let group: Group<u32, u32> = Group::default();
        let batches = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..8u32 {
                let (group, batches) = (&group, &batches);
                s.spawn(move || {
                    for i in 0..200 {
                        let command = t * 1_000 + i;
                        let answer = group.submit(command, |batch| {
                            lock(batches).push(batch.len());
                            // Long enough for the others to queue behind.
                            std::thread::sleep(Duration::from_micros(200));
                            batch.into_iter().map(|c| c + 1).collect()
                        });
                        assert_eq!(answer, Ok(command + 1));
                    }
                });
            }
        });
        let batches = batches.into_inner().unwrap();
        assert_eq!(batches.iter().sum::<usize>(), 1_600);
        assert!(
            batches.len() < 1_600,
            "no two commands ever shared a batch ({} batches)",
            batches.len()
        );
    }

    #[test]
    fn a_leader_that_panics_leaves_its_group_lost_and_the_next_group_runs() {
        let group: Group<u32, u32> = Group::default();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            group.submit(1, |_| panic!("planted"))
        }));
        assert!(panicked.is_err());
        // Leadership was freed: the next caller leads and is answered.
        assert_eq!(group.submit(2, |batch| batch), Ok(2));
    }

    #[test]
    fn the_followers_of_a_leader_that_panics_are_answered_lost() {
        use std::sync::mpsc;
        let group: Group<u32, u32> = Group::default();
        let (started, blocked) = mpsc::channel::<()>();
        let (release, released) = mpsc::channel::<()>();
        let (answers, answered) = mpsc::channel();
        std::thread::scope(|s| {
            let group = &group;
            // A first leader holds its commit open while two callers queue
            // behind it; they form the next group, whose leader panics.
            s.spawn(move || {
                group.submit(0, |batch| {
                    started.send(()).unwrap();
                    released.recv().unwrap();
                    batch
                })
            });
            blocked.recv().unwrap();
            for command in [1, 2] {
                let answers = answers.clone();
                s.spawn(move || {
                    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        group.submit(command, |_| panic!("planted"))
                    }));
                    answers.send(answer.ok()).unwrap();
                });
            }
            std::thread::sleep(Duration::from_millis(50));
            release.send(()).unwrap();
            let mut got = Vec::new();
            for _ in 0..2 {
                got.push(
                    answered
                        .recv_timeout(Duration::from_secs(10))
                        .expect("a caller still waits for a leader that panicked"),
                );
            }
            // The leader's panic went on unwinding; its follower was told.
            assert!(got.contains(&None), "{got:?}");
            assert!(got.contains(&Some(Err(Lost))), "{got:?}");
        });
    }

    #[test]
    fn a_batch_answering_too_few_leaves_the_rest_lost() {
        let group: Group<u32, u32> = Group::default();
        assert_eq!(group.submit(1, |_| Vec::new()), Err(Lost));
        assert_eq!(group.submit(2, |batch| batch), Ok(2));
    }
}
