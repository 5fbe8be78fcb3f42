//! The `Received:` trace header smtpd prepends (RFC 5321 section 4.4,
//! RFC 3848 protocol types ESMTP / ESMTPS / ESMTPA / ESMTPSA).

use std::net::IpAddr;

/// What the header says about one transaction.
#[derive(Debug, Clone)]
pub struct Trace<'a> {
    pub helo: &'a str,
    pub client_ip: IpAddr,
    pub myhostname: &'a str,
    pub esmtp: bool,
    /// Negotiated TLS version and cipher, when TLS was used.
    pub tls: Option<(&'a str, &'a str)>,
    /// Authenticated user, shown only when `show_auth_user`.
    pub auth_user: Option<&'a str>,
    pub show_auth_user: bool,
    /// The single recipient, when there is exactly one (privacy: never list several).
    pub for_rcpt: Option<&'a str>,
    /// RFC 5322 date-time.
    pub date: &'a str,
    /// The trace id: session id and message number in the session
    /// (`<session>.<n>`), so the header can be matched with the logs and no
    /// two messages carry the same one.
    pub session: &'a str,
}

/// Build the header, folded, CRLF-terminated.
pub fn received(t: &Trace<'_>) -> String {
    let proto = match (t.esmtp, t.tls.is_some(), t.auth_user.is_some()) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    };
    let helo: String = t
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let mut s = format!(
        "Received: from {helo} ([{}])\r\n\tby {} (postern) with {proto} id {}",
        t.client_ip, t.myhostname, t.session
    );
    if let Some((version, cipher)) = t.tls {
        s.push_str(&format!("\r\n\t(using {version} with cipher {cipher})"));
    }
    if let (Some(user), true) = (t.auth_user, t.show_auth_user) {
        s.push_str(&format!("\r\n\t(authenticated as {user})"));
    }
    if let Some(rcpt) = t.for_rcpt {
        s.push_str(&format!("\r\n\tfor <{rcpt}>"));
    }
    s.push_str(&format!("; {}\r\n", t.date));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_types_and_privacy() {
        let mut t = Trace {
            helo: "client.example",
            client_ip: "192.0.2.7".parse().unwrap(),
            myhostname: "mx.example.org",
            esmtp: true,
            tls: Some(("TLSv1.3", "TLS13_AES_128_GCM_SHA256")),
            auth_user: Some("alice@example.org"),
            show_auth_user: false,
            for_rcpt: Some("bob@example.org"),
            date: "Mon, 23 Nov 2026 01:02:03 +0000",
            session: "abc",
        };
        let h = received(&t);
        assert_eq!(
            h,
            "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (postern) with ESMTPSA id abc\r\n\t(using TLSv1.3 with cipher TLS13_AES_128_GCM_SHA256)\r\n\tfor <bob@example.org>; Mon, 23 Nov 2026 01:02:03 +0000\r\n"
        );
        assert!(!h.contains("alice"), "user hidden unless configured");
        t.show_auth_user = true;
        assert!(received(&t).contains("(authenticated as alice@example.org)"));
        t.tls = None;
        t.auth_user = None;
        t.helo = "bad\r\nInjected: yes";
        let h = received(&t);
        assert!(
            h.contains("with ESMTP id") && h.contains("from badInjected:yes"),
            "{h}"
        );
        assert_eq!(h.matches("\r\n").count(), 3);
    }
}
