//! The two state-changing operator actions, both POSTs behind the CSRF gate: saving the
//! (simulated) alert routing and switching the generator's scenario. Both answer with a
//! redirect back to their view (post/redirect/get), which works with or without JavaScript.

use std::collections::HashMap;

use axum::extract::{Form, State};
use axum::response::{IntoResponse, Redirect, Response};

use schemas::Scenario;

use crate::format;
use crate::state::{write, Shared};

pub async fn routing(State(st): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let current = crate::state::read(&st.routing).clone();
    match current.with_form(&form) {
        Ok(r) => {
            *write(&st.routing) = r;
            Redirect::to("/alerts?saved=1#routing").into_response()
        }
        Err((field, why)) => {
            let msg = format!("Routing not saved: {field}: {why}");
            Redirect::to(&format!("/alerts?error={}#routing", format::url_component(&msg))).into_response()
        }
    }
}

pub async fn scenario(State(st): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let Some(s) = form.get("scenario").and_then(|s| Scenario::from_name(s)) else {
        let given = form.get("scenario").cloned().unwrap_or_default();
        let outcome = crate::control::SwitchOutcome {
            at: std::time::SystemTime::now(),
            requested: Scenario::Healthy,
            result: Err(format!("scenario: {given:?} is not one of healthy, degrading, critical, cascade")),
        };
        *crate::state::lock(&st.last_switch) = Some(outcome);
        return Redirect::to("/demo").into_response();
    };
    let outcome = crate::control::switch(&st, s).await;
    match &outcome.result {
        Ok(r) => tracing::info!(scenario = r.scenario.name(), affected = r.affected.len(), "generator scenario switched"),
        Err(e) => tracing::warn!(error = %e, scenario = s.name(), "scenario switch failed"),
    }
    Redirect::to("/demo").into_response()
}
