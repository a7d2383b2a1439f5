//! The state-changing operator action, a POST behind the CSRF gate: switching the generator's
//! scenario. It answers with a redirect back to its view (post/redirect/get), which works with
//! or without JavaScript. (Alert routing is Alertmanager's job; the Alerts page links there.)

use std::collections::HashMap;

use axum::extract::{Form, State};
use axum::response::{IntoResponse, Redirect, Response};

use schemas::Scenario;

use crate::state::Shared;

pub async fn scenario(State(st): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let Some(s) = form.get("scenario").and_then(|s| Scenario::from_name(s)) else {
        let given = form.get("scenario").cloned().unwrap_or_default();
        let outcome = crate::control::SwitchOutcome {
            at: std::time::SystemTime::now(),
            requested: Scenario::Healthy,
            result: Err(format!("scenario: {given:?} is not one of healthy, degrading, critical, cascade")),
        };
        *crate::locks::lock(&st.last_switch) = Some(outcome);
        return Redirect::to("/demo").into_response();
    };
    let outcome = crate::control::switch(&st, s).await;
    match &outcome.result {
        Ok(r) => tracing::info!(scenario = r.scenario.name(), affected = r.affected.len(), "generator scenario switched"),
        Err(e) => tracing::warn!(error = %e, scenario = s.name(), "scenario switch failed"),
    }
    Redirect::to("/demo").into_response()
}
