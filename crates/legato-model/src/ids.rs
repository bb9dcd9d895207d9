use std::fmt;

use serde::{Deserialize, Serialize};

use crate::IdError;

/// Tenant used for everything when multitenancy is off, as in Tempo.
pub const SINGLE_TENANT: &str = "single-tenant";

/// A 128-bit trace id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

impl TraceId {
    /// Parses a trace id the way Tempo's HTTP API does: 1-32 hex digits, any case, odd length
    /// allowed, left-padded with zeros.
    pub fn parse_hex(text: &str) -> Result<Self, IdError> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        if let Some((pos, ch)) = text.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(IdError::NonHex { ch, pos });
        }
        if text.len() > 32 {
            return Err(IdError::TooLong);
        }
        let padded = format!("{text:0>32}");
        let mut out = [0u8; 16];
        hex::decode_to_slice(padded, &mut out).map_err(|_| IdError::TooLong)?;
        Ok(Self(out))
    }

    /// Validates raw OTLP bytes: exactly 16 bytes and not all zero.
    pub fn from_otlp(bytes: &[u8]) -> Result<Self, IdError> {
        let arr: [u8; 16] = bytes
            .try_into()
            .map_err(|_| IdError::TraceIdLength { bits: bytes.len() * 8 })?;
        if arr == [0; 16] {
            return Err(IdError::TraceIdZero);
        }
        Ok(Self(arr))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Hex without leading zeros ("0" for the zero id), as Tempo writes trace ids in search
    /// results and exemplars.
    pub fn to_short_hex(&self) -> String {
        let hex = self.to_hex();
        match hex.trim_start_matches('0') {
            "" => "0".to_string(),
            trimmed => trimmed.to_string(),
        }
    }

    /// FNV-1a over the bytes; used to shard and hash traces.
    pub fn fnv32(&self) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in self.0 {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.to_hex())
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A 64-bit span id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

impl SpanId {
    /// Validates raw OTLP bytes: exactly 8 bytes and not all zero.
    pub fn from_otlp(bytes: &[u8]) -> Result<Self, IdError> {
        let arr: [u8; 8] = bytes
            .try_into()
            .map_err(|_| IdError::SpanIdInvalid { bits: bytes.len() * 8 })?;
        if arr == [0; 8] {
            return Err(IdError::SpanIdInvalid { bits: 64 });
        }
        Ok(Self(arr))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({})", hex::encode(self.0))
    }
}

/// A validated tenant id (Tempo's rules: at most 150 bytes of `[A-Za-z0-9!-_.*'()]`, not `.`/`..`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    pub fn new(text: &str) -> Result<Self, IdError> {
        let bad = |why| Err(IdError::Tenant(text.to_string(), why));
        if text.is_empty() {
            return bad("empty");
        }
        if text.len() > 150 {
            return bad("longer than 150 bytes");
        }
        if text == "." || text == ".." {
            return bad("must not be '.' or '..'");
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c);
        if !text.chars().all(allowed) {
            return bad("only ASCII letters, digits and !-_.*'() are allowed");
        }
        Ok(Self(text.to_string()))
    }

    pub fn single() -> Self {
        Self(SINGLE_TENANT.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A block id (a random UUID, as in Tempo).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlockId(pub uuid::Uuid);

impl BlockId {
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_parsing_follows_tempo() {
        let id = TraceId::parse_hex("ABC").unwrap();
        assert_eq!(id.to_hex(), "00000000000000000000000000000abc");
        assert!(matches!(
            TraceId::parse_hex("12g4"),
            Err(IdError::NonHex { ch: 'g', pos: 2 })
        ));
        assert_eq!(TraceId::parse_hex(&"1".repeat(33)), Err(IdError::TooLong));
        assert_eq!(TraceId::parse_hex(""), Err(IdError::Empty));
    }

    #[test]
    fn otlp_ids_are_validated() {
        assert!(TraceId::from_otlp(&[0; 16]).is_err());
        assert!(TraceId::from_otlp(&[1; 8]).is_err());
        assert!(SpanId::from_otlp(&[0; 8]).is_err());
        assert!(SpanId::from_otlp(&[1; 8]).is_ok());
    }

    #[test]
    fn tenant_rules() {
        assert!(TenantId::new("team-a_1").is_ok());
        assert!(TenantId::new("..").is_err());
        assert!(TenantId::new("a/b").is_err());
        assert!(TenantId::new(&"x".repeat(151)).is_err());
    }
}
