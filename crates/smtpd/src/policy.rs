//! Relay and recipient policy, as pure functions over what authd answered.

use std::net::IpAddr;

use ipnet::IpNet;
use postern_ipc::auth::v1::resolve_recipient_response::Status as Resolved;

/// An SMTP reply decided by policy: code, enhanced code, text.
pub type Verdict = (u16, (u8, u16, u16), &'static str);

/// Whether `ip` is inside `mynetworks` (IPv4-mapped IPv6 addresses count as IPv4).
pub fn in_mynetworks(ip: IpAddr, nets: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

/// The RCPT verdict: `None` = accept.
///
/// * ours and deliverable → accept;
/// * our domain but no such recipient → `550 5.1.1` (RFC 3463 bad mailbox);
/// * disabled → `550 5.2.1`;
/// * not ours → accepted only for authenticated clients or `mynetworks`
///   (relaying), else `554 5.7.1` (no open relay);
/// * lookup failed → `451 4.3.0`: never accept what we cannot route.
pub fn rcpt_verdict(resolved: Option<Resolved>, may_relay: bool) -> Option<Verdict> {
    match resolved {
        Some(Resolved::Local) => None,
        Some(Resolved::Unknown) => {
            Some((550, (5, 1, 1), "Recipient address rejected: user unknown"))
        }
        Some(Resolved::Disabled) => Some((550, (5, 2, 1), "Recipient mailbox disabled")),
        Some(Resolved::NotOurs) if may_relay => None,
        Some(Resolved::NotOurs) => Some((554, (5, 7, 1), "Relay access denied")),
        Some(Resolved::TempFail) | Some(Resolved::Unspecified) | None => {
            Some((451, (4, 3, 0), "Temporary lookup failure, try again later"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_table() {
        let nets: Vec<IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert!(in_mynetworks("127.0.0.1".parse().unwrap(), &nets));
        assert!(in_mynetworks("::ffff:127.0.0.2".parse().unwrap(), &nets));
        assert!(in_mynetworks("2001:db8::1".parse().unwrap(), &nets));
        assert!(!in_mynetworks("192.0.2.1".parse().unwrap(), &nets));

        let cases = [
            (Some(Resolved::Local), false, None),
            (Some(Resolved::Unknown), true, Some(550)),
            (Some(Resolved::Disabled), true, Some(550)),
            (Some(Resolved::NotOurs), true, None),
            (Some(Resolved::NotOurs), false, Some(554)),
            (Some(Resolved::TempFail), true, Some(451)),
            (None, true, Some(451)),
        ];
        for (resolved, relay, code) in cases {
            assert_eq!(
                rcpt_verdict(resolved, relay).map(|v| v.0),
                code,
                "{resolved:?} relay={relay}"
            );
        }
    }
}
