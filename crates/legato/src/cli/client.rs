//! The HTTP side of the CLI: one Tempo-compatible endpoint (any path prefix kept), the tenant
//! header, bearer or basic auth, and errors that name what failed.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use reqwest::{StatusCode, Url};

/// Where the query API is and how to authenticate to it.
#[derive(Debug, Clone, Args)]
pub struct Endpoint {
    /// Base URL of a Tempo-compatible query API (a path prefix is kept).
    #[arg(long, env = "LEGATO_URL", default_value = "http://localhost:3200")]
    pub url: String,
    /// Tenant, sent as X-Scope-OrgID (`a|b` queries several tenants).
    #[arg(long, env = "LEGATO_TENANT")]
    pub tenant: Option<String>,
    /// Bearer token for the Authorization header.
    #[arg(
        long,
        env = "LEGATO_BEARER_TOKEN",
        hide_env_values = true,
        conflicts_with = "basic_auth"
    )]
    pub bearer_token: Option<String>,
    /// Basic auth credentials.
    #[arg(long, env = "LEGATO_BASIC_AUTH", value_name = "USER:PASS", hide_env_values = true)]
    pub basic_auth: Option<String>,
    /// Give up on a request after this long.
    #[arg(long, env = "LEGATO_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// A client for one endpoint.
pub struct Api {
    http: reqwest::Client,
    base: Url,
    endpoint: Endpoint,
}

/// A 2xx answer or a 404 (which some callers fall back from).
pub enum Answer {
    Ok(String),
    NotFound,
}

impl Api {
    pub fn new(endpoint: &Endpoint) -> anyhow::Result<Self> {
        let base = Url::parse(&endpoint.url).with_context(|| format!("--url {:?} is not a URL", endpoint.url))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("--url {:?} must start with http:// or https://", endpoint.url);
        }
        if let Some(auth) = &endpoint.basic_auth
            && !auth.contains(':')
        {
            bail!("--basic-auth must be USER:PASS");
        }
        let http = reqwest::Client::builder()
            .timeout(endpoint.timeout)
            .user_agent(concat!("legato-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base,
            endpoint: endpoint.clone(),
        })
    }

    /// The URL of `segments` (each percent-encoded as one path segment) under the base URL.
    pub fn url(&self, segments: &[&str], params: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        url
    }

    /// GETs the JSON answer of `segments`; an error for anything but 2xx.
    pub async fn get(&self, segments: &[&str], params: &[(&str, String)]) -> anyhow::Result<String> {
        let url = self.url(segments, params);
        match self.fetch(url.clone()).await? {
            Answer::Ok(body) => Ok(body),
            Answer::NotFound => Err(anyhow!("GET {url}: HTTP 404 Not Found")),
        }
    }

    /// GETs `url`: the body of a 2xx, `NotFound` for a 404, an error naming the URL otherwise.
    pub async fn fetch(&self, url: Url) -> anyhow::Result<Answer> {
        let mut request = self.http.get(url.clone()).header("accept", "application/json");
        if let Some(tenant) = &self.endpoint.tenant {
            request = request.header("x-scope-orgid", tenant);
        }
        if let Some(token) = &self.endpoint.bearer_token {
            request = request.bearer_auth(token);
        }
        if let Some((user, pass)) = self.endpoint.basic_auth.as_deref().and_then(|a| a.split_once(':')) {
            request = request.basic_auth(user, Some(pass));
        }
        let response = request.send().await.map_err(|e| self.request_error(&url, &e))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| anyhow!("GET {url}: reading the answer: {}", root_cause(&e)))?;
        if status.is_success() {
            return Ok(Answer::Ok(body));
        }
        if status == StatusCode::NOT_FOUND {
            return Ok(Answer::NotFound);
        }
        Err(anyhow!(
            "GET {url}: HTTP {status}{}{}",
            body_excerpt(&body),
            hint(status)
        ))
    }

    fn request_error(&self, url: &Url, e: &reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            return anyhow!(
                "cannot connect to {} ({}); is a Tempo-compatible server listening there? (--url, LEGATO_URL)",
                self.endpoint.url,
                root_cause(e)
            );
        }
        if e.is_timeout() {
            return anyhow!(
                "GET {url}: no answer within {} (--timeout)",
                humantime::format_duration(self.endpoint.timeout)
            );
        }
        anyhow!("GET {url}: {}", root_cause(e))
    }
}

/// The innermost cause of an error (`Connection refused (os error 111)`), which reqwest's own
/// message hides behind "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// `: <body>` for an error answer, cut to a readable length.
fn body_excerpt(body: &str) -> String {
    const MAX: usize = 500;
    let body = body.trim();
    if body.is_empty() {
        return String::new();
    }
    match body.char_indices().nth(MAX) {
        Some((cut, _)) => format!(": {}…", &body[..cut]),
        None => format!(": {body}"),
    }
}

fn hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => {
            " (with multitenancy on, pass --tenant; with auth on, --bearer-token or --basic-auth)"
        }
        StatusCode::FORBIDDEN => " (check --bearer-token / --basic-auth)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(url: &str) -> Api {
        Api::new(&Endpoint {
            url: url.into(),
            tenant: None,
            bearer_token: None,
            basic_auth: None,
            timeout: Duration::from_secs(1),
        })
        .unwrap()
    }

    #[test]
    fn urls_keep_the_prefix_and_encode_segments_and_parameters() {
        let prefixed = api("http://tempo:3200/tempo/");
        assert_eq!(
            prefixed
                .url(&["api", "v2", "search", "tag", "span.a/b", "values"], &[])
                .as_str(),
            "http://tempo:3200/tempo/api/v2/search/tag/span.a%2Fb/values"
        );
        let plain = api("http://localhost:3200");
        assert_eq!(
            plain
                .url(&["api", "search"], &[("q", r#"{ name = "a b" }"#.into())])
                .as_str(),
            "http://localhost:3200/api/search?q=%7B+name+%3D+%22a+b%22+%7D"
        );
        assert!(
            Api::new(&Endpoint {
                url: "localhost:3200".into(),
                ..prefixed.endpoint.clone()
            })
            .is_err()
        );
    }

    #[test]
    fn error_bodies_are_cut() {
        assert_eq!(body_excerpt("  \n"), "");
        assert_eq!(body_excerpt("bad query\n"), ": bad query");
        assert!(body_excerpt(&"x".repeat(600)).ends_with("x…"));
    }
}
