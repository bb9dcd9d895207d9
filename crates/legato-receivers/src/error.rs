/// A body that cannot be translated; the message names the field and, where there is one,
/// the span.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("{0}")]
    Invalid(String),
}

impl ReceiveError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}
