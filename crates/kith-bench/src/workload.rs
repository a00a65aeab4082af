//! Seeded Segment workloads (described in BENCHMARKS.md): product traffic, an Engage first sync and
//! single identifies. Bodies are written with plain string formatting, not a JSON library, so that
//! generating a million events takes a fraction of a second and never competes with the server
//! being measured; every generated string is plain ASCII that needs no escaping.

use std::fmt::Write;

use jiff::Timestamp;

use crate::rng::{Rng, Zipf};

/// The first instant of generated traffic: 2024-05-01T00:00:00Z, in milliseconds.
const START_MS: i64 = 1_714_521_600_000;
const DAY_MS: i64 = 86_400_000;

/// Request bodies to send, all to one path.
#[derive(Debug, Clone)]
pub struct Workload {
    /// What it is, for reports.
    pub name: String,
    /// The ingest route.
    pub path: &'static str,
    /// JSON bodies, each one line.
    pub bodies: Vec<String>,
    /// Events in each body.
    pub counts: Vec<u32>,
    /// Events over all bodies.
    pub events: usize,
    /// Emails of the most active contacts the workload creates, busiest first (at most 50).
    pub busiest: Vec<String>,
}

impl Workload {
    /// Mean bytes per event (the batch envelope shared out).
    pub fn bytes_per_event(&self) -> usize {
        self.bodies.iter().map(String::len).sum::<usize>() / self.events.max(1)
    }
}

/// The shape of product traffic.
#[derive(Debug, Clone, Copy)]
pub struct ProductShape {
    /// Distinct users.
    pub users: usize,
    /// Events in all.
    pub events: usize,
    /// Days the events are spread over.
    pub days: i64,
    /// Zipf exponent of per-user activity.
    pub zipf: f64,
    /// Events per batch.
    pub batch: usize,
}

impl Default for ProductShape {
    fn default() -> Self {
        ProductShape { users: 100_000, events: 1_000_000, days: 30, zipf: 1.0, batch: 100 }
    }
}

const TRACK_NAMES: [&str; 8] = [
    "Signed In",
    "Report Viewed",
    "Project Created",
    "Invite Sent",
    "File Uploaded",
    "Comment Added",
    "Export Completed",
    "Settings Updated",
];
const PAGES: [(&str, &str); 6] = [
    ("Dashboard", "/dashboard"),
    ("Reports", "/reports/weekly"),
    ("Projects", "/projects"),
    ("Settings", "/settings/profile"),
    ("Billing", "/settings/billing"),
    ("Team", "/team/members"),
];
const PLANS: [&str; 4] = ["free", "starter", "team", "enterprise"];
const USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
];

fn timestamp(ms: i64) -> String {
    Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

fn anonymous_id(user: usize) -> String {
    format!("anon-{:016x}", Rng::new(user as u64 ^ 0x5eed).next_u64())
}

/// The email a product-traffic user is identified with.
pub fn product_email(user: usize) -> String {
    format!("user{user}@example{}.com", user % 97)
}

/// Writes a `context` object shared by browser-side events.
fn context(out: &mut String, rng: &mut Rng, user: usize) {
    let _ = write!(
        out,
        r#""context":{{"library":{{"name":"analytics.js","version":"next-1.70.0"}},"ip":"10.{}.{}.{}","locale":"en-US","userAgent":"{}"}}"#,
        user % 250,
        (user / 250) % 250,
        rng.below(250),
        rng.pick(&USER_AGENTS)
    );
}

/// One product event as JSON: an identify, a track or a page, with or without a `userId`.
fn product_event(out: &mut String, rng: &mut Rng, message_id: &str, user: usize, kind: Kind, at: i64) {
    let _ = write!(out, r#"{{"messageId":"{message_id}","timestamp":"{}","#, timestamp(at));
    if kind != Kind::AnonymousPage {
        let _ = write!(out, r#""userId":"user_{user}","#);
    }
    let _ = write!(out, r#""anonymousId":"{}","#, anonymous_id(user));
    match kind {
        Kind::Identify => {
            let _ = write!(
                out,
                r#""type":"identify","traits":{{"email":"{}","name":"User {user}","plan":"{}","company":"Company {}","title":"Engineer"}},"#,
                product_email(user),
                PLANS[user % PLANS.len()],
                user % 5000
            );
        }
        Kind::Track => {
            let _ = write!(
                out,
                r#""type":"track","event":"{}","properties":{{"value":{},"currency":"USD","plan":"{}"}},"#,
                rng.pick(&TRACK_NAMES),
                rng.below(500),
                PLANS[user % PLANS.len()]
            );
        }
        Kind::Page | Kind::AnonymousPage => {
            let (name, path) = rng.pick(&PAGES);
            let _ = write!(
                out,
                r#""type":"page","name":"{name}","properties":{{"path":"{path}","url":"https://app.example.com{path}","title":"{name} - Example","referrer":"https://app.example.com/"}},"#
            );
        }
    }
    context(out, rng, user);
    out.push('}');
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Identify,
    Track,
    Page,
    AnonymousPage,
}

/// Product traffic: users drawn by Zipf's law, times uniform over the days and sent in time order,
/// about 10 % identifies, 45 % tracks and 45 % pages. A user's first event is an identify, or, for
/// three users in ten, an anonymous page view that the identify right after it attaches, as when
/// someone browses before signing in.
pub fn product(seed: u64, shape: ProductShape) -> Workload {
    let mut rng = Rng::new(seed);
    let zipf = Zipf::new(shape.users, shape.zipf);
    let mut draws: Vec<(i64, usize)> = (0..shape.events)
        .map(|_| (START_MS + rng.below((shape.days * DAY_MS) as u64) as i64, zipf.sample(&mut rng)))
        .collect();
    draws.sort_unstable();
    let mut activity = vec![0u32; shape.users];
    for (_, user) in &draws {
        activity[*user] += 1;
    }
    let mut busiest: Vec<usize> = (0..shape.users).filter(|user| activity[*user] > 0).collect();
    busiest.sort_by_key(|user| std::cmp::Reverse(activity[*user]));
    busiest.truncate(50);
    let mut seen = vec![false; shape.users];
    let mut events = Vec::with_capacity(shape.events + shape.events / 8);
    for (at, user) in draws {
        if !seen[user] {
            seen[user] = true;
            if rng.chance(0.3) {
                events.push((at, user, Kind::AnonymousPage));
            }
            events.push((at + 1_000, user, Kind::Identify));
            continue;
        }
        let roll = rng.below(100);
        let kind = match roll {
            0..10 => Kind::Identify,
            10..55 => Kind::Track,
            _ => Kind::Page,
        };
        events.push((at, user, kind));
    }
    let count = events.len();
    let counts = events.chunks(shape.batch.max(1)).map(|items| items.len() as u32).collect();
    let bodies = events
        .chunks(shape.batch.max(1))
        .enumerate()
        .map(|(chunk, items)| {
            let mut body = String::with_capacity(items.len() * 520 + 16);
            body.push_str(r#"{"batch":["#);
            for (offset, (at, user, kind)) in items.iter().enumerate() {
                if offset > 0 {
                    body.push(',');
                }
                let message_id = format!("p{seed}-{}", chunk * shape.batch + offset);
                product_event(&mut body, &mut rng, &message_id, *user, *kind, *at);
            }
            body.push_str("]}");
            body
        })
        .collect();
    Workload {
        name: format!("product traffic ({} users, {count} events, batches of {})", shape.users, shape.batch),
        path: "/v1/batch",
        bodies,
        counts,
        events: count,
        busiest: busiest.into_iter().map(product_email).collect(),
    }
}

/// An Engage first sync: one identify per distinct user carrying an audience membership in
/// `context.personas`, as Segment sends them (`fixtures/engage/audience-identify.json`).
pub fn engage(seed: u64, users: usize, batch: usize) -> Workload {
    let mut rng = Rng::new(seed);
    let audiences = ["order_completed_last_30days", "high_value_customers", "trial_users_inactive_7d"];
    let users_list: Vec<usize> = (0..users).collect();
    let counts = users_list.chunks(batch.max(1)).map(|items| items.len() as u32).collect();
    let bodies: Vec<String> = users_list
        .chunks(batch.max(1))
        .map(|items| {
            let mut body = String::with_capacity(items.len() * 620 + 16);
            body.push_str(r#"{"batch":["#);
            for (offset, user) in items.iter().enumerate() {
                if offset > 0 {
                    body.push(',');
                }
                let audience = rng.pick(&audiences);
                let at = START_MS + (*user as i64) * 7;
                let _ = write!(
                    body,
                    r#"{{"type":"identify","messageId":"personas_{seed}_{user}","userId":"u_{user}","timestamp":"{}","receivedAt":"{}","traits":{{"email":"member{user}@example.com","{audience}":true}},"context":{{"library":{{"name":"unknown","version":"unknown"}},"personas":{{"computation_class":"audience","computation_id":"aud_{audience}","computation_key":"{audience}","namespace":"spa_o1E9fAxCkCzjp6rLG1ptWR","space_id":"spa_o1E9fAxCkCzjp6rLG1ptWR"}}}},"integrations":{{"All":false,"Kith":true,"Warehouses":{{"all":false}}}}}}"#,
                    timestamp(at),
                    timestamp(at + 9_000)
                );
            }
            body.push_str("]}");
            body
        })
        .collect();
    Workload {
        name: format!("Engage first sync ({users} identifies, batches of {batch})"),
        path: "/v1/batch",
        bodies,
        counts,
        events: users,
        busiest: (0..users.min(50)).map(|user| format!("member{user}@example.com")).collect(),
    }
}

/// Single identifies for `/v1/identify`, one event per request, each with its own messageId,
/// for users drawn uniformly from `users`.
pub fn identifies(seed: u64, users: usize, count: usize) -> Workload {
    let mut rng = Rng::new(seed);
    let bodies = (0..count)
        .map(|index| {
            let user = rng.below(users as u64) as usize;
            let at = START_MS + rng.below((30 * DAY_MS) as u64) as i64;
            let mut body = String::with_capacity(560);
            product_event(&mut body, &mut rng, &format!("i{seed}-{index}"), user, Kind::Identify, at);
            body
        })
        .collect();
    Workload {
        name: format!("single identifies ({users} users)"),
        path: "/v1/identify",
        bodies,
        counts: vec![1; count],
        events: count,
        busiest: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_json_object(text: &str) -> bool {
        // The harness keeps its dependencies lean; balanced braces outside strings and the
        // right ends are enough to catch a broken template.
        let mut depth = 0i32;
        let mut in_string = false;
        for c in text.chars() {
            match (c, in_string) {
                ('"', _) => in_string = !in_string,
                ('{' | '[', false) => depth += 1,
                ('}' | ']', false) => depth -= 1,
                _ => {}
            }
            if depth < 0 {
                return false;
            }
        }
        depth == 0 && !in_string && text.starts_with('{') && text.ends_with('}')
    }

    #[test]
    fn product_traffic_is_seeded_sized_and_identifies_users_first() {
        let shape = ProductShape { users: 1000, events: 5000, ..ProductShape::default() };
        let a = product(42, shape);
        let b = product(42, shape);
        assert_eq!(a.bodies, b.bodies, "a seed names one workload");
        assert_ne!(a.bodies, product(43, shape).bodies);
        assert!(a.events >= 5000);
        assert!(a.bodies.iter().all(|body| is_json_object(body)));
        let per_event = a.bytes_per_event();
        assert!((300..=600).contains(&per_event), "{per_event} bytes per event");
        assert_eq!(a.busiest.len(), 50);
        assert!(a.busiest.iter().all(|email| a.bodies.iter().any(|body| body.contains(email.as_str()))));
        // A user's first event with a userId is an identify.
        let all = a.bodies.concat();
        let mut identified = std::collections::HashSet::new();
        for event in all.split(r#"{"messageId""#).skip(1) {
            let Some(user) = event.split(r#""userId":""#).nth(1).and_then(|rest| rest.split('"').next()) else {
                continue;
            };
            if event.contains(r#""type":"identify""#) {
                identified.insert(user.to_owned());
            } else {
                assert!(identified.contains(user), "{user} acts before being identified");
            }
        }
    }

    #[test]
    fn engage_sync_has_one_identify_per_user_with_personas() {
        let workload = engage(7, 250, 100);
        assert_eq!((workload.events, workload.bodies.len()), (250, 3));
        assert!(workload.bodies.iter().all(|body| is_json_object(body)));
        assert_eq!(workload.bodies.concat().matches(r#""computation_class":"audience""#).count(), 250);
        let per_event = workload.bytes_per_event();
        assert!((400..=600).contains(&per_event), "{per_event} bytes per event");
    }

    #[test]
    fn single_identifies_have_unique_message_ids() {
        let workload = identifies(1, 100, 50);
        let ids: std::collections::HashSet<_> =
            workload.bodies.iter().map(|body| body.split('"').nth(3).unwrap().to_owned()).collect();
        assert_eq!(ids.len(), 50);
    }
}
