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
//! Mail injected with `sendmail` gets that command's `Received:` line above
//! the user's own fields, so the same holds there.
//!
//! The same position rule removes forged `Authentication-Results` fields
//! naming our authserv-id ([`strip_forged_results`], RFC 8601 5).

use postern_common::checks::auth::JUNK_HEADER;

/// Bound on the header section scanned (a header section larger than this
/// is left as it is: the marker is near the top when it is ours).
const MAX_HEADER_SCAN: usize = 256 * 1024;

/// One header field: `[start, end)` of the whole field (continuation lines
/// and line end included), its name and its value (after the colon).
struct Field<'a> {
    start: usize,
    end: usize,
    name: &'a [u8],
    value: &'a [u8],
}

/// The header fields, up to the blank line or [`MAX_HEADER_SCAN`] bytes.
/// Lines without a colon are skipped (never removed).
fn fields(message: &[u8]) -> Vec<Field<'_>> {
    let mut out = Vec::new();
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
        if let Some(n) = field.iter().position(|&b| b == b':') {
            out.push(Field {
                start: pos,
                end,
                name: field[..n].trim_ascii_end(),
                value: &field[n + 1..],
            });
        }
        pos = end;
    }
    out
}

/// `message` without the byte ranges `drop` (sorted, disjoint).
fn without(message: &[u8], drop: &[(usize, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut at = 0;
    for &(s, e) in drop {
        out.extend_from_slice(&message[at..s]);
        at = e;
    }
    out.extend_from_slice(&message[at..]);
    out
}

/// Remove every junk marker; `true` when one above the first `Received:`
/// asked for the Junk folder. Returns `None` when nothing was removed (the
/// message is stored as it is).
pub fn take_marker(message: &[u8]) -> (Option<Vec<u8>>, bool) {
    let mut drop = Vec::new();
    let mut junk = false;
    let mut seen_received = false;
    for f in fields(message) {
        if f.name.eq_ignore_ascii_case(JUNK_HEADER.as_bytes()) {
            let value = f.value.trim_ascii_start();
            if !seen_received && value.len() >= 3 && value[..3].eq_ignore_ascii_case(b"yes") {
                junk = true;
            }
            drop.push((f.start, f.end));
        } else if f.name.eq_ignore_ascii_case(b"Received") {
            seen_received = true;
        }
    }
    if drop.is_empty() {
        return (None, false);
    }
    (Some(without(message, &drop)), junk)
}

/// RFC 8601 section 5: `Authentication-Results` fields that claim our
/// authserv-id (`global.myhostname`) but are below the first `Received:`
/// field did not come from our smtpd on this pass (it prepends its own
/// above its `Received:`): a sender forged them, hoping a mail client
/// trusts our name. They are removed; ours and other hosts' are kept.
pub fn strip_forged_results(message: Vec<u8>, authserv_id: &str) -> Vec<u8> {
    let mut drop = Vec::new();
    let mut seen_received = false;
    for f in fields(&message) {
        if f.name.eq_ignore_ascii_case(b"Received") {
            seen_received = true;
        } else if seen_received && f.name.eq_ignore_ascii_case(b"Authentication-Results") {
            // authserv-id: the first token of the value (RFC 8601 2.2),
            // before ';', whitespace or a comment.
            let v = f.value.trim_ascii_start();
            let id_end = v
                .iter()
                .position(|&b| matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'('))
                .unwrap_or(v.len());
            if v[..id_end].eq_ignore_ascii_case(authserv_id.as_bytes()) {
                drop.push((f.start, f.end));
            }
        }
    }
    if drop.is_empty() {
        return message;
    }
    without(&message, &drop)
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

    #[test]
    fn forged_results_with_our_name_are_removed() {
        let m = b"Authentication-Results: mx.example.org; dmarc=fail\r\nReceived: from x\r\nAuthentication-Results: MX.example.org;\r\n\tdkim=pass header.d=bank.example\r\nAuthentication-Results: other.example; spf=pass\r\nAuthentication-Results: mx.example.org.evil; spf=pass\r\nSubject: s\r\n\r\nAuthentication-Results: mx.example.org; x\r\n".to_vec();
        let out = strip_forged_results(m, "mx.example.org");
        assert_eq!(
            out,
            b"Authentication-Results: mx.example.org; dmarc=fail\r\nReceived: from x\r\nAuthentication-Results: other.example; spf=pass\r\nAuthentication-Results: mx.example.org.evil; spf=pass\r\nSubject: s\r\n\r\nAuthentication-Results: mx.example.org; x\r\n"
        );
        // Nothing to remove: the same bytes.
        let m = b"Received: a\r\nSubject: s\r\n\r\n".to_vec();
        assert_eq!(strip_forged_results(m.clone(), "mx.example.org"), m);
        for m in [
            &b""[..],
            b"Received: a\r\nAuthentication-Results:",
            b"Received: a\r\nAuthentication-Results:mx",
        ] {
            let _ = strip_forged_results(m.to_vec(), "mx");
        }
    }
}
