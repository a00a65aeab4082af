//! `/messages/stats`: what became of each template's and each rule's messages — sent,
//! delivered, opened, clicked, unsubscribed, bounced, skipped and held — as
//! `service/messages.rs` `stats` counts them.

use axum::extract::State;
use axum::response::Response;
use kith_store::StatsBy;
use maud::{html, Markup};

use super::layout::{self, Nav};
use super::session::Signed;
use super::WebResult;
use crate::service::messages::{self, Stats};
use crate::AppState;

/// `GET /messages/stats`.
pub async fn stats(State(state): State<AppState>, signed: Signed) -> WebResult<Response> {
    let workspace = signed.workspace.id;
    let templates = messages::stats(&state, workspace, StatsBy::Template).await?;
    let rules = messages::stats(&state, workspace, StatsBy::Rule).await?;
    let body = html! {
        (layout::page_header("Message stats", Some(html! { "What became of the messages each template and rule sent to contacts." }), None))
        section.card aria-labelledby="templates-title" {
            h2 #templates-title { "Templates" }
            (table("Template", &templates, "template"))
        }
        section.card aria-labelledby="rules-title" {
            h2 #rules-title { "Rules" }
            (table("Rule", &rules, "rule"))
        }
    };
    Ok(layout::page(&signed, Nav::Messages, "Message stats", body))
}

fn table(label: &str, rows: &[Stats], kind: &str) -> Markup {
    html! {
        @if rows.is_empty() {
            p.muted { "None yet." }
        } @else {
            div.table-wrap {
                table.table {
                    thead {
                        tr {
                            th scope="col" { (label) }
                            @for heading in ["Sent", "Delivered", "Opened", "Clicked", "Unsubscribed", "Bounced", "Skipped", "Held"] {
                                th scope="col" { (heading) }
                            }
                        }
                    }
                    tbody {
                        @for row in rows {
                            @let counts = &row.counts;
                            tr {
                                td {
                                    @match &row.name {
                                        Some(name) => { (name) }
                                        None => { span.muted { "deleted " (kind) " " (row.id) } }
                                    }
                                }
                                @for count in [counts.sent, counts.delivered, counts.opened, counts.clicked,
                                               counts.unsubscribed, counts.bounced, counts.skipped, counts.held] {
                                    td { (count) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
