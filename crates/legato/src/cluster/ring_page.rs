//! `/ring` (and `/ingester/ring`, `/compactor/ring`): the members and token ownership, as
//! HTML for a browser or JSON with `Accept: application/json` or `?format=json`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use legato_cluster::{Cluster, Role};

#[derive(Clone)]
struct RingState {
    cluster: Arc<Cluster>,
    replication_factor: usize,
}

pub fn router(cluster: Arc<Cluster>, replication_factor: usize) -> Router {
    let state = RingState {
        cluster,
        replication_factor,
    };
    Router::new()
        .route("/ring", get(|s, q, h| page(s, q, h, Role::Ingester)))
        .route("/ingester/ring", get(|s, q, h| page(s, q, h, Role::Ingester)))
        .route("/compactor/ring", get(|s, q, h| page(s, q, h, Role::Compactor)))
        .route(
            "/metrics-generator/ring",
            get(|s, q, h| page(s, q, h, Role::MetricsGenerator)),
        )
        .route("/memberlist", get(|s, q, h| page(s, q, h, Role::Querier)))
        .with_state(state)
}

async fn page(
    State(state): State<RingState>,
    Query(params): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    role: Role,
) -> Response {
    let members = state.cluster.members();
    let ring = state.cluster.ring(role, state.replication_factor);
    let ownership: std::collections::HashMap<String, f64> = ring.ownership().into_iter().collect();
    let rows: Vec<serde_json::Value> = members
        .iter()
        .filter(|m| m.has_role(role) || role == Role::Querier)
        .map(|m| {
            serde_json::json!({
                "id": m.id,
                "state": m.state,
                "roles": m.roles,
                "address": m.grpc_addr,
                "http_address": m.http_addr,
                "tokens": m.num_tokens,
                "ownership": ownership.get(&m.id).copied().unwrap_or(0.0),
                "generation": m.generation,
            })
        })
        .collect();
    let wants_json = params.get("format").is_some_and(|f| f == "json")
        || headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        return axum::Json(serde_json::json!({
            "ring": role.as_str(),
            "self": state.cluster.self_id(),
            "replication_factor": state.replication_factor,
            "members": rows,
        }))
        .into_response();
    }
    let mut html = format!(
        "<!doctype html><html><head><title>Legato {role} ring</title></head><body><h1>{role} ring</h1>\
         <p>This node: {me}. Replication factor: {rf}.</p><table border=\"1\" cellpadding=\"4\">\
         <tr><th>Instance</th><th>State</th><th>Roles</th><th>Address</th><th>Tokens</th><th>Ownership</th></tr>",
        role = role.as_str(),
        me = escape(state.cluster.self_id()),
        rf = state.replication_factor
    );
    for r in &rows {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td></tr>",
            escape(r["id"].as_str().unwrap_or_default()),
            r["state"].as_str().unwrap_or_default(),
            escape(&r["roles"].to_string()),
            escape(r["address"].as_str().unwrap_or_default()),
            r["tokens"],
            r["ownership"].as_f64().unwrap_or(0.0) * 100.0
        ));
    }
    html.push_str("</table></body></html>\n");
    Html(html).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
