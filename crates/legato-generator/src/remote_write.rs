//! Prometheus remote write 1.0: protobuf `WriteRequest`, snappy-compressed, POSTed with the
//! protocol's headers. Messages written by hand from the protocol's definition.

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// The request body: the encoded message, snappy block format.
pub fn encode(request: &WriteRequest) -> Result<Vec<u8>, String> {
    let raw = prost::Message::encode_to_vec(request);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .map_err(|e| format!("snappy: {e}"))
}

/// Sends one body; `Err` says whether a retry can help.
pub async fn send(
    client: &reqwest::Client,
    cfg: &crate::config::RemoteWriteConfig,
    tenant: &legato_model::TenantId,
    body: Vec<u8>,
) -> Result<(), (bool, String)> {
    let mut req = client
        .post(&cfg.url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("User-Agent", concat!("legato/", env!("CARGO_PKG_VERSION")));
    // Multi-tenant receivers (Mimir, Cortex) file the series under the trace tenant.
    if *tenant != legato_model::TenantId::single()
        && !cfg.headers.keys().any(|k| k.eq_ignore_ascii_case("x-scope-orgid"))
    {
        req = req.header("X-Scope-OrgID", tenant.as_str());
    }
    for (k, v) in &cfg.headers {
        req = req.header(k, v);
    }
    match req.body(body).send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            // 4xx other than 429 will not get better by retrying the same data.
            let retry = status.is_server_error() || status.as_u16() == 429;
            Err((retry, format!("{status}: {}", text.trim())))
        }
        Err(e) => Err((true, e.to_string())),
    }
}
