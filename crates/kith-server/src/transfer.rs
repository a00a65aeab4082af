//! Moving data in and out in bulk (`kith import`, `kith export`): importing Segment events from
//! JSON lines (optionally gzipped), and exporting contacts as CSV.

use std::io::{BufRead, BufReader, Read};

use jiff::Timestamp;
use kith_core::envelope::{self, BodyShape};
use kith_core::event::{parse_event, ParseContext, Parsed};
use kith_store::{ContactQuery, ContactSort, Incoming, Outcome, Store, StoreError, Workspace, WorkspaceId};
use serde::Serialize;

/// Events written per transaction while importing.
const IMPORT_CHUNK: usize = 2_000;
/// Refusals reported by line; the rest are counted.
const REPORTED_ERRORS: usize = 20;

/// What an import did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ImportReport {
    /// Lines read (blank ones included).
    pub lines: u64,
    /// Events stored.
    pub stored: u64,
    /// Events already stored (same messageId).
    pub duplicates: u64,
    /// Events kept away by `integrations` or a suppression.
    pub skipped: u64,
    /// Events refused.
    pub rejected: u64,
    /// The first refusals: line number and why.
    pub errors: Vec<(u64, String)>,
}

impl ImportReport {
    fn refuse(&mut self, line: u64, why: String) {
        self.rejected += 1;
        if self.errors.len() < REPORTED_ERRORS {
            self.errors.push((line, why));
        }
    }
}

/// Wraps a reader, inflating it when it starts with the gzip magic bytes.
pub fn maybe_gunzip<R: Read + 'static>(reader: R) -> std::io::Result<Box<dyn BufRead>> {
    let mut reader = BufReader::new(reader);
    let is_gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if is_gzip { Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(reader))) } else { Box::new(reader) })
}

/// Imports Segment events, one JSON event (or batch, or array) per line, into `workspace`.
/// Events keep their own timestamps; replays are recognised by messageId as on the HTTP path.
/// `progress` is called after each chunk with the lines read so far.
pub async fn import(
    store: &dyn Store,
    workspace: WorkspaceId,
    lines: impl BufRead,
    now: Timestamp,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let ctx = ParseContext { route_type: None, now, history: true };
    let mut report = ImportReport::default();
    let mut chunk: Vec<(u64, Incoming)> = Vec::with_capacity(IMPORT_CHUNK);
    for line in lines.lines() {
        let line = line?;
        report.lines += 1;
        if line.trim().is_empty() {
            continue;
        }
        let envelope = match envelope::split(line.as_bytes(), BodyShape::Batch) {
            Ok(envelope) => envelope,
            Err(rejection) => {
                report.refuse(report.lines, rejection.to_string());
                continue;
            }
        };
        for item in envelope.items() {
            match parse_event(item, &ctx) {
                Ok(Parsed::Event(event)) => chunk.push((report.lines, Incoming::new(workspace, *event))),
                Ok(Parsed::Skipped) => report.skipped += 1,
                Err(rejection) => report.refuse(report.lines, rejection.to_string()),
            }
        }
        if chunk.len() >= IMPORT_CHUNK {
            write_chunk(store, &mut chunk, &mut report).await?;
            progress(report.lines);
        }
    }
    write_chunk(store, &mut chunk, &mut report).await?;
    // The import is done when what it stored can be read.
    store.settle().await?;
    progress(report.lines);
    Ok(report)
}

async fn write_chunk(
    store: &dyn Store,
    chunk: &mut Vec<(u64, Incoming)>,
    report: &mut ImportReport,
) -> Result<(), StoreError> {
    if chunk.is_empty() {
        return Ok(());
    }
    let (lines, batch): (Vec<u64>, Vec<Incoming>) = std::mem::take(chunk).into_iter().unzip();
    let outcomes = store.write_events(batch).await?;
    for (line, outcome) in lines.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Stored(_) | Outcome::Accepted => report.stored += 1,
            Outcome::Duplicate => report.duplicates += 1,
            Outcome::Suppressed => report.skipped += 1,
            Outcome::Rejected(rejection) => report.refuse(line, rejection.to_string()),
        }
    }
    Ok(())
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Read(#[from] std::io::Error),
    /// The database failed; what was written before stays written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The CSV header of an export.
pub const CSV_HEADER: &[&str] = &[
    "id",
    "email",
    "name",
    "closeness_score",
    "closeness_bucket",
    "first_seen_at",
    "last_seen_at",
    "last_interaction_at",
    "cadence_days",
    "next_due_at",
    "traits",
];

/// A cell as a spreadsheet reads it as text, never as a formula (OWASP's rule for CSV
/// injection): a value starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a
/// leading `'`. Emails and names arrive through the public write key, so an export must not
/// let them run `=HYPERLINK(…)` or `=cmd|…` in whoever opens it.
pub fn neutralise(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_owned(),
    }
}

/// One CSV page of contacts after `cursor` (closest first), and the cursor of the next page.
pub async fn export_page(
    store: &dyn Store,
    workspace: &Workspace,
    now: Timestamp,
    cursor: Option<kith_store::Cursor>,
    header: bool,
) -> Result<(Vec<u8>, Option<kith_store::Cursor>), StoreError> {
    let page = store
        .contacts(
            workspace.id,
            ContactQuery { sort: ContactSort::Closeness, cursor, limit: 1000, ..ContactQuery::default() },
        )
        .await?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    let model = workspace.model();
    let csv_error = |e: csv::Error| StoreError::caused("writing CSV", e);
    if header {
        writer.write_record(CSV_HEADER).map_err(csv_error)?;
    }
    for contact in &page.items {
        let closeness = contact.closeness(&model, now);
        let time = |t: Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
        writer
            .write_record([
                contact.id.to_string(),
                neutralise(&contact.email),
                neutralise(contact.name.as_deref().unwrap_or_default()),
                closeness.score.to_string(),
                closeness.bucket.as_str().to_owned(),
                contact.first_seen_at.to_string(),
                contact.last_seen_at.to_string(),
                time(contact.last_interaction_at),
                contact.effective_cadence_days.map(|d| d.to_string()).unwrap_or_default(),
                time(contact.due_at),
                serde_json::Value::Object(contact.traits.clone()).to_string(),
            ])
            .map_err(csv_error)?;
    }
    let bytes = writer.into_inner().map_err(|e| StoreError::caused("writing CSV", e.into_error()))?;
    Ok((bytes, page.next))
}

#[cfg(test)]
mod tests {
    use super::neutralise;

    #[test]
    fn cells_that_a_spreadsheet_would_run_are_neutralised() {
        for formula in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise(formula), format!("'{formula}"));
        }
        for text in ["Ada", "ada@example.com", "", " =x", "'quoted"] {
            assert_eq!(neutralise(text), text);
        }
    }
}
