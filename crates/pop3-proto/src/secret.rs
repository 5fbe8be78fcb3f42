//! A wrapper that keeps credentials out of logs.

use std::fmt;

/// A value that must never appear in logs: passwords, APOP digests, SASL
/// responses.
///
/// `Debug` prints `***` whatever the content, so deriving `Debug` on a type
/// that holds a `Secret` (such as [`Command`](crate::Command)) is safe. There
/// is deliberately no `Display` impl; use [`Secret::expose`] at the single
/// place that needs the value (the call to authd).
///
/// The memory is not zeroed on drop (that would need an extra dependency);
/// the protection offered is against accidental logging only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// Borrows the secret value. Name the call site so reviewers can find
    /// every place a credential leaves its wrapper.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Secret<Vec<u8>> {
    /// The secret as UTF-8 text, if it is valid UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_content() {
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s:#?}"), "***");
        assert_eq!(s.expose_str(), Some("hunter2"));
        assert_eq!(s.into_inner(), b"hunter2".to_vec());
    }
}
