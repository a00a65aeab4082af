//! A small reference model of identities, timelines, closeness and audiences, written from the
//! rules (ARCHITECTURE.md, "Where each rule lives") and nothing else: which contact an event
//! reaches, the ids it links, one activity per contact-day described by its earliest event, the
//! closeness key, Engage memberships, explicit merges and erasure.
//!
//! It folds events one by one, identifies and aliases first, so it is only valid for what the
//! contract says does not depend on arrival order: each person's ids are their own (no two
//! people claim one id), and merges and deletions happen between phases, never amid them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde_json::{json, Value};

/// `Active in your product`: an identify that names no url or event.
pub const STANDARD_DESCRIPTION: &str = "Active in your product";

/// A generated event: its body, and what the contract says it means.
#[derive(Clone, Debug)]
pub struct Event {
    /// The JSON sent.
    pub body: Value,
    /// `identify`, `track`, `page`, `screen`, `alias` or `delete`.
    pub kind: &'static str,
    /// Event time in milliseconds.
    pub time: i64,
    /// The normalised email an identify carries.
    pub email: Option<String>,
    /// userId.
    pub user_id: Option<String>,
    /// anonymousId.
    pub anonymous_id: Option<String>,
    /// An alias's previousId.
    pub previous_id: Option<String>,
    /// The activity description; `None` for calls that are not activity.
    pub description: Option<String>,
    /// An Engage audience change: key and whether the contact entered.
    pub audience: Option<(String, bool)>,
}

impl Event {
    fn base(kind: &'static str, time: i64, message_id: &str) -> (Value, Event) {
        let timestamp = jiff::Timestamp::from_millisecond(time).unwrap().to_string();
        let body = json!({"type": kind, "timestamp": timestamp, "messageId": message_id});
        let event = Event {
            body: Value::Null,
            kind,
            time,
            email: None,
            user_id: None,
            anonymous_id: None,
            previous_id: None,
            description: None,
            audience: None,
        };
        (body, event)
    }

    /// An identify: `sent_email` as the SDK sends it (any case, spaces), its ids, and how it
    /// describes itself (`None`: nothing, `Some(("event", x))` or `Some(("url", x))`).
    pub fn identify(
        time: i64,
        message_id: &str,
        sent_email: &str,
        user_id: Option<&str>,
        anonymous_id: Option<&str>,
        describe: Option<(&str, &str)>,
    ) -> Event {
        let (mut body, mut event) = Event::base("identify", time, message_id);
        body["traits"] = json!({"email": sent_email});
        set_ids(&mut body, &mut event, user_id, anonymous_id);
        event.description = Some(match describe {
            Some(("event", name)) => {
                body["event"] = json!(name);
                name.to_owned()
            }
            Some((_, url)) => {
                body["context"] = json!({"page": {"url": url}});
                url.to_owned()
            }
            None => STANDARD_DESCRIPTION.to_owned(),
        });
        event.email = Some(sent_email.trim().to_lowercase());
        event.body = body;
        event
    }

    /// An Engage audience sync: an identify that is membership, not activity.
    pub fn engage(time: i64, message_id: &str, email: &str, user_id: &str, audience: &str, entered: bool) -> Event {
        let (mut body, mut event) = Event::base("identify", time, message_id);
        body["traits"] = json!({"email": email, audience: entered});
        body["context"] = json!({"personas": {
            "computation_class": "audience",
            "computation_key": audience,
            "computation_id": format!("aud_{audience}"),
            "space_id": "spa_differential",
        }});
        set_ids(&mut body, &mut event, Some(user_id), None);
        event.email = Some(email.to_owned());
        event.audience = Some((audience.to_owned(), entered));
        event.body = body;
        event
    }

    /// A track, page (by name) or screen by one of a person's ids.
    pub fn activity(
        kind: &'static str,
        time: i64,
        message_id: &str,
        name: &str,
        user_id: Option<&str>,
        anonymous_id: Option<&str>,
    ) -> Event {
        let (mut body, mut event) = Event::base(kind, time, message_id);
        let field = if kind == "track" { "event" } else { "name" };
        body[field] = json!(name);
        set_ids(&mut body, &mut event, user_id, anonymous_id);
        event.description = Some(match kind {
            "track" => name.to_owned(),
            "page" => format!("Visited {name}"),
            _ => format!("Viewed {name}"),
        });
        event.body = body;
        event
    }

    /// `alias(previous_id → user_id)`.
    pub fn alias(time: i64, message_id: &str, previous_id: &str, user_id: &str) -> Event {
        let (mut body, mut event) = Event::base("alias", time, message_id);
        body["previousId"] = json!(previous_id);
        set_ids(&mut body, &mut event, Some(user_id), None);
        event.previous_id = Some(previous_id.to_owned());
        event.body = body;
        event
    }

    /// A Segment deletion request for the user `user_id` belongs to.
    pub fn delete(time: i64, message_id: &str, user_id: &str) -> Event {
        let (mut body, mut event) = Event::base("delete", time, message_id);
        set_ids(&mut body, &mut event, Some(user_id), None);
        event.body = body;
        event
    }
}

fn set_ids(body: &mut Value, event: &mut Event, user_id: Option<&str>, anonymous_id: Option<&str>) {
    if let Some(id) = user_id {
        body["userId"] = json!(id);
        event.user_id = Some(id.to_owned());
    }
    if let Some(id) = anonymous_id {
        body["anonymousId"] = json!(id);
        event.anonymous_id = Some(id.to_owned());
    }
}

/// One activity interaction: a contact-day.
#[derive(Clone, Debug, PartialEq)]
pub struct Day {
    /// The earliest event's time (ms).
    pub time: i64,
    /// The earliest event's description.
    pub description: String,
    /// Events of the day.
    pub hits: i64,
}

impl Day {
    /// Folds another day's activity in: the earlier (time, description) describes it, hits add up.
    /// The fold does not depend on order, which is what the day rule asks of any arrival order.
    fn absorb(&mut self, other: &Day) {
        if (other.time, &other.description) < (self.time, &self.description) {
            self.time = other.time;
            self.description = other.description.clone();
        }
        self.hits += other.hits;
    }
}

/// What the model expects of one contact.
#[derive(Clone, Debug, Default)]
pub struct Contact {
    /// (value, kind) of every linked id.
    pub identities: BTreeSet<(String, String)>,
    /// Activity by local date.
    pub days: BTreeMap<Date, Day>,
    /// Every activity that made those days: (time, description), to count them again in
    /// another zone.
    activity: Vec<(i64, String)>,
    /// Audience key → (member, time of the latest change by event time).
    pub audiences: BTreeMap<String, (bool, i64)>,
    /// Every audience change: (key, entered, time).
    pub history: Vec<(String, bool, i64)>,
}

impl Contact {
    /// Counts one activity into its day in `zone`.
    fn count_day(&mut self, time: i64, description: &str, zone: &TimeZone) {
        let date = jiff::Timestamp::from_millisecond(time).unwrap().to_zoned(zone.clone()).date();
        let day = Day { time, description: description.to_owned(), hits: 1 };
        self.days.entry(date).and_modify(|d| d.absorb(&day)).or_insert(day);
    }

    /// The closeness key `ln Σ w·exp(t/τ)`: activity weighs 1 and counts at the start of its date,
    /// t in days since 1970-01-01; `None` without interactions.
    pub fn closeness_key(&self, half_life_days: f64) -> Option<f64> {
        let tau = half_life_days / std::f64::consts::LN_2;
        let epoch = jiff::civil::date(1970, 1, 1);
        let exponents: Vec<f64> =
            self.days.keys().map(|date| f64::from(date.since(epoch).unwrap().get_days()) / tau).collect();
        // exp(t/τ) overflows for t in days since 1970: factor out the largest exponent.
        let largest = exponents.iter().copied().reduce(f64::max)?;
        Some(largest + exponents.iter().map(|e| (e - largest).exp()).sum::<f64>().ln())
    }
}

/// The expected state of one workspace.
pub struct Model {
    zone: TimeZone,
    /// Contacts by email.
    pub contacts: BTreeMap<String, Contact>,
    /// Which contact (by email) each id or merged-away email reaches.
    owners: HashMap<String, String>,
    /// messageIds already taken.
    seen: BTreeSet<String>,
}

impl Model {
    /// An empty workspace in `zone`.
    pub fn new(zone: &str) -> Model {
        Model {
            zone: TimeZone::get(zone).expect("a zone"),
            contacts: BTreeMap::new(),
            owners: HashMap::new(),
            seen: BTreeSet::new(),
        }
    }

    /// Applies a set of events delivered in any order and batching: duplicates of a messageId
    /// change nothing, identifies and aliases link ids first so an event reaches the contact its
    /// ids end up on (pending, then attached), and a track whose ids nobody claims stays
    /// pending, which shows nowhere.
    pub fn apply_all(&mut self, events: &[Event]) {
        let mut fresh: Vec<&Event> = Vec::new();
        for event in events {
            let message_id = event.body["messageId"].as_str().unwrap().to_owned();
            if self.seen.insert(message_id) {
                fresh.push(event);
            }
        }
        for event in fresh.iter().filter(|e| e.kind == "identify") {
            let email = event.email.clone().unwrap();
            let owner = self.owners.get(&email).cloned().unwrap_or_else(|| email.clone());
            self.contacts.entry(owner.clone()).or_default();
            self.link(event.user_id.as_deref(), "user_id", &owner);
            self.link(event.anonymous_id.as_deref(), "anonymous_id", &owner);
        }
        // An alias may hang on another alias's link; repeat until nothing more links.
        loop {
            let before = self.owners.len();
            for event in fresh.iter().filter(|e| e.kind == "alias") {
                if let Some(owner) = self.reach(event) {
                    self.link(event.previous_id.as_deref(), "alias", &owner);
                }
            }
            if self.owners.len() == before {
                break;
            }
        }
        for event in &fresh {
            let owner = match event.kind {
                "identify" => {
                    let email = event.email.clone().unwrap();
                    Some(self.owners.get(&email).cloned().unwrap_or(email))
                }
                "delete" => {
                    if let Some(owner) = self.reach(event) {
                        self.erase(&owner);
                    }
                    None
                }
                _ => self.reach(event),
            };
            let Some(owner) = owner else { continue };
            let contact = self.contacts.get_mut(&owner).unwrap();
            if let Some((key, entered)) = &event.audience {
                contact.history.push((key.clone(), *entered, event.time));
                let current = contact.audiences.entry(key.clone()).or_insert((*entered, event.time));
                if event.time >= current.1 {
                    *current = (*entered, event.time);
                }
            }
            if let Some(description) = &event.description {
                contact.activity.push((event.time, description.clone()));
                contact.count_day(event.time, description, &self.zone);
            }
        }
    }

    /// An explicit merge: `from` goes into `into` with its ids, days (one per date), audiences (the
    /// latest change wins) and history; its email then reaches `into`.
    pub fn merge(&mut self, into: &str, from: &str) {
        let gone = self.contacts.remove(from).expect("the merged contact");
        let target = self.contacts.get_mut(into).expect("the surviving contact");
        target.identities.extend(gone.identities);
        target.identities.insert((from.to_owned(), "email".to_owned()));
        for (date, day) in gone.days {
            target.days.entry(date).and_modify(|d| d.absorb(&day)).or_insert(day);
        }
        target.activity.extend(gone.activity);
        for (key, (member, time)) in gone.audiences {
            let current = target.audiences.entry(key).or_insert((member, time));
            if time > current.1 {
                *current = (member, time);
            }
        }
        target.history.extend(gone.history);
        for owner in self.owners.values_mut() {
            if owner == from {
                *owner = into.to_owned();
            }
        }
        self.owners.insert(from.to_owned(), into.to_owned());
    }

    /// The workspace's time zone changes: every day is counted again in `zone`.
    pub fn set_zone(&mut self, zone: &str) {
        self.zone = TimeZone::get(zone).expect("a zone");
        for contact in self.contacts.values_mut() {
            contact.days.clear();
            for (time, description) in std::mem::take(&mut contact.activity) {
                contact.count_day(time, &description, &self.zone);
                contact.activity.push((time, description));
            }
        }
    }

    /// A deletion erases the contact and unlinks its ids.
    fn erase(&mut self, email: &str) {
        self.contacts.remove(email);
        self.owners.retain(|_, owner| owner != email);
    }

    fn link(&mut self, id: Option<&str>, kind: &str, owner: &str) {
        let Some(id) = id else { return };
        if self.owners.contains_key(id) {
            return;
        }
        self.owners.insert(id.to_owned(), owner.to_owned());
        self.contacts.get_mut(owner).unwrap().identities.insert((id.to_owned(), kind.to_owned()));
    }

    /// The contact an event's ids reach: its userId's, else its anonymousId's.
    fn reach(&self, event: &Event) -> Option<String> {
        [&event.user_id, &event.anonymous_id].into_iter().flatten().find_map(|id| self.owners.get(id).cloned())
    }

    /// Audience key → (members now, entries, exits), over the contacts that remain.
    pub fn audiences(&self) -> BTreeMap<String, (usize, usize, usize)> {
        let mut counts: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for contact in self.contacts.values() {
            for (key, (member, _)) in &contact.audiences {
                counts.entry(key.clone()).or_default().0 += usize::from(*member);
            }
            for (key, entered, _) in &contact.history {
                let count = counts.entry(key.clone()).or_default();
                if *entered {
                    count.1 += 1;
                } else {
                    count.2 += 1;
                }
            }
        }
        counts
    }
}

/// SplitMix64: a seeded generator, so a failing run can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}
