//! `kith import` and `kith export` as a person moving data in and out would use them.

use std::io::Write;
use std::process::Command;

fn kith(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command.arg("--data-dir").arg(data_dir).env_remove("KITH_CONFIG").env_remove("KITH_DATABASE_URL");
    command
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("run kith");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn history_is_imported_from_gzipped_json_lines_and_exported_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    run(kith(dir.path()).args(["workspaces", "create", "Acme"]));
    let lines = [
        r#"{"type":"identify","userId":"u1","traits":{"email":"ada@example.com","name":"Ada, Countess"},"timestamp":"2023-02-01T10:00:00Z","messageId":"i1"}"#,
        // A device clock with sentAt: imported history keeps its own time, it is not moved to now.
        r#"{"type":"track","userId":"u1","event":"Exported","originalTimestamp":"2023-02-02T10:00:00Z","sentAt":"2023-02-02T10:00:05Z","messageId":"t1"}"#,
        "",
        r#"{"batch":[{"type":"identify","userId":"u2","traits":{"email":"grace@example.com"},"timestamp":"2023-03-01T10:00:00Z","messageId":"i2"}]}"#,
        r#"{"type":"identify","traits":{"email":"not an email"},"timestamp":"2023-03-01T10:00:00Z"}"#,
        "{broken",
    ];
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(lines.join("\n").as_bytes()).unwrap();
    let file = dir.path().join("events.jsonl.gz");
    std::fs::write(&file, encoder.finish().unwrap()).unwrap();

    let out = run(kith(dir.path()).arg("import").arg(&file));
    assert!(out.starts_with("6 lines: 3 events stored, 0 already there, 0 skipped, 2 refused"), "{out}");
    assert!(out.contains("line 5: invalid_email"), "{out}");
    assert!(out.contains("line 6: invalid_json"), "{out}");
    let again = run(kith(dir.path()).arg("import").arg(&file));
    assert!(again.contains("0 events stored, 3 already there"), "a second import changes nothing: {again}");

    let csv = run(kith(dir.path()).arg("export"));
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows[0].starts_with("id,email,name,closeness_score,closeness_bucket,first_seen_at,last_seen_at"));
    let ada = rows.iter().find(|row| row.contains("ada@example.com")).unwrap();
    assert!(ada.contains("\"Ada, Countess\""), "fields with commas are quoted: {ada}");
    assert!(ada.contains("2023-02-01T10:00:00Z") && ada.contains("2023-02-02T10:00:00Z"), "{ada}");
    let out_file = dir.path().join("contacts.csv");
    run(kith(dir.path()).arg("export").arg("--output").arg(&out_file));
    assert_eq!(std::fs::read_to_string(out_file).unwrap(), csv);
}

#[test]
fn exported_cells_never_run_as_spreadsheet_formulas() {
    let dir = tempfile::tempdir().unwrap();
    run(kith(dir.path()).args(["workspaces", "create", "Acme"]));
    let lines = [
        r#"{"type":"identify","userId":"u1","traits":{"email":"ada@example.com","name":"=HYPERLINK(\"https://evil.example\",\"x\")"},"timestamp":"2023-02-01T10:00:00Z","messageId":"i1"}"#,
        r#"{"type":"identify","userId":"u2","traits":{"email":"bob@example.com","name":"@SUM(A1)"},"timestamp":"2023-02-01T10:00:00Z","messageId":"i2"}"#,
    ];
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    run(kith(dir.path()).arg("import").arg(&file));
    let csv = run(kith(dir.path()).arg("export"));
    let ada = csv.lines().find(|row| row.contains("ada@example.com")).unwrap();
    assert!(ada.contains(r#""'=HYPERLINK(""https://evil.example"",""x"")""#), "{ada}");
    let bob = csv.lines().find(|row| row.contains("bob@example.com")).unwrap();
    assert!(bob.contains(",'@SUM(A1),"), "{bob}");
}

/// `(day, description, hits)` of every activity day in the database, by day.
fn activity_days(dir: &std::path::Path) -> Vec<(i64, String, i64)> {
    let db = rusqlite::Connection::open(dir.join("kith.db")).unwrap();
    let mut statement =
        db.prepare("SELECT day, description, hits FROM interactions WHERE kind = 'activity' ORDER BY day").unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn reproject_counts_imported_history_again_in_a_new_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    run(kith(dir.path()).args(["workspaces", "create", "Acme"]));
    // 07:30 and 08:30 UTC: one day in UTC, two in Los Angeles (midnight there is 08:00 UTC).
    let lines = [
        r#"{"type":"identify","userId":"u1","traits":{"email":"ada@example.com"},"timestamp":"2023-02-01T20:00:00Z","messageId":"i1"}"#,
        r#"{"type":"track","userId":"u1","event":"Late","timestamp":"2023-02-02T07:30:00Z","messageId":"t1"}"#,
        r#"{"type":"track","userId":"u1","event":"Early","timestamp":"2023-02-02T08:30:00Z","messageId":"t2"}"#,
    ];
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    run(kith(dir.path()).arg("import").arg(&file));
    // Day keys count days since 1970-01-01: 19389 is 2023-02-01.
    let in_utc = vec![(19389, "Active in your product".to_owned(), 1), (19390, "Late".to_owned(), 2)];
    assert_eq!(activity_days(dir.path()), in_utc);

    run(kith(dir.path()).args(["workspaces", "set", "--time-zone", "America/Los_Angeles"]));
    let out = run(kith(dir.path()).arg("reproject"));
    assert!(out.starts_with("rebuilt 1 contacts from 3 events in 1 workspace(s)"), "{out}");
    let in_los_angeles = vec![(19389, "Active in your product".to_owned(), 2), (19390, "Early".to_owned(), 1)];
    assert_eq!(activity_days(dir.path()), in_los_angeles);

    let again = run(kith(dir.path()).args(["reproject", "--workspace", "1"]));
    assert!(again.starts_with("rebuilt 1 contacts from 3 events"), "{again}");
    assert_eq!(activity_days(dir.path()), in_los_angeles, "a second rebuild changes nothing");
    let output = kith(dir.path()).args(["reproject", "--workspace", "9"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("there is no workspace 9"));
}
