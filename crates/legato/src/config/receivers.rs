//! `distributor.receivers.zipkin` and `distributor.receivers.jaeger`: as in Tempo (the
//! OpenTelemetry Collector's receivers), a receiver or protocol runs only when its key is
//! present, and a key given without a value (`zipkin:`) takes the defaults.

use std::marker::PhantomData;

use anyhow::bail;
use serde::{Deserialize, Deserializer, Serialize};

use crate::tls::TlsServerConfig;

/// A present key is `Some`, even with a null value; an absent one stays `None`.
pub(super) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(deserializer)?.unwrap_or_default()))
}

/// A listener whose endpoint defaults to `0.0.0.0:<P::PORT>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, bound = "")]
pub struct ReceiverEndpoint<P: DefaultPort> {
    pub endpoint: String,
    /// The Collector's receiver `tls` block. Read for every protocol so that a UDP one can
    /// refuse it with a message that says why (see `validate`).
    #[serde(skip_serializing_if = "TlsServerConfig::is_unset")]
    pub tls: TlsServerConfig,
    #[serde(skip)]
    port: PhantomData<P>,
}

impl<P: DefaultPort> Default for ReceiverEndpoint<P> {
    fn default() -> Self {
        Self {
            endpoint: format!("0.0.0.0:{}", P::PORT),
            tls: TlsServerConfig::default(),
            port: PhantomData,
        }
    }
}

/// The port a receiver listens on when its `endpoint` is not given.
pub trait DefaultPort {
    const PORT: u16;
}

macro_rules! default_ports {
    ($($name:ident = $port:literal),* $(,)?) => {$(
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name;
        impl DefaultPort for $name {
            const PORT: u16 = $port;
        }
    )*};
}

default_ports!(
    JaegerGrpcPort = 14250,
    JaegerThriftHttpPort = 14268,
    JaegerThriftCompactPort = 6831,
    JaegerThriftBinaryPort = 6832,
);

/// `distributor.receivers.zipkin`: `POST /api/v2/spans` and `POST /api/v1/spans`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ZipkinReceiverConfig {
    pub endpoint: String,
    /// The Collector's receiver `tls` block.
    #[serde(skip_serializing_if = "TlsServerConfig::is_unset")]
    pub tls: TlsServerConfig,
    /// The Collector's option: tag values that read as an integer, a float or a boolean
    /// become attributes of that type (v2 tags, v1 JSON binary annotations).
    pub parse_string_tags: bool,
}

impl Default for ZipkinReceiverConfig {
    fn default() -> Self {
        Self {
            endpoint: "0.0.0.0:9411".into(),
            tls: TlsServerConfig::default(),
            parse_string_tags: false,
        }
    }
}

impl ZipkinReceiverConfig {
    pub fn options(&self) -> legato_receivers::zipkin::ZipkinOptions {
        legato_receivers::zipkin::ZipkinOptions {
            parse_string_tags: self.parse_string_tags,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JaegerReceiverConfig {
    pub protocols: JaegerProtocols,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JaegerProtocols {
    /// `jaeger.api_v2.CollectorService/PostSpans`.
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub grpc: Option<ReceiverEndpoint<JaegerGrpcPort>>,
    /// `POST /api/traces`, a Thrift `Batch` in the binary protocol.
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub thrift_http: Option<ReceiverEndpoint<JaegerThriftHttpPort>>,
    /// The agent's `emitBatch` over UDP, compact protocol.
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub thrift_compact: Option<ReceiverEndpoint<JaegerThriftCompactPort>>,
    /// The agent's `emitBatch` over UDP, binary protocol.
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub thrift_binary: Option<ReceiverEndpoint<JaegerThriftBinaryPort>>,
}

impl JaegerProtocols {
    /// Each configured protocol as (its endpoint key, endpoint).
    pub fn endpoints(&self) -> Vec<(&'static str, &str)> {
        let all = [
            (
                "distributor.receivers.jaeger.protocols.grpc.endpoint",
                self.grpc.as_ref().map(|p| &p.endpoint),
            ),
            (
                "distributor.receivers.jaeger.protocols.thrift_http.endpoint",
                self.thrift_http.as_ref().map(|p| &p.endpoint),
            ),
            (
                "distributor.receivers.jaeger.protocols.thrift_compact.endpoint",
                self.thrift_compact.as_ref().map(|p| &p.endpoint),
            ),
            (
                "distributor.receivers.jaeger.protocols.thrift_binary.endpoint",
                self.thrift_binary.as_ref().map(|p| &p.endpoint),
            ),
        ];
        all.into_iter()
            .filter_map(|(key, endpoint)| Some((key, endpoint?.as_str())))
            .collect()
    }
}

/// The `tls` block of each configured TCP receiver (Zipkin, Jaeger grpc and thrift_http)
/// as (its key, block), for the start-up checks of every TLS block.
pub(super) fn tls_blocks<'a>(
    zipkin: Option<&'a ZipkinReceiverConfig>,
    jaeger: Option<&'a JaegerReceiverConfig>,
) -> Vec<(&'static str, &'a TlsServerConfig)> {
    let protocols = jaeger.map(|j| &j.protocols);
    let all = [
        ("distributor.receivers.zipkin.tls", zipkin.map(|z| &z.tls)),
        (
            "distributor.receivers.jaeger.protocols.grpc.tls",
            protocols.and_then(|p| p.grpc.as_ref()).map(|p| &p.tls),
        ),
        (
            "distributor.receivers.jaeger.protocols.thrift_http.tls",
            protocols.and_then(|p| p.thrift_http.as_ref()).map(|p| &p.tls),
        ),
    ];
    all.into_iter().filter_map(|(key, tls)| Some((key, tls?))).collect()
}

/// Start-up checks of the Zipkin and Jaeger receivers. `tenants_from_requests` is true when
/// every write must name or prove its tenant (multitenancy or authentication), which UDP
/// datagrams cannot.
pub(super) fn validate(
    zipkin: Option<&ZipkinReceiverConfig>,
    jaeger: Option<&JaegerReceiverConfig>,
    tenants_from_requests: bool,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut endpoints = Vec::new();
    if let Some(z) = zipkin {
        endpoints.push(("distributor.receivers.zipkin.endpoint", z.endpoint.clone()));
    }
    let Some(jaeger) = jaeger else {
        return Ok(endpoints);
    };
    let protocols = &jaeger.protocols;
    if protocols.endpoints().is_empty() {
        bail!(
            "invalid configuration at distributor.receivers.jaeger.protocols: name at least one of grpc, thrift_http, thrift_compact, thrift_binary"
        );
    }
    let udp = [
        ("thrift_compact", protocols.thrift_compact.as_ref().map(|p| &p.tls)),
        ("thrift_binary", protocols.thrift_binary.as_ref().map(|p| &p.tls)),
    ];
    for (name, tls) in udp {
        let Some(tls) = tls else { continue };
        if tenants_from_requests {
            bail!(
                "invalid configuration at distributor.receivers.jaeger.protocols.{name}: UDP datagrams carry no tenant or credentials, so it cannot run with multitenancy_enabled or auth.credentials_file; use thrift_http or grpc"
            );
        }
        if !tls.is_unset() {
            bail!(
                "invalid configuration at distributor.receivers.jaeger.protocols.{name}.tls: {name} is UDP, which cannot carry TLS; use thrift_http or grpc, which take a tls block"
            );
        }
    }
    endpoints.extend(protocols.endpoints().into_iter().map(|(k, e)| (k, e.to_string())));
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn receivers_run_only_when_their_key_is_present_and_a_bare_key_takes_the_defaults() {
        let none = Config::from_yaml("target: all\n").unwrap();
        assert!(none.distributor.receivers.zipkin.is_none() && none.distributor.receivers.jaeger.is_none());
        assert!(!none.masked_yaml().contains("zipkin"), "absent receivers are not shown");

        let cfg = Config::from_yaml(
            "distributor:\n  receivers:\n    zipkin:\n    jaeger:\n      protocols:\n        thrift_http:\n        grpc:\n        thrift_compact:\n          endpoint: 127.0.0.1:7000\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let receivers = &cfg.distributor.receivers;
        assert_eq!(receivers.zipkin.as_ref().unwrap().endpoint, "0.0.0.0:9411");
        assert!(
            !receivers.zipkin.as_ref().unwrap().options().parse_string_tags,
            "off by default"
        );
        let protocols = &receivers.jaeger.as_ref().unwrap().protocols;
        assert_eq!(protocols.thrift_http.as_ref().unwrap().endpoint, "0.0.0.0:14268");
        assert_eq!(protocols.thrift_compact.as_ref().unwrap().endpoint, "127.0.0.1:7000");
        assert_eq!(protocols.grpc.as_ref().unwrap().endpoint, "0.0.0.0:14250");
        assert!(protocols.thrift_binary.is_none());
        assert!(cfg.masked_yaml().contains("0.0.0.0:14268"));
    }

    #[test]
    fn receiver_mistakes_are_refused_naming_the_key() {
        let refused = |yaml: &str| {
            let error = match Config::from_yaml(yaml) {
                Ok(cfg) => cfg.validate().unwrap_err(),
                Err(e) => e,
            };
            format!("{error:#}")
        };
        let empty = refused("distributor:\n  receivers:\n    jaeger:\n");
        assert!(empty.contains("distributor.receivers.jaeger.protocols"), "{empty}");
        let port = refused("distributor:\n  receivers:\n    zipkin:\n      endpoint: nowhere\n");
        assert!(port.contains("distributor.receivers.zipkin.endpoint"), "{port}");
        let udp = refused(
            "multitenancy_enabled: true\ndistributor:\n  receivers:\n    jaeger:\n      protocols:\n        thrift_binary:\n",
        );
        assert!(udp.contains("thrift_binary") && udp.contains("tenant"), "{udp}");
        let unknown = refused("distributor:\n  receivers:\n    zipkin:\n      parse_tags: true\n");
        assert!(unknown.contains("parse_tags"), "{unknown}");
    }

    /// The Collector's zipkin receiver option, read and shown.
    #[test]
    fn zipkin_takes_parse_string_tags() {
        let cfg =
            Config::from_yaml("distributor:\n  receivers:\n    zipkin:\n      parse_string_tags: true\n").unwrap();
        cfg.validate().unwrap();
        let zipkin = cfg.distributor.receivers.zipkin.as_ref().unwrap();
        assert!(zipkin.options().parse_string_tags);
        assert_eq!(zipkin.endpoint, "0.0.0.0:9411");
        assert!(cfg.masked_yaml().contains("parse_string_tags: true"));
    }

    #[test]
    fn tcp_receivers_take_a_tls_block_and_udp_ones_refuse_it_saying_why() {
        let cfg = Config::from_yaml(
            "distributor:\n  receivers:\n    zipkin:\n      tls:\n        cert_file: /c.pem\n        key_file: /k.pem\n    jaeger:\n      protocols:\n        grpc:\n          tls:\n            cert_file: /g.pem\n            key_file: /gk.pem\n            client_ca_file: /ca.pem\n        thrift_http:\n",
        )
        .unwrap();
        let receivers = &cfg.distributor.receivers;
        assert_eq!(
            receivers.zipkin.as_ref().unwrap().tls.cert_file,
            std::path::Path::new("/c.pem")
        );
        let protocols = &receivers.jaeger.as_ref().unwrap().protocols;
        assert_eq!(
            protocols.grpc.as_ref().unwrap().tls.client_ca_file,
            std::path::Path::new("/ca.pem")
        );
        assert!(protocols.thrift_http.as_ref().unwrap().tls.is_unset());
        let shown = cfg.masked_yaml();
        // Shown where set (the two OTLP blocks are always shown); thrift_http's is not.
        assert!(
            shown.contains("/gk.pem") && shown.matches("tls:").count() == 4,
            "{shown}"
        );
        // The files are read at start-up: a missing one names the receiver's key.
        let missing = format!("{:#}", cfg.validate().unwrap_err());
        assert!(
            missing.contains("distributor.receivers.zipkin.tls.cert_file"),
            "{missing}"
        );

        let half = Config::from_yaml(
            "distributor:\n  receivers:\n    jaeger:\n      protocols:\n        thrift_http:\n          tls:\n            key_file: /k.pem\n",
        )
        .unwrap();
        let half = format!("{:#}", half.validate().unwrap_err());
        assert!(
            half.contains("distributor.receivers.jaeger.protocols.thrift_http.tls needs both cert_file and key_file"),
            "{half}"
        );

        let udp = Config::from_yaml(
            "distributor:\n  receivers:\n    jaeger:\n      protocols:\n        thrift_compact:\n          tls:\n            cert_file: /c.pem\n            key_file: /k.pem\n",
        )
        .unwrap();
        let udp = format!("{:#}", udp.validate().unwrap_err());
        assert!(
            udp.contains("distributor.receivers.jaeger.protocols.thrift_compact.tls") && udp.contains("UDP"),
            "{udp}"
        );
    }
}
