//! The OpenAPI document at `/api/openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{contacts, groups, health, journeys, messages, nudges, owners, settings, validate, views};

struct SecretKeyAuth;

impl Modify for SecretKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "secret_key",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("A secret key, kith_sk_…")).build(),
            ),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "kith", description = "A self-hosted relationship CRM that listens to Segment events."),
    paths(
        contacts::list, contacts::export_csv, contacts::losing_touch, contacts::due, contacts::show, contacts::timeline,
        contacts::events, contacts::add_interaction, contacts::delete, contacts::merge, contacts::set_cadence,
        groups::accounts, groups::account, groups::audiences, groups::audience, groups::cadence_rules,
        groups::set_cadence_rule, groups::delete_cadence_rule, groups::alias_conflicts,
        health::model, health::set_model, health::set_rating, health::at_risk,
        settings::workspace, settings::update_workspace, settings::reprojection, settings::reproject, settings::keys,
        settings::create_key, settings::revoke_key,
        validate::validate,
        nudges::list, nudges::create, nudges::show, nudges::update, nudges::delete, nudges::deliveries, nudges::retry,
        messages::topics, messages::create_topic, messages::update_topic, messages::delete_topic,
        messages::templates, messages::create_template, messages::template,
        messages::update_template, messages::delete_template, messages::preview, messages::sender,
        messages::set_sender, messages::limits, messages::set_limits, messages::contact_messages,
        messages::template_stats, messages::rule_stats,
        journeys::list, journeys::create, journeys::show, journeys::update, journeys::delete, journeys::pause,
        journeys::resume, journeys::step_contacts, journeys::backtest, journeys::backtest_draft,
        journeys::backtest_rule, journeys::contact_journeys,
        owners::set_account_owner, owners::set_contact_owner, owners::tasks, owners::create_task, owners::task,
        owners::update_task, owners::delete_task, owners::complete_task, owners::reopen_task, owners::today,
    ),
    components(schemas(views::ContactView, crate::ingest::BatchAnswer, crate::debugger_feed::DebugEntry)),
    modifiers(&SecretKeyAuth),
)]
pub struct ApiDoc;

/// Serves the document.
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
