//! The junk marker: smtpd's DMARC check (`p=quarantine`, see
//! `postern_common::checks::auth::JUNK_HEADER`) asks for delivery into the
//! recipient's `Junk` folder with an `X-Postern-Junk:` header field.
//!
//! **Spoofing.** Anyone can write that field into a message. smtpd prepends
//! its check headers *above* the `Received:` field it writes itself, so a
//! copy that comes from the sender is always below the first `Received:`.
//! Only a copy above the first `Received:` field is acted on; every copy is
//! removed from the stored message, so a planted one does nothing and none
//! reaches a mailbox (nor tells the user how the installation marks mail).
//! Mail injected with `sendmail` has no smtpd `Received:` above a field the
//! local user wrote: such a user can file their own message as junk, which
//! harms no one else.

use postern_common::checks::auth::JUNK_HEADER;

/// Bound on the header section scanned (a header section larger than this
/// is left as it is: the marker is near the top when it is ours).
const MAX_HEADER_SCAN: usize = 256 * 1024;

/// Remove every junk marker; `true` when one above the first `Received:`
/// asked for the Junk folder. Returns `None` when nothing was removed (the
/// message is stored as it is).
pub fn take_marker(message: &[u8]) -> (Option<Vec<u8>>, bool) {
    let mut fields: Vec<(usize, usize)> = Vec::new(); // [start, end) of marker fields
    let mut junk = false;
    let mut seen_received = false;
    let mut pos = 0;
    let limit = message.len().min(MAX_HEADER_SCAN);
    while pos < limit {
        // End of the header section.
        if message[pos..].starts_with(b"\r\n") || message[pos] == b'\n' {
            break;
        }
        // One field: its first line plus continuation lines.
        let mut end = pos;
        loop {
            match message[end..].iter().position(|&b| b == b'\n') {
                Some(i) => end += i + 1,
                None => {
                    end = message.len();
                    break;
                }
            }
            if end >= message.len() || !matches!(message[end], b' ' | b'\t') {
                break;
            }
        }
        let field = &message[pos..end];
        let name_end = field.iter().position(|&b| b == b':');
        if let Some(n) = name_end {
            let name = &field[..n];
            let name = name.trim_ascii_end();
            if name.eq_ignore_ascii_case(JUNK_HEADER.as_bytes()) {
                if !seen_received {
                    let value = field[n + 1..].trim_ascii_start();
                    if value.len() >= 3 && value[..3].eq_ignore_ascii_case(b"yes") {
                        junk = true;
                    }
                }
                fields.push((pos, end));
            } else if name.eq_ignore_ascii_case(b"Received") {
                seen_received = true;
            }
        }
        pos = end;
    }
    if fields.is_empty() {
        return (None, false);
    }
    let mut out = Vec::with_capacity(message.len());
    let mut at = 0;
    for (s, e) in fields {
        out.extend_from_slice(&message[at..s]);
        at = e;
    }
    out.extend_from_slice(&message[at..]);
    (Some(out), junk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_is_above_received() {
        let m = b"X-Postern-Junk: yes (DMARC policy quarantine of a.test)\r\nReceived: from x\r\n\tby y\r\nSubject: s\r\n\r\nX-Postern-Junk: yes\r\n";
        let (out, junk) = take_marker(m);
        assert!(junk);
        assert_eq!(
            out.unwrap(),
            b"Received: from x\r\n\tby y\r\nSubject: s\r\n\r\nX-Postern-Junk: yes\r\n"
        );
    }

    #[test]
    fn a_planted_marker_is_removed_and_ignored() {
        let m = b"Authentication-Results: mx; dmarc=pass\r\nReceived: from x\r\nx-postern-junk: yes\r\n folded\r\nSubject: s\r\n\r\nbody\r\n";
        let (out, junk) = take_marker(m);
        assert!(!junk);
        assert_eq!(
            out.unwrap(),
            b"Authentication-Results: mx; dmarc=pass\r\nReceived: from x\r\nSubject: s\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn no_marker_no_copy() {
        let (out, junk) = take_marker(b"Subject: s\r\n\r\nX-Postern-Junk: yes\r\n");
        assert!(out.is_none());
        assert!(!junk);
        // Degenerate inputs do not panic.
        for m in [
            &b""[..],
            b"\r\n",
            b"X-Postern-Junk",
            b"X-Postern-Junk: yes",
            b":\r\n \r\n",
        ] {
            let _ = take_marker(m);
        }
        let (_, junk) = take_marker(b"X-Postern-Junk: yes");
        assert!(junk);
    }

    #[test]
    fn every_split_point_is_safe() {
        let m = b"X-Postern-Junk: yes\r\nReceived: a\r\nX-Postern-Junk: yes\r\n\r\nb";
        for i in 0..m.len() {
            let _ = take_marker(&m[..i]);
        }
    }
}
