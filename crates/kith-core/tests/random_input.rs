//! Random bodies through the parser on every `cargo test`: Segment-shaped events with random
//! field values, and the fixture files with random byte mutations. Nothing may panic and every
//! reading must keep the invariants in `common/invariants.rs` (which the fuzz target shares).
//!
//! One run uses a fixed seed; a second uses a seed from the clock, printed so that a failure
//! can be replayed with `KITH_RANDOM_SEED=<seed> cargo test -p kith-core --test random_input`.

#[path = "common/invariants.rs"]
mod invariants;

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// SplitMix64: the test's own generator, so a seed means the same inputs everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const STRINGS: &[&str] = &[
    "",
    " ",
    "u1",
    "null",
    "undefined",
    "[object Object]",
    "NaN",
    "0",
    "-1",
    "anonymous",
    "Ada@Example.COM ",
    "a@b.c",
    "a@b.co",
    "@example.com",
    "x@@example.com",
    "x@example..com",
    "ünïcödé@exämple.com",
    "İ@example.com",
    "a\u{0}b@example.com",
    "\u{202e}evil@example.com",
    "2024-06-01T10:00:00Z",
    "2024-06-01T10:00:00+14:00",
    "2024-02-30T10:00:00Z",
    "9999-12-31T23:59:59Z",
    "-009999-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "1970-01-01T00:00:00.000000001Z",
    "2024-06-01",
    "yesterday",
    "identify",
    "IDENTIFY",
    "track",
    "page",
    "screen",
    "group",
    "alias",
    "delete",
    "purchase",
    "audience",
    "trait",
    "Kith",
    "All",
    "https://example.com/path?q=1",
    "Signed Up",
];

const KEYS: &[&str] = &[
    "type",
    "messageId",
    "userId",
    "anonymousId",
    "email",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "traits",
    "context",
    "properties",
    "integrations",
    "event",
    "name",
    "url",
    "page",
    "groupId",
    "previousId",
    "writeKey",
    "personas",
    "computation_class",
    "computation_key",
    "computation_id",
    "space_id",
    "audience_key",
    "Kith",
    "All",
    "batch",
];

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 4 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(f64::from_bits(rng.next()) % 1e12),
        4 | 5 => Value::String(random_string(rng)),
        6 => Value::Array((0..rng.below(4)).map(|_| random_value(rng, depth + 1)).collect()),
        _ => Value::Object(random_object(rng, depth + 1)),
    }
}

fn random_string(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => "x".repeat(rng.below(300)),
        1 => (0..rng.below(12)).map(|_| char::from_u32(rng.below(0x3000) as u32).unwrap_or('?')).collect(),
        _ => rng.pick(STRINGS).to_owned(),
    }
}

fn random_object(rng: &mut Rng, depth: usize) -> Map<String, Value> {
    (0..rng.below(7)).map(|_| (rng.pick(KEYS).to_owned(), random_value(rng, depth))).collect()
}

/// An event that is close to valid, with some fields replaced by random values.
fn segment_like(rng: &mut Rng) -> Value {
    let mut event = json!({
        "type": rng.pick(&["identify", "track", "page", "screen", "group", "alias", "delete"]),
        "messageId": format!("m-{}", rng.next()),
        "userId": rng.pick(STRINGS),
        "anonymousId": rng.pick(STRINGS),
        "timestamp": rng.pick(STRINGS),
        "event": rng.pick(STRINGS),
        "groupId": rng.pick(STRINGS),
        "previousId": rng.pick(STRINGS),
        "traits": {"email": rng.pick(STRINGS), "name": rng.pick(STRINGS)},
        "context": {"traits": {"email": rng.pick(STRINGS)}, "page": {"url": rng.pick(STRINGS)}},
        "properties": {"url": rng.pick(STRINGS), "email": rng.pick(STRINGS)},
    });
    if rng.below(3) == 0 {
        event["context"]["personas"] = json!({
            "computation_class": rng.pick(&["audience", "trait", "other"]),
            "computation_key": rng.pick(STRINGS),
            "computation_id": rng.pick(STRINGS),
        });
    }
    if rng.below(3) == 0 {
        event["sentAt"] = Value::String(rng.pick(STRINGS).to_owned());
    }
    if rng.below(4) == 0 {
        event["receivedAt"] = Value::String(rng.pick(STRINGS).to_owned());
    }
    if rng.below(4) == 0 {
        event["integrations"] = Value::Object(random_object(rng, 3));
    }
    let object = event.as_object_mut().expect("an object");
    for _ in 0..rng.below(4) {
        let key = rng.pick(KEYS).to_owned();
        match rng.below(3) {
            0 => {
                object.remove(&key);
            }
            _ => {
                object.insert(key, random_value(rng, 1));
            }
        }
    }
    event
}

fn body(rng: &mut Rng) -> Vec<u8> {
    let value = match rng.below(4) {
        0 => Value::Array((0..rng.below(5)).map(|_| segment_like(rng)).collect()),
        1 => json!({
            "batch": (0..rng.below(5)).map(|_| segment_like(rng)).collect::<Vec<_>>(),
            "context": random_value(rng, 2),
            "integrations": random_value(rng, 2),
            "sentAt": rng.pick(STRINGS),
        }),
        2 => random_value(rng, 0),
        _ => segment_like(rng),
    };
    value.to_string().into_bytes()
}

fn fixtures() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut files = Vec::new();
    collect(&root, &mut files);
    assert!(files.len() > 20, "the fixtures are found under {}", root.display());
    files
}

fn collect(dir: &Path, files: &mut Vec<Vec<u8>>) {
    for entry in std::fs::read_dir(dir).expect("fixtures dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "json" || ext == "txt") {
            files.push(std::fs::read(&path).expect("a fixture"));
        }
    }
}

/// A fixture with a few random byte edits: flips, insertions, deletions, a cut.
fn mutated(rng: &mut Rng, fixtures: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = fixtures[rng.below(fixtures.len())].clone();
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        match rng.below(4) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes.insert(at, *b"{}[]\",:\\0e-".get(rng.below(12)).unwrap_or(&b'"')),
            2 => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

fn run(seed: u64, rounds: usize) {
    let fixtures = fixtures();
    let mut rng = Rng(seed);
    for _ in 0..rounds {
        let input = if rng.below(2) == 0 { body(&mut rng) } else { mutated(&mut rng, &fixtures) };
        invariants::check_body(&input);
    }
}

#[test]
fn random_bodies_with_a_fixed_seed() {
    run(0x6b69_7468, 3_000);
}

#[test]
fn random_bodies_with_a_fresh_seed() {
    let seed = std::env::var("KITH_RANDOM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    // Shown with the failure: replay it with KITH_RANDOM_SEED.
    eprintln!("KITH_RANDOM_SEED={seed}");
    run(seed, 3_000);
}

#[test]
fn fixtures_themselves_keep_the_invariants() {
    for fixture in fixtures() {
        invariants::check_body(&fixture);
    }
}
