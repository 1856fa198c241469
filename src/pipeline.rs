//! The one write pipeline — load → decide → append — over any storage.
//!
//! Every `CreateUser`, whether a local command, an event a device pushed to
//! a hub, or an event a device pulled, goes through [`Pipeline::execute`]:
//! load the user and the email's owner, [`decide`](crate::decide), stamp,
//! append, keep the email index. The store's redb transaction implements
//! [`Log`]; so does [`Staged`], the part of a log one batch touches, loaded
//! from another database (the hub on PostgreSQL) and decided in memory
//! before it is written back in one statement. Both run this code, so the
//! rules cannot drift between engines: a backend supplies reads and writes,
//! never decisions.
//!
//! [`Pipeline`] is implemented for every [`Log`] and for nothing else, so
//! its methods cannot be overridden by a backend.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use uuid::{ContextV7, Timestamp, Uuid};

use crate::clock::Clock;
use crate::error::StoreError;
use crate::event::{Event, MAX_RECORDED_AT_MS, RecordedEvent, UserCreated, UserCreationRejected};
use crate::scope::Scope;
use crate::store::Outcome;
use crate::sync::Push;
use crate::user::{self, CreateUser, Decision, Field, FieldError, Rejection, User};

/// The reads and writes the pipeline needs from a log. A backend implements
/// these and nothing else; the rules are [`Pipeline`]'s.
pub trait Log {
    /// The id stamped as the origin of the events this log records itself.
    fn origin(&self) -> Uuid;

    /// The last position in the log, 0 when empty; moved by
    /// [`put_event`](Self::put_event).
    fn head(&self) -> u64;

    /// A new event id and the time to record, for an event recorded here.
    ///
    /// # Errors
    ///
    /// [`StoreError::ClockOutOfRange`] when the clock reads outside years
    /// 1970–9999.
    fn stamp(&self) -> Result<(Uuid, i64), StoreError>;

    /// One user's events, in version order.
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    fn stream(&self, user: Uuid) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The user holding `email_key` (see [`email_key`](crate::email_key)).
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    fn email_owner(&self, email_key: &str) -> Result<Option<Uuid>, StoreError>;

    /// The position of the event with this id, if it came from another log
    /// (or has been listed for sync).
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    fn position_of(&self, event_id: Uuid) -> Result<Option<u64>, StoreError>;

    /// Writes `recorded` at its position (the head's next) with its stream
    /// row, and its event-id row when it `came_from_elsewhere`.
    ///
    /// # Errors
    ///
    /// The write failures of [`StoreError`].
    fn put_event(
        &mut self,
        recorded: &RecordedEvent,
        came_from_elsewhere: bool,
    ) -> Result<(), StoreError>;

    /// Sets (or with `None` frees) the owner of `email_key`.
    ///
    /// # Errors
    ///
    /// The write failures of [`StoreError`].
    fn set_email_owner(&mut self, email_key: &str, owner: Option<Uuid>) -> Result<(), StoreError>;
}

/// Where an appended event was first recorded.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// Here, now: stamped with a new id, this log as origin, the clock's
    /// time.
    Local,
    /// By another store (a push on the hub, a pull on a device): it keeps
    /// its id, origin and time, so ids recognise it everywhere, and is
    /// indexed by id at once.
    From(&'a RecordedEvent),
}

/// What [`Pipeline::execute`] made of a valid creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executed {
    /// Appended now.
    Recorded(RecordedEvent),
    /// The same user with identical data is already recorded: its current
    /// creation (not an earlier, refused one).
    AlreadyRecorded(RecordedEvent),
    /// Rejected; nothing written.
    Rejected(Rejection),
}

impl From<Executed> for Outcome {
    fn from(executed: Executed) -> Outcome {
        match executed {
            Executed::Recorded(event) => Outcome::Created(event),
            Executed::AlreadyRecorded(event) => Outcome::Replayed(event),
            Executed::Rejected(rejection) => Outcome::Rejected(rejection),
        }
    }
}

/// A pushed event's outcome on the hub: its hub position, or why it was
/// refused.
pub type Accepted = (Uuid, Result<u64, Rejection>);

/// The pipeline's steps, for every [`Log`].
pub trait Pipeline: Log {
    /// A user's current state.
    ///
    /// # Errors
    ///
    /// The read failures of [`StoreError`].
    fn user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        Ok(self.stream(id)?.into_iter().fold(None, user::apply))
    }

    /// The user's latest `UserCreated`: the one its state was folded from.
    /// (A user refused by the hub and created again has two.)
    ///
    /// # Errors
    ///
    /// [`StoreError::Inconsistent`] when the user has none; the read
    /// failures of [`StoreError`].
    fn current_creation(&self, user_id: Uuid) -> Result<RecordedEvent, StoreError> {
        self.stream(user_id)?
            .into_iter()
            .rev()
            .find(|e| matches!(e.event, Event::UserCreated(_)))
            .ok_or_else(|| StoreError::Inconsistent(format!("user {user_id} has no creation")))
    }

    /// The pipeline: loads the user and the email's owner, decides, and
    /// appends what the decision records.
    ///
    /// # Errors
    ///
    /// The failures of the log's reads and writes, and of stamping.
    fn execute(
        &mut self,
        created: UserCreated,
        source: Source<'_>,
    ) -> Result<Executed, StoreError> {
        let user_id = created.user_id;
        let current = self.user(user_id)?;
        // Folding and normalizing an email is a tenth of a create's time:
        // the key is made once, for the decision and for the index.
        let email_key = created.email_key();
        let owner = self.email_owner(&email_key)?;
        Ok(match user::decide(current.as_ref(), owner, created) {
            Err(rejection) => Executed::Rejected(rejection),
            Ok(Decision::AlreadyRecorded) => {
                Executed::AlreadyRecorded(self.current_creation(user_id)?)
            }
            Ok(Decision::Record(event)) => {
                let recorded = self.append(event, current.as_ref(), source)?;
                // A creation takes its email.
                self.set_email_owner(&email_key, Some(user_id))?;
                Executed::Recorded(recorded)
            }
        })
    }

    /// A command recorded here: validated, then [`create`](Self::create)d.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    fn execute_command(&mut self, command: &CreateUser) -> Result<Outcome, StoreError> {
        match validated(command) {
            Ok(created) => self.create(created),
            Err(rejection) => Ok(Outcome::Rejected(rejection)),
        }
    }

    /// A creation made here, already validated: [`execute`](Self::execute)d
    /// as this log's own, and answered as the API answers.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    fn create(&mut self, created: UserCreated) -> Result<Outcome, StoreError> {
        Ok(self.execute(created, Source::Local)?.into())
    }

    /// Appends a decided event at the next position, as the next version of
    /// its user (`current`, as loaded in this transaction). The email index
    /// is kept by the event's maker ([`execute`](Self::execute) for a
    /// creation, [`compensate`](Self::compensate) for a refusal), which
    /// holds the key already.
    ///
    /// # Errors
    ///
    /// The failures of the log's writes, and of stamping.
    fn append(
        &mut self,
        event: Event,
        current: Option<&User>,
        source: Source<'_>,
    ) -> Result<RecordedEvent, StoreError> {
        let (event_id, recorded_at_ms, origin) = match source {
            Source::Local => {
                let (id, at) = self.stamp()?;
                (id, at, self.origin())
            }
            Source::From(from) => (from.event_id, from.recorded_at_ms, from.origin),
        };
        let recorded = RecordedEvent {
            event_id,
            version: current.map_or(0, |user| user.version) + 1,
            position: self.head() + 1,
            recorded_at_ms,
            origin,
            event,
        };
        self.put_event(&recorded, matches!(source, Source::From(_)))?;
        Ok(recorded)
    }

    /// Appends the `UserCreationRejected` for `refused`, one of this log's
    /// creations that the hub refused.
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append).
    fn compensate(
        &mut self,
        refused: &RecordedEvent,
        code: u16,
        details: Vec<FieldError>,
    ) -> Result<RecordedEvent, StoreError> {
        let user_id = refused.aggregate_id();
        let current = self.user(user_id)?;
        let event = Event::UserCreationRejected(UserCreationRejected {
            user_id,
            rejected_event_id: refused.event_id,
            code,
            details,
        });
        let recorded = self.append(event, current.as_ref(), Source::Local)?;
        // A refused user's email is free again, unless someone else holds
        // it already.
        if let Some(user) = current {
            let email = user.profile.email_key();
            if self.email_owner(&email)? == Some(user_id) {
                self.set_email_owner(&email, None)?;
            }
        }
        Ok(recorded)
    }

    /// The hub's decision on a device's push by a caller of `scope`: an
    /// event of a user outside the scope is refused (403) before anything
    /// of it is read; each event seen before is accepted again at its first
    /// position (so a repeated push gets the same reply and changes
    /// nothing); every other is executed.
    ///
    /// # Errors
    ///
    /// The failures of the log's reads and writes.
    fn accept_push(&mut self, push: &Push, scope: Scope) -> Result<Vec<Accepted>, StoreError> {
        push.events
            .iter()
            .map(|recorded| {
                if let Err(forbidden) = scope.authorize(recorded.aggregate_id(), Field::UserId) {
                    return Ok((recorded.event_id, Err(forbidden)));
                }
                let outcome = match self.position_of(recorded.event_id)? {
                    Some(position) => Ok(position),
                    None => match self.execute(push_creation(recorded), Source::From(recorded))? {
                        Executed::Recorded(event) => Ok(event.position),
                        // The same data, but created by another event
                        // (another device): this one is not the user's
                        // creation.
                        Executed::AlreadyRecorded(_) => {
                            Err(Rejection::Conflict(vec![FieldError::created_elsewhere()]))
                        }
                        Executed::Rejected(rejection) => Err(rejection),
                    },
                };
                Ok((recorded.event_id, outcome))
            })
            .collect()
    }
}

impl<L: Log + ?Sized> Pipeline for L {}

/// Validates `command`: the creation it asks for, or why an invalid command
/// is rejected. Reads nothing of a log, so a caller may run it before a
/// write begins (`Store::create_user` does, before joining a group).
pub(crate) fn validated(command: &CreateUser) -> Result<UserCreated, Rejection> {
    command.validate().map_err(Rejection::Invalid)
}

/// The creation a checked push event carries.
pub(crate) fn push_creation(recorded: &RecordedEvent) -> UserCreated {
    match &recorded.event {
        Event::UserCreated(created) => created.clone(),
        // Batches are checked as they are opened: only creations pass.
        Event::UserCreationRejected(_) => unreachable!("only creations pass the batch check"),
    }
}

/// Gives a log's new events their id and time: event ids are v7 UUIDs from
/// one counter, so they increase within a log and an id index is appended
/// at its right edge like the log (random ids within a millisecond left its
/// pages half full and dirtied a random page each).
pub struct Stamper {
    clock: Arc<dyn Clock>,
    ids: Mutex<ContextV7>,
}

impl Stamper {
    /// A stamper reading `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Stamper {
            clock,
            ids: Mutex::new(ContextV7::new()),
        }
    }

    /// A new event id and the time to record.
    ///
    /// # Errors
    ///
    /// [`StoreError::ClockOutOfRange`] when the clock reads outside years
    /// 1970–9999.
    pub fn next(&self) -> Result<(Uuid, i64), StoreError> {
        let now = self.clock.now_ms();
        if !(0..=MAX_RECORDED_AT_MS).contains(&now) {
            return Err(StoreError::ClockOutOfRange(now));
        }
        // In range, so both conversions are exact.
        let (secs, millis) = ((now / 1000) as u64, (now % 1000) as u32);
        // Held only to draw one id; a panic while holding it leaves a valid
        // counter.
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let ts = Timestamp::from_unix(&*ids, secs, millis * 1_000_000);
        Ok((Uuid::new_v7(ts), now))
    }
}

/// What a batch's decisions read: the users, email keys and event ids a
/// [`Staged`] log must be loaded with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Users whose whole streams are read.
    pub users: Vec<Uuid>,
    /// Email keys whose owners are read.
    pub email_keys: Vec<String>,
    /// Event ids whose positions are read.
    pub event_ids: Vec<Uuid>,
}

impl Needs {
    /// What [`Pipeline::accept_push`] reads for `push` by a caller of
    /// `scope` (nothing of the events it refuses).
    pub fn of_push(push: &Push, scope: Scope) -> Needs {
        let allowed = || {
            push.events
                .iter()
                .filter(move |recorded| scope.covers(recorded.aggregate_id()))
        };
        let mut needs = Needs::of_creations(allowed().filter_map(|recorded| {
            match &recorded.event {
                Event::UserCreated(created) => Some(created),
                // Batches are checked as they are opened: only creations pass.
                Event::UserCreationRejected(_) => None,
            }
        }));
        needs.event_ids = allowed().map(|e| e.event_id).collect();
        needs.dedup();
        needs
    }

    /// What [`Pipeline::execute`] reads for each of `created`, in turn.
    pub fn of_creations<'a>(created: impl IntoIterator<Item = &'a UserCreated>) -> Needs {
        let mut needs = Needs::default();
        for created in created {
            needs.users.push(created.user_id);
            needs.email_keys.push(created.email_key());
        }
        needs.dedup();
        needs
    }

    fn dedup(&mut self) {
        self.users.sort_unstable();
        self.users.dedup();
        self.email_keys.sort_unstable();
        self.email_keys.dedup();
        self.event_ids.sort_unstable();
        self.event_ids.dedup();
    }
}

/// The part of a log one batch touches, loaded from another database and
/// decided in memory: a backend locks its head, loads what the batch
/// [`Needs`], runs the [`Pipeline`] here, and writes [`appended`] and
/// [`email_changes`] back in the same transaction.
///
/// A read of anything not loaded is refused with
/// [`StoreError::Inconsistent`] rather than answered as absent: an
/// incomplete load must not turn into a wrong decision.
///
/// [`appended`]: Staged::appended
/// [`email_changes`]: Staged::email_changes
pub struct Staged<'s> {
    origin: Uuid,
    stamper: &'s Stamper,
    head: u64,
    streams: HashMap<Uuid, Vec<RecordedEvent>>,
    emails: HashMap<String, Option<Uuid>>,
    event_ids: HashMap<Uuid, Option<u64>>,
    appended: Vec<RecordedEvent>,
    email_changes: BTreeMap<String, Option<Uuid>>,
}

impl<'s> Staged<'s> {
    /// A log at `head` whose `needs` read as empty until loaded.
    pub fn new(origin: Uuid, stamper: &'s Stamper, head: u64, needs: &Needs) -> Self {
        Staged {
            origin,
            stamper,
            head,
            streams: needs.users.iter().map(|u| (*u, Vec::new())).collect(),
            emails: needs.email_keys.iter().map(|k| (k.clone(), None)).collect(),
            event_ids: needs.event_ids.iter().map(|e| (*e, None)).collect(),
            appended: Vec::new(),
            email_changes: BTreeMap::new(),
        }
    }

    /// Loads the next event (in version order) of a needed user's stream.
    ///
    /// # Errors
    ///
    /// [`StoreError::Inconsistent`] when the user was not needed or the
    /// event is not the stream's next version.
    pub fn load_event(&mut self, recorded: RecordedEvent) -> Result<(), StoreError> {
        let user = recorded.aggregate_id();
        let stream = self
            .streams
            .get_mut(&user)
            .ok_or_else(|| not_needed(format!("user {user}")))?;
        if recorded.version != stream.len() as u64 + 1 {
            return Err(StoreError::Inconsistent(format!(
                "user {user}'s stream has version {} after {}",
                recorded.version,
                stream.len()
            )));
        }
        stream.push(recorded);
        Ok(())
    }

    /// Loads the owner of a needed email key.
    ///
    /// # Errors
    ///
    /// [`StoreError::Inconsistent`] when the key was not needed.
    pub fn load_email(&mut self, email_key: &str, owner: Uuid) -> Result<(), StoreError> {
        *self
            .emails
            .get_mut(email_key)
            .ok_or_else(|| not_needed(format!("email key {email_key:?}")))? = Some(owner);
        Ok(())
    }

    /// Loads the position of a needed event id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Inconsistent`] when the id was not needed.
    pub fn load_event_id(&mut self, event_id: Uuid, position: u64) -> Result<(), StoreError> {
        *self
            .event_ids
            .get_mut(&event_id)
            .ok_or_else(|| not_needed(format!("event {event_id}")))? = Some(position);
        Ok(())
    }

    /// The events appended, in position order.
    pub fn appended(&self) -> &[RecordedEvent] {
        &self.appended
    }

    /// The email index's changes: each key's new owner, `None` for freed.
    pub fn email_changes(&self) -> impl Iterator<Item = (&str, Option<Uuid>)> {
        self.email_changes.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

fn not_needed(what: String) -> StoreError {
    StoreError::Inconsistent(format!("{what} was not loaded for this batch"))
}

impl Log for Staged<'_> {
    fn origin(&self) -> Uuid {
        self.origin
    }

    fn head(&self) -> u64 {
        self.head
    }

    fn stamp(&self) -> Result<(Uuid, i64), StoreError> {
        self.stamper.next()
    }

    fn stream(&self, user: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        self.streams
            .get(&user)
            .cloned()
            .ok_or_else(|| not_needed(format!("user {user}")))
    }

    fn email_owner(&self, email_key: &str) -> Result<Option<Uuid>, StoreError> {
        self.emails
            .get(email_key)
            .copied()
            .ok_or_else(|| not_needed(format!("email key {email_key:?}")))
    }

    fn position_of(&self, event_id: Uuid) -> Result<Option<u64>, StoreError> {
        self.event_ids
            .get(&event_id)
            .copied()
            .ok_or_else(|| not_needed(format!("event {event_id}")))
    }

    fn put_event(
        &mut self,
        recorded: &RecordedEvent,
        came_from_elsewhere: bool,
    ) -> Result<(), StoreError> {
        let user = recorded.aggregate_id();
        self.streams
            .get_mut(&user)
            .ok_or_else(|| not_needed(format!("user {user}")))?
            .push(recorded.clone());
        if came_from_elsewhere {
            self.event_ids
                .insert(recorded.event_id, Some(recorded.position));
        }
        self.head = recorded.position;
        self.appended.push(recorded.clone());
        Ok(())
    }

    fn set_email_owner(&mut self, email_key: &str, owner: Option<Uuid>) -> Result<(), StoreError> {
        self.emails.insert(email_key.to_owned(), owner);
        self.email_changes.insert(email_key.to_owned(), owner);
        Ok(())
    }
}
