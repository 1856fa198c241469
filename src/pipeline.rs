//! The one write pipeline — load → decide → append — over any storage.
//!
//! Every command, whether a local command, an event a device pushed to a
//! hub, or an event a device pulled, goes through [`Pipeline::execute`]:
//! load the user and the owner of the email it sets, let the command's
//! [`Intent`] decide, stamp, append, keep the email index. Nothing here
//! knows which command it runs. The store's redb transaction implements
//! [`Log`]; so does [`Staged`], the part of a log one batch touches, loaded
//! from another database (the hub on PostgreSQL) and decided in memory
//! before it is written back in one statement. Both run this code, so the
//! rules cannot drift between engines: a backend supplies reads and writes,
//! never decisions.
//!
//! [`Pipeline`] is implemented for every [`Log`] and for nothing else, so
//! its methods cannot be overridden by a backend.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use crate::command::{Command, Decision, Intent, Outcome};
use crate::error::StoreError;
use crate::event::{Event, RecordedEvent, Refusal};
use crate::field::{Field, FieldError, Rejection};
pub use crate::log::{Log, Stamper};
use crate::scope::Scope;
use crate::user::{self, User};

/// Where an appended event was first recorded.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// Here, now: stamped with a new id, this log as origin, the clock's
    /// time.
    Local,
    /// By another store, pushed to this hub to decide: it keeps its id,
    /// origin and time, so ids recognise it everywhere, and is indexed by
    /// id at once.
    From(&'a RecordedEvent),
    /// By the hub, which decided it, pulled by this device: kept as
    /// `From`, and its email is not a conflict here. The importer has
    /// already compensated the pending local claims it beats; an accepted
    /// local claim of the same email was accepted later by the hub, whose
    /// later events free it from this one (the index keeps the holder
    /// meanwhile).
    Hub(&'a RecordedEvent),
}

impl<'a> Source<'a> {
    /// The event as another store recorded it, for `From` and `Hub`.
    fn recorded_elsewhere(self) -> Option<&'a RecordedEvent> {
        match self {
            Source::Local => None,
            Source::From(from) | Source::Hub(from) => Some(from),
        }
    }
}

/// What [`Pipeline::execute`] made of a valid command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executed {
    /// Appended now.
    Recorded(RecordedEvent),
    /// The identical command is already recorded, or the command changes
    /// nothing: the event the user's state came from.
    AlreadyRecorded(RecordedEvent),
    /// Rejected; nothing written.
    Rejected(Rejection),
}

impl From<Executed> for Outcome {
    fn from(executed: Executed) -> Outcome {
        match executed {
            Executed::Recorded(event) => Outcome::Recorded(event),
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
        Ok(user::fold(self.stream(id)?))
    }

    /// The pipeline: loads the user and another holder of the email the
    /// command sets, lets the command decide, appends what the decision
    /// records, and keeps the email index.
    ///
    /// # Errors
    ///
    /// The failures of the log's reads and writes, and of stamping.
    fn execute(&mut self, intent: Intent, source: Source<'_>) -> Result<Executed, StoreError> {
        let user_id = intent.user_id();
        let stream = self.stream(user_id)?;
        let current = user::fold(stream.clone());
        // Folding and normalizing an email is a tenth of a create's time:
        // the key is made once, for the decision and for the index.
        let claim = intent.email().map(|email| Claim {
            email: email.to_owned(),
            key: crate::email_key(email),
        });
        // The hub decided its events: another local holder of the email
        // is not a conflict here (see `Source::Hub`).
        let owner = match (&claim, source) {
            (Some(claim), Source::Local | Source::From(_)) => {
                self.email_holder(&claim.key, user_id)?
            }
            _ => None,
        };
        let event = match intent.decide(current.as_ref(), &stream, owner) {
            Err(rejection) => return Ok(Executed::Rejected(rejection)),
            Ok(Decision::AlreadyRecorded(event_id)) => {
                return Ok(Executed::AlreadyRecorded(find(stream, event_id)?));
            }
            Ok(Decision::Unchanged(_)) if matches!(source, Source::Local) => {
                let last = current.as_ref().map(|u| u.sources.last);
                return Ok(Executed::AlreadyRecorded(find(
                    stream,
                    last.unwrap_or_default(),
                )?));
            }
            Ok(Decision::Record(event) | Decision::Unchanged(event)) => event,
        };
        let recorded = self.record(event, stream, current.as_ref(), source, claim)?;
        Ok(Executed::Recorded(recorded))
    }

    /// Appends `event` to its user's `stream` (whose state is `before`) and
    /// keeps what follows from it: the user's other events redacted when
    /// it erases them, the state row, the email index (`claim`: a key
    /// already made for the email it sets). Every append of the pipeline
    /// ends here.
    ///
    /// # Errors
    ///
    /// The failures of the log's writes, and of stamping.
    fn record(
        &mut self,
        event: Event,
        mut stream: Vec<RecordedEvent>,
        before: Option<&User>,
        source: Source<'_>,
        claim: Option<Claim>,
    ) -> Result<RecordedEvent, StoreError> {
        let user_id = event.aggregate_id();
        let erases = event.erases();
        let recorded = self.append(event, &stream, source)?;
        if erases {
            self.redact(&stream)?;
        }
        stream.push(recorded.clone());
        let after = user::fold(stream);
        if let Some(after) = &after {
            self.put_state(after)?;
        }
        self.reindex(user_id, before, after.as_ref(), claim)?;
        Ok(recorded)
    }

    /// Appends an event of the hub's log that no command here decides —
    /// what the hub's erasure left of an event (see [`Event::redacted`]) —
    /// as it is, keeping the user's state and the email index.
    ///
    /// # Errors
    ///
    /// The failures of the log's reads and writes.
    fn keep(&mut self, recorded: &RecordedEvent) -> Result<(), StoreError> {
        let stream = self.stream(recorded.aggregate_id())?;
        let before = user::fold(stream.clone());
        self.record(
            recorded.event.clone(),
            stream,
            before.as_ref(),
            Source::Hub(recorded),
            None,
        )?;
        Ok(())
    }

    /// Erasure's step: each event of an erased user's `stream` that holds
    /// its data is written over by what is left of it (see
    /// [`Event::redacted`]), in the erasure's own write.
    ///
    /// # Errors
    ///
    /// The failures of the log's writes.
    fn redact(&mut self, stream: &[RecordedEvent]) -> Result<(), StoreError> {
        for earlier in stream {
            if let Some(event) = earlier.event.redacted() {
                self.rewrite(&RecordedEvent {
                    event,
                    ..earlier.clone()
                })?;
            }
        }
        Ok(())
    }

    /// Keeps the email index after a user's state went from `before` to
    /// `after`: the key it no longer holds is released, the key it now
    /// holds recorded. `claim` is a key already made for this change.
    ///
    /// # Errors
    ///
    /// The failures of the log's writes.
    fn reindex(
        &mut self,
        user_id: Uuid,
        before: Option<&User>,
        after: Option<&User>,
        claim: Option<Claim>,
    ) -> Result<(), StoreError> {
        let email = |user: Option<&User>| {
            user.filter(|u| u.holds_email())
                .map(|u| u.profile.email.clone())
        };
        let (old, new) = (email(before), email(after));
        if old == new {
            return Ok(());
        }
        let key_of = |email: &str| match &claim {
            Some(claim) if claim.email == email => claim.key.clone(),
            _ => crate::email_key(email),
        };
        let old_key = old.as_deref().map(key_of);
        let new_key = new.as_deref().map(key_of);
        if old_key == new_key {
            return Ok(());
        }
        if let Some(old) = old_key {
            self.release_email(&old, user_id)?;
        }
        if let Some(new) = new_key {
            self.hold_email(&new, user_id)?;
        }
        Ok(())
    }

    /// A command recorded here: validated, then executed as this log's
    /// own, and answered as the API answers.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    fn execute_command(&mut self, command: &Command) -> Result<Outcome, StoreError> {
        match command.validate() {
            Ok(intent) => self.run(intent),
            Err(rejection) => Ok(Outcome::Rejected(rejection)),
        }
    }

    /// A command made here, already validated: [`execute`](Self::execute)d
    /// as this log's own, and answered as the API answers.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    fn run(&mut self, intent: Intent) -> Result<Outcome, StoreError> {
        Ok(self.execute(intent, Source::Local)?.into())
    }

    /// Appends a decided event at the next position, as the next version of
    /// its user (whose events, as loaded in this transaction, are
    /// `stream`). The email index is kept by the event's maker.
    ///
    /// # Errors
    ///
    /// The failures of the log's writes, and of stamping.
    fn append(
        &mut self,
        event: Event,
        stream: &[RecordedEvent],
        source: Source<'_>,
    ) -> Result<RecordedEvent, StoreError> {
        let (event_id, recorded_at_ms, origin) = match source.recorded_elsewhere() {
            None => {
                let (id, at) = self.stamp()?;
                (id, at, self.origin())
            }
            Some(from) => (from.event_id, from.recorded_at_ms, from.origin),
        };
        let recorded = RecordedEvent {
            event_id,
            version: stream.last().map_or(0, |e| e.version) + 1,
            position: self.head() + 1,
            recorded_at_ms,
            origin,
            event,
        };
        self.put_event(&recorded, source.recorded_elsewhere().is_some())?;
        Ok(recorded)
    }

    /// Appends the compensation that voids `refused`, one of this log's
    /// events the hub refused, and keeps the email index (a refused
    /// creation frees its email; a refused update gives the user back the
    /// email it had).
    ///
    /// # Errors
    ///
    /// [`StoreError::Inconsistent`] when `refused` is itself a
    /// compensation; as [`append`](Self::append).
    fn compensate(
        &mut self,
        refused: &RecordedEvent,
        code: u16,
        details: Vec<FieldError>,
    ) -> Result<RecordedEvent, StoreError> {
        let user_id = refused.aggregate_id();
        let stream = self.stream(user_id)?;
        let before = user::fold(stream.clone());
        let event = refused
            .event
            .refused(Refusal {
                user_id,
                rejected_event_id: refused.event_id,
                code,
                details,
            })
            .ok_or_else(|| {
                StoreError::Inconsistent(format!(
                    "event {} is a compensation, which the hub never answers",
                    refused.event_id
                ))
            })?;
        self.record(event, stream, before.as_ref(), Source::Local, None)
    }

    /// The hub's decision on a device's pushed `events` (opened and checked
    /// as a push) by a caller of `scope`: an event of a user outside the scope is refused (403) before anything
    /// of it is read; each event seen before is accepted again at its first
    /// position (so a repeated push gets the same reply and changes
    /// nothing); every other is executed.
    ///
    /// # Errors
    ///
    /// The failures of the log's reads and writes.
    fn accept_push(
        &mut self,
        events: &[RecordedEvent],
        scope: Scope,
    ) -> Result<Vec<Accepted>, StoreError> {
        events
            .iter()
            .map(|recorded| {
                if let Err(forbidden) = scope.authorize(recorded.aggregate_id(), Field::UserId) {
                    return Ok((recorded.event_id, Err(forbidden)));
                }
                let outcome = match self.position_of(recorded.event_id)? {
                    Some(position) => Ok(position),
                    None => {
                        let intent = pushed_intent(recorded)?;
                        let elsewhere = intent.recorded_elsewhere();
                        match self.execute(intent, Source::From(recorded))? {
                            Executed::Recorded(event) => Ok(event.position),
                            // The same data, but recorded by another event
                            // (another device): this one is not the user's.
                            Executed::AlreadyRecorded(_) => Err(elsewhere),
                            Executed::Rejected(rejection) => Err(rejection),
                        }
                    }
                };
                Ok((recorded.event_id, outcome))
            })
            .collect()
    }
}

impl<L: Log + ?Sized> Pipeline for L {}

/// An email a command sets, and its key, made once.
pub struct Claim {
    email: String,
    key: String,
}

/// The intent of a checked pushed or pulled event.
///
/// # Errors
///
/// [`StoreError::Inconsistent`] for a compensation: batches are checked as
/// they are opened, and only command events pass.
pub(crate) fn pushed_intent(recorded: &RecordedEvent) -> Result<Intent, StoreError> {
    Intent::of_event(&recorded.event).ok_or_else(|| {
        StoreError::Inconsistent(format!(
            "{} passed a batch check that admits only command events",
            recorded.event.event_type()
        ))
    })
}

/// The event `event_id` of `stream`.
pub(crate) fn find(
    stream: Vec<RecordedEvent>,
    event_id: Uuid,
) -> Result<RecordedEvent, StoreError> {
    stream
        .into_iter()
        .find(|e| e.event_id == event_id)
        .ok_or_else(|| StoreError::Inconsistent(format!("event {event_id} is not in its stream")))
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
    /// What [`Pipeline::accept_push`] reads for pushed `events` by a caller
    /// of `scope` (nothing of the events it refuses).
    pub fn of_push(events: &[RecordedEvent], scope: Scope) -> Needs {
        let allowed = || {
            events
                .iter()
                .filter(move |recorded| scope.covers(recorded.aggregate_id()))
        };
        let intents: Vec<Intent> = allowed()
            .filter_map(|recorded| Intent::of_event(&recorded.event))
            .collect();
        let mut needs = Needs::of_intents(&intents);
        needs.event_ids = allowed().map(|e| e.event_id).collect();
        needs.dedup();
        needs
    }

    /// What [`Pipeline::execute`] reads for each of `intents`, in turn: the
    /// user's stream and the owner of the email it sets. (The email a user
    /// gives up is freed without a read: see [`Staged`].)
    pub fn of_intents<'a>(intents: impl IntoIterator<Item = &'a Intent>) -> Needs {
        let mut needs = Needs::default();
        for intent in intents {
            needs.users.push(intent.user_id());
            if let Some(email) = intent.email() {
                needs.email_keys.push(crate::email_key(email));
            }
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
    rewritten: Vec<RecordedEvent>,
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
            rewritten: Vec::new(),
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

    /// The events written over (redacted, their user erased), to be
    /// written over in the backend too, by position.
    pub fn rewritten(&self) -> &[RecordedEvent] {
        &self.rewritten
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

    fn email_holder(&self, email_key: &str, except: Uuid) -> Result<Option<Uuid>, StoreError> {
        let owner = self
            .emails
            .get(email_key)
            .copied()
            .ok_or_else(|| not_needed(format!("email key {email_key:?}")))?;
        Ok(owner.filter(|owner| *owner != except))
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

    fn rewrite(&mut self, recorded: &RecordedEvent) -> Result<(), StoreError> {
        let user = recorded.aggregate_id();
        let stream = self
            .streams
            .get_mut(&user)
            .ok_or_else(|| not_needed(format!("user {user}")))?;
        if let Some(slot) = stream.iter_mut().find(|e| e.position == recorded.position) {
            *slot = recorded.clone();
        }
        match self
            .appended
            .iter_mut()
            .find(|e| e.position == recorded.position)
        {
            // Appended by this batch: written once, as it now is.
            Some(slot) => *slot = recorded.clone(),
            None => self.rewritten.push(recorded.clone()),
        }
        Ok(())
    }

    fn hold_email(&mut self, email_key: &str, user: Uuid) -> Result<(), StoreError> {
        self.emails.insert(email_key.to_owned(), Some(user));
        self.email_changes.insert(email_key.to_owned(), Some(user));
        Ok(())
    }

    /// Frees the key without reading it: the key a user gives up was not
    /// loaded (a batch's needs are read before its decisions), and a hub
    /// holds one user per key (a hub decides every event it records).
    fn release_email(&mut self, email_key: &str, _user: Uuid) -> Result<(), StoreError> {
        self.emails.insert(email_key.to_owned(), None);
        self.email_changes.insert(email_key.to_owned(), None);
        Ok(())
    }
}
