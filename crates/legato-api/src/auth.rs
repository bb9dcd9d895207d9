//! Optional authentication of the query API, Grafana's streaming API and the OTLP receivers:
//! bearer tokens and basic auth from a credentials file, each credential bound to a tenant
//! (with multitenancy on, the credential decides the tenant; an `X-Scope-OrgID` naming another
//! is refused). `/ready` and `/metrics` stay open for probes and scrapers. Secrets never reach
//! a `Debug` output or a log line.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use legato_model::TenantId;
use serde::Deserialize;

use crate::{ApiError, SharedState, tenant};

/// One accepted credential: a bearer token, or a username and password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub tenant: String,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.bearer_token.is_some() { "bearer" } else { "basic" };
        f.debug_struct("Credential")
            .field("tenant", &self.tenant)
            .field("kind", &kind)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The credentials file: `credentials: [{tenant, bearer_token} | {tenant, username, password}]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsFile {
    pub credentials: Vec<Credential>,
}

/// Checks requests against the loaded credentials.
pub struct Authenticator {
    credentials: Vec<Credential>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("credentials", &self.credentials.len())
            .finish()
    }
}

impl Authenticator {
    /// Validates every credential (exactly one kind, non-empty secrets, a valid tenant).
    pub fn new(credentials: Vec<Credential>) -> Result<Self, String> {
        if credentials.is_empty() {
            return Err("no credentials: every request would be refused".into());
        }
        for (i, c) in credentials.iter().enumerate() {
            TenantId::new(&c.tenant).map_err(|e| format!("credentials[{i}].tenant: {e}"))?;
            let bearer = c.bearer_token.as_deref().is_some_and(|t| !t.is_empty());
            let basic = c.username.as_deref().is_some_and(|u| !u.is_empty() && !u.contains(':'))
                && c.password.as_deref().is_some_and(|p| !p.is_empty());
            if bearer == basic {
                return Err(format!(
                    "credentials[{i}] (tenant {}): give either bearer_token, or username (without ':') and password",
                    c.tenant
                ));
            }
        }
        Ok(Self { credentials })
    }

    /// The tenant of the credential in `Authorization`, or why the request is refused.
    fn credential_tenant(&self, headers: &HeaderMap) -> Result<&str, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Err(ApiError::Unauthenticated(
                "missing Authorization header (Bearer or Basic)".into(),
            ));
        };
        let found = if let Some(token) = value.strip_prefix("Bearer ") {
            self.credentials
                .iter()
                .find(|c| c.bearer_token.as_deref().is_some_and(|t| same(t, token.trim())))
        } else if let Some(encoded) = value.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::Unauthenticated("malformed Basic credentials".into()))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| ApiError::Unauthenticated("malformed Basic credentials".into()))?;
            self.credentials.iter().find(|c| {
                c.username.as_deref().is_some_and(|u| same(u, user))
                    && c.password.as_deref().is_some_and(|p| same(p, password))
            })
        } else {
            return Err(ApiError::Unauthenticated(
                "unsupported Authorization scheme: use Bearer or Basic".into(),
            ));
        };
        found
            .map(|c| c.tenant.as_str())
            .ok_or_else(|| ApiError::Unauthenticated("invalid credentials".into()))
    }

    /// Authenticates `headers`; with multitenancy, returns the tenant to act as (an
    /// `X-Scope-OrgID` naming another tenant is refused).
    pub fn authorize(&self, multitenancy: bool, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        let tenant = self.credential_tenant(headers)?;
        if !multitenancy {
            return Ok(None);
        }
        if let Some(asked) = headers.get(tenant::ORG_ID_HEADER).and_then(|v| v.to_str().ok())
            && asked.trim() != tenant
        {
            return Err(ApiError::Forbidden(format!(
                "these credentials are for tenant {tenant:?}, not {:?}",
                asked.trim()
            )));
        }
        Ok(Some(tenant.to_string()))
    }
}

/// Compares secrets in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Paths that never need credentials: probes and scrapers.
fn open_path(path: &str) -> bool {
    matches!(path, "/ready" | "/metrics")
}

/// Axum middleware for the HTTP API and OTLP/HTTP (and Grafana's gRPC streaming on the HTTP
/// port, answered with a gRPC status when refused).
pub async fn require(State(state): State<SharedState>, mut request: Request, next: Next) -> Response {
    let Some(auth) = &state.auth else {
        return next.run(request).await;
    };
    if open_path(request.uri().path()) {
        return next.run(request).await;
    }
    match auth.authorize(state.multitenancy_enabled, request.headers()) {
        Ok(tenant) => {
            if let Some(t) = tenant.and_then(|t| HeaderValue::from_str(&t).ok()) {
                request.headers_mut().insert(tenant::ORG_ID_HEADER, t);
            }
            next.run(request).await
        }
        Err(e) => {
            state.metrics.auth_failures.inc();
            let grpc = request
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            if grpc {
                return tonic::Status::from(e).into_http::<axum::body::Body>().into_response();
            }
            e.into_response()
        }
    }
}

/// The tenant of a gRPC request (OTLP/gRPC, streaming querier), after authentication.
pub fn grpc_tenant(state: &SharedState, metadata: &tonic::metadata::MetadataMap) -> Result<TenantId, ApiError> {
    let Some(auth) = &state.auth else {
        let org = metadata.get(tenant::ORG_ID_HEADER).and_then(|v| v.to_str().ok());
        return tenant::resolve(state.multitenancy_enabled, org);
    };
    let headers = metadata.clone().into_headers();
    let authorized = auth.authorize(state.multitenancy_enabled, &headers).inspect_err(|_| {
        state.metrics.auth_failures.inc();
    })?;
    let org = authorized
        .as_deref()
        .or_else(|| headers.get(tenant::ORG_ID_HEADER).and_then(|v| v.to_str().ok()));
    tenant::resolve(state.multitenancy_enabled, org)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        let file: CredentialsFile = serde_json::from_value(serde_json::json!({"credentials": [
            {"tenant": "team-a", "bearer_token": "token-a"},
            {"tenant": "team-b", "username": "bob", "password": "pw-b"},
        ]}))
        .unwrap();
        Authenticator::new(file.credentials).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn credentials_pick_the_tenant_and_secrets_stay_out_of_debug() {
        let a = auth();
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("bob:pw-b"));
        assert_eq!(
            a.authorize(true, &headers(&[("authorization", "Bearer token-a")]))
                .unwrap()
                .as_deref(),
            Some("team-a")
        );
        assert_eq!(
            a.authorize(true, &headers(&[("authorization", &basic)]))
                .unwrap()
                .as_deref(),
            Some("team-b")
        );
        assert!(matches!(
            a.authorize(true, &headers(&[])),
            Err(ApiError::Unauthenticated(_))
        ));
        assert!(matches!(
            a.authorize(true, &headers(&[("authorization", "Bearer nope")])),
            Err(ApiError::Unauthenticated(_))
        ));
        assert!(matches!(
            a.authorize(
                true,
                &headers(&[("authorization", "Bearer token-a"), ("x-scope-orgid", "team-b")])
            ),
            Err(ApiError::Forbidden(_))
        ));
        assert_eq!(
            a.authorize(false, &headers(&[("authorization", "Bearer token-a")]))
                .unwrap(),
            None
        );
        let debug = format!("{a:?} {:?}", a.credentials);
        assert!(!debug.contains("token-a") && !debug.contains("pw-b"), "{debug}");
        assert!(
            Authenticator::new(vec![Credential {
                tenant: "t".into(),
                bearer_token: None,
                username: Some("u".into()),
                password: None
            }])
            .is_err()
        );
    }
}
