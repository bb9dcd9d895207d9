//! Attribute keys and string values cut to `max_attribute_bytes` (Tempo's distributor limit),
//! in the wire format. The distributor's walk only notes that an export holds an attribute
//! over the limit ([`Split::attributes_over_limit`](super::Split)); then, and only then, the
//! export is rewritten here and walked again, so the common case costs two comparisons per
//! attribute. Everything but the cut strings, and the lengths of the messages around them,
//! is copied byte for byte.
//!
//! As in Tempo, the places are the attributes of resources, scopes, spans, events and links,
//! each `KeyValue`'s key and its value when it is a string (values inside arrays and maps
//! are left alone). Unlike Tempo, which cuts at the byte and can leave half a character (an
//! invalid UTF-8 string that strict decoders refuse), a cut keeps the longest prefix of whole
//! characters within the limit.

use bytes::Bytes;

use super::{Reader, Value, WireError, put_varint};

/// Attribute keys and values cut, by where the attribute was (Tempo's `scope` label).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    pub resource: u64,
    pub scope: u64,
    pub span: u64,
    pub event: u64,
    pub link: u64,
}

impl Truncated {
    pub fn total(&self) -> u64 {
        self.resource + self.scope + self.span + self.event + self.link
    }

    /// Each count with its label value.
    pub fn by_scope(&self) -> [(&'static str, u64); 5] {
        [
            ("resource", self.resource),
            ("scope", self.scope),
            ("span", self.span),
            ("event", self.event),
            ("link", self.link),
        ]
    }
}

#[derive(Clone, Copy)]
enum Place {
    Resource,
    Scope,
    Span,
    Event,
    Link,
}

/// The encoded `ResourceSpans` of an encoded `ExportTraceServiceRequest`.
pub fn request_resource_spans(body: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    let mut resource_spans = Vec::new();
    let mut r = Reader::new(body);
    while let Some(field) = r.next_field()? {
        match field.value {
            Value::Len(b) if field.number == 1 => resource_spans.push(b),
            _ if field.number == 1 => return Err(super::wrong_type("ExportTraceServiceRequest", 1)),
            _ => {}
        }
    }
    Ok(resource_spans)
}

/// Each encoded `ResourceSpans` with every attribute key and string value longer than
/// `max_attribute_bytes` cut to at most that many bytes, on a character boundary; and what
/// was cut. Meant for an export the walk accepted.
pub fn truncate_attributes<B: AsRef<[u8]>>(
    resource_spans: &[B],
    max_attribute_bytes: usize,
) -> Result<(Vec<Bytes>, Truncated), WireError> {
    let mut cutter = Cutter {
        max: max_attribute_bytes,
        counts: Truncated::default(),
    };
    let mut out = Vec::with_capacity(resource_spans.len());
    for rs in resource_spans {
        let rs = rs.as_ref();
        let rewritten = cutter.resource_spans(rs)?;
        out.push(rewritten.map_or_else(|| Bytes::copy_from_slice(rs), Bytes::from));
    }
    Ok((out, cutter.counts))
}

/// Each function returns the message rewritten, or `None` when nothing in it was cut.
struct Cutter {
    max: usize,
    counts: Truncated,
}

impl Cutter {
    fn resource_spans(&mut self, buf: &[u8]) -> Result<Option<Vec<u8>>, WireError> {
        rewrite(buf, |number, b| match number {
            1 => self.attributes_of(b, 1, Place::Resource),
            2 => self.scope_spans(b),
            _ => Ok(None),
        })
    }

    fn scope_spans(&mut self, buf: &[u8]) -> Result<Option<Vec<u8>>, WireError> {
        rewrite(buf, |number, b| match number {
            1 => self.attributes_of(b, 3, Place::Scope),
            2 => self.span(b),
            _ => Ok(None),
        })
    }

    fn span(&mut self, buf: &[u8]) -> Result<Option<Vec<u8>>, WireError> {
        rewrite(buf, |number, b| match number {
            9 => self.key_value(b, Place::Span),
            11 => self.attributes_of(b, 3, Place::Event),
            13 => self.attributes_of(b, 4, Place::Link),
            _ => Ok(None),
        })
    }

    /// A message (resource, scope, event, link) whose field `field` holds its attributes.
    fn attributes_of(&mut self, buf: &[u8], field: u32, place: Place) -> Result<Option<Vec<u8>>, WireError> {
        rewrite(buf, |number, b| {
            if number == field {
                self.key_value(b, place)
            } else {
                Ok(None)
            }
        })
    }

    fn key_value(&mut self, buf: &[u8], place: Place) -> Result<Option<Vec<u8>>, WireError> {
        rewrite(buf, |number, b| match number {
            1 => Ok(self.cut(b, place)),
            // The `AnyValue`: only its string (field 1) is cut.
            2 => rewrite(b, |number, s| Ok(if number == 1 { self.cut(s, place) } else { None })),
            _ => Ok(None),
        })
    }

    fn cut(&mut self, s: &[u8], place: Place) -> Option<Vec<u8>> {
        if s.len() <= self.max {
            return None;
        }
        let count = match place {
            Place::Resource => &mut self.counts.resource,
            Place::Scope => &mut self.counts.scope,
            Place::Span => &mut self.counts.span,
            Place::Event => &mut self.counts.event,
            Place::Link => &mut self.counts.link,
        };
        *count += 1;
        Some(s[..char_boundary(s, self.max)].to_vec())
    }
}

/// The largest length at most `max` at which UTF-8 text `s` can be cut between characters.
fn char_boundary(s: &[u8], max: usize) -> usize {
    let mut n = max.min(s.len());
    // A continuation byte (10xxxxxx) is inside a character.
    while n > 0 && n < s.len() && s[n] & 0xC0 == 0x80 {
        n -= 1;
    }
    n
}

/// `buf` with the length-delimited fields that `edit` rewrites replaced, every other byte
/// as it was; `None` when `edit` rewrote none.
fn rewrite(
    buf: &[u8],
    mut edit: impl FnMut(u32, &[u8]) -> Result<Option<Vec<u8>>, WireError>,
) -> Result<Option<Vec<u8>>, WireError> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut r = Reader::new(buf);
    while let Some(field) = r.next_field()? {
        let Value::Len(payload) = field.value else {
            continue;
        };
        let Some(new) = edit(field.number, payload)? else {
            continue;
        };
        let end = r.pos;
        let start = end - field.raw.len();
        let out = out.get_or_insert_with(|| Vec::with_capacity(buf.len()));
        out.extend_from_slice(&buf[copied..start]);
        put_varint(out, (u64::from(field.number) << 3) | 2);
        put_varint(out, new.len() as u64);
        out.extend_from_slice(&new);
        copied = end;
    }
    Ok(out.map(|mut out| {
        out.extend_from_slice(&buf[copied..]);
        out
    }))
}

#[cfg(test)]
mod tests {
    use super::char_boundary;

    #[test]
    fn cuts_fall_between_characters() {
        let s = "aé✓😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        let cuts: Vec<usize> = (0..=10).map(|max| char_boundary(s, max)).collect();
        assert_eq!(cuts, [0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10]);
        for n in cuts {
            assert!(std::str::from_utf8(&s[..n]).is_ok());
        }
    }
}
