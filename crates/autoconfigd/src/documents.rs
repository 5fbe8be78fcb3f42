//! The documents autoconfigd serves, as pure functions of the
//! [`Services`] and the request's address: Thunderbird autoconfig,
//! Outlook autodiscover (POX), an Apple configuration profile.
//!
//! Every value placed in a document is escaped for XML; the address and
//! domain are checked with [`parse_address`] / [`check_domain`] before they
//! get here, so a client cannot inject markup.

use crate::services::{Protocol, Security, Service, Services};
use sha2::{Digest, Sha256};

/// Longest address accepted (RFC 5321 section 4.5.3.1.3: a path is at most
/// 256 octets including the angle brackets).
pub const MAX_ADDRESS: usize = 254;
/// Longest local part (RFC 5321 section 4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;

/// Why a request's address or domain was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadInput {
    Address,
    Domain,
}

/// A valid domain name: ASCII labels of letters, digits and hyphens,
/// lower-cased.
pub fn check_domain(d: &str) -> Result<String, BadInput> {
    let d = d.trim_end_matches('.');
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(d.to_ascii_lowercase())
    } else {
        Err(BadInput::Domain)
    }
}

/// `local@domain` with a dot-atom local part (RFC 5322 atext and dots);
/// quoted local parts are refused. Returns (address, domain), the domain
/// lower-cased.
pub fn parse_address(a: &str) -> Result<(String, String), BadInput> {
    if a.len() > MAX_ADDRESS {
        return Err(BadInput::Address);
    }
    let (local, domain) = a.rsplit_once('@').ok_or(BadInput::Address)?;
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    if local.is_empty()
        || local.len() > MAX_LOCAL_PART
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local.chars().all(|c| atext(c) || c == '.')
    {
        return Err(BadInput::Address);
    }
    let domain = check_domain(domain).map_err(|_| BadInput::Address)?;
    Ok((format!("{local}@{domain}"), domain))
}

/// Escape text for XML element content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Thunderbird's autoconfig format, version 1.1
/// (<https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat>).
/// `username` is the login name; `%EMAILADDRESS%` lets Thunderbird fill
/// in the address the user typed (postern logins are full addresses).
pub fn thunderbird(s: &Services, domain: &str) -> String {
    let host = xml_escape(&s.hostname);
    let domain = xml_escape(domain);
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <clientConfig version=\"1.1\">\n\
         \x20 <emailProvider id=\"{domain}\">\n\
         \x20   <domain>{domain}</domain>\n\
         \x20   <displayName>{domain} mail</displayName>\n\
         \x20   <displayShortName>{domain}</displayShortName>\n"
    );
    let server = |x: &mut String, tag: &str, kind: &str, svc: &Service| {
        let socket = match svc.security {
            Security::Implicit => "SSL",
            Security::StartTls => "STARTTLS",
        };
        x.push_str(&format!(
            "    <{tag} type=\"{kind}\">\n\
             \x20     <hostname>{host}</hostname>\n\
             \x20     <port>{}</port>\n\
             \x20     <socketType>{socket}</socketType>\n\
             \x20     <authentication>password-cleartext</authentication>\n\
             \x20     <username>%EMAILADDRESS%</username>\n\
             \x20   </{tag}>\n",
            svc.port
        ));
    };
    for svc in s.of(Protocol::Imap) {
        server(&mut x, "incomingServer", "imap", svc);
    }
    for svc in s.of(Protocol::Pop3) {
        server(&mut x, "incomingServer", "pop3", svc);
    }
    for svc in s.of(Protocol::Submission) {
        server(&mut x, "outgoingServer", "smtp", svc);
    }
    x.push_str("  </emailProvider>\n</clientConfig>\n");
    x
}

/// Outlook's "POX" autodiscover response (the `outlook/responseschema/2006a`
/// schema, `AccountType` email, `Action` settings): one `Protocol` per
/// protocol, the preferred (implicit TLS) listener of each.
pub fn autodiscover(s: &Services, address: &str) -> String {
    let host = xml_escape(&s.hostname);
    let addr = xml_escape(address);
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n\
         \x20 <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">\n\
         \x20   <User><DisplayName>{addr}</DisplayName></User>\n\
         \x20   <Account>\n\
         \x20     <AccountType>email</AccountType>\n\
         \x20     <Action>settings</Action>\n"
    );
    for (proto, kind) in [
        (Protocol::Imap, "IMAP"),
        (Protocol::Pop3, "POP3"),
        (Protocol::Submission, "SMTP"),
    ] {
        let Some(svc) = s.of(proto).next() else {
            continue;
        };
        let encryption = match svc.security {
            Security::Implicit => "SSL",
            Security::StartTls => "TLS",
        };
        x.push_str(&format!(
            "      <Protocol>\n\
             \x20       <Type>{kind}</Type>\n\
             \x20       <Server>{host}</Server>\n\
             \x20       <Port>{}</Port>\n\
             \x20       <DomainRequired>off</DomainRequired>\n\
             \x20       <LoginName>{addr}</LoginName>\n\
             \x20       <SPA>off</SPA>\n\
             \x20       <SSL>on</SSL>\n\
             \x20       <Encryption>{encryption}</Encryption>\n\
             \x20       <AuthRequired>on</AuthRequired>\n\
             \x20     </Protocol>\n",
            svc.port
        ));
    }
    x.push_str("    </Account>\n  </Response>\n</Autodiscover>\n");
    x
}

/// An error response in the autodiscover schema (bad or missing address).
pub fn autodiscover_error(message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n\
         \x20 <Response>\n\
         \x20   <Error Id=\"0\">\n\
         \x20     <ErrorCode>600</ErrorCode>\n\
         \x20     <Message>{}</Message>\n\
         \x20   </Error>\n\
         \x20 </Response>\n\
         </Autodiscover>\n",
        xml_escape(message)
    )
}

/// The address in an autodiscover POX request: the text of its first
/// `<EMailAddress>` element (with or without a namespace prefix).
pub fn autodiscover_request_address(body: &str) -> Option<&str> {
    let start = body.find("EMailAddress>")? + "EMailAddress>".len();
    let rest = &body[start..];
    let end = rest.find('<')?;
    Some(rest[..end].trim())
}

/// A stable UUID (RFC 9562 layout, version 8: custom) derived from `seed`,
/// so the same address gets the same profile identifiers every time and
/// installing it again replaces the old profile.
fn uuid_from(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// An Apple configuration profile (`.mobileconfig`, an unsigned XML
/// property list) with one `com.apple.mail.managed` payload: IMAP (or POP3
/// when there is no IMAP listener) and submission, implicit TLS preferred.
/// `*UseSSL` is true for both implicit TLS and STARTTLS listeners (Apple
/// Mail then uses STARTTLS on a STARTTLS port). The password is not in the
/// profile; the device asks for it.
pub fn mobileconfig(s: &Services, address: &str, domain: &str) -> Option<String> {
    let incoming = s
        .of(Protocol::Imap)
        .next()
        .or_else(|| s.of(Protocol::Pop3).next())?;
    let outgoing = s.of(Protocol::Submission).next()?;
    let host = xml_escape(&s.hostname);
    let addr = xml_escape(address);
    let dom = xml_escape(domain);
    let reversed: Vec<&str> = s.hostname.rsplit('.').collect();
    let ident = xml_escape(&format!("{}.postern.mail", reversed.join(".")));
    let account_type = match incoming.protocol {
        Protocol::Pop3 => "EmailTypePOP",
        _ => "EmailTypeIMAP",
    };
    let profile_uuid = uuid_from(&format!("profile {address} {}", s.hostname));
    let payload_uuid = uuid_from(&format!("payload {address} {}", s.hostname));
    Some(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>EmailAccountDescription</key>
      <string>{addr}</string>
      <key>EmailAccountName</key>
      <string>{addr}</string>
      <key>EmailAccountType</key>
      <string>{account_type}</string>
      <key>EmailAddress</key>
      <string>{addr}</string>
      <key>IncomingMailServerAuthentication</key>
      <string>EmailAuthPassword</string>
      <key>IncomingMailServerHostName</key>
      <string>{host}</string>
      <key>IncomingMailServerPortNumber</key>
      <integer>{in_port}</integer>
      <key>IncomingMailServerUseSSL</key>
      <true/>
      <key>IncomingMailServerUsername</key>
      <string>{addr}</string>
      <key>OutgoingMailServerAuthentication</key>
      <string>EmailAuthPassword</string>
      <key>OutgoingMailServerHostName</key>
      <string>{host}</string>
      <key>OutgoingMailServerPortNumber</key>
      <integer>{out_port}</integer>
      <key>OutgoingMailServerUseSSL</key>
      <true/>
      <key>OutgoingMailServerUsername</key>
      <string>{addr}</string>
      <key>OutgoingPasswordSameAsIncomingPassword</key>
      <true/>
      <key>PayloadDescription</key>
      <string>Mail account {addr}</string>
      <key>PayloadDisplayName</key>
      <string>{addr}</string>
      <key>PayloadIdentifier</key>
      <string>{ident}.account.{payload_uuid}</string>
      <key>PayloadType</key>
      <string>com.apple.mail.managed</string>
      <key>PayloadUUID</key>
      <string>{payload_uuid}</string>
      <key>PayloadVersion</key>
      <integer>1</integer>
    </dict>
  </array>
  <key>PayloadDescription</key>
  <string>Mail settings for {addr}</string>
  <key>PayloadDisplayName</key>
  <string>{dom} mail</string>
  <key>PayloadIdentifier</key>
  <string>{ident}.{profile_uuid}</string>
  <key>PayloadRemovalDisallowed</key>
  <false/>
  <key>PayloadType</key>
  <string>Configuration</string>
  <key>PayloadUUID</key>
  <string>{profile_uuid}</string>
  <key>PayloadVersion</key>
  <integer>1</integer>
</dict>
</plist>
"#,
        in_port = incoming.port,
        out_port = outgoing.port,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Services {
        Services {
            hostname: "mx.example.org".into(),
            list: vec![
                Service {
                    protocol: Protocol::Imap,
                    security: Security::Implicit,
                    port: 993,
                },
                Service {
                    protocol: Protocol::Imap,
                    security: Security::StartTls,
                    port: 143,
                },
                Service {
                    protocol: Protocol::Submission,
                    security: Security::StartTls,
                    port: 587,
                },
            ],
        }
    }

    #[test]
    fn addresses_and_domains() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            (
                "alice@Example.ORG",
                Some(("alice@example.org", "example.org")),
            ),
            ("a.b+tag@x.test", Some(("a.b+tag@x.test", "x.test"))),
            ("alice", None),
            ("@x.test", None),
            ("a@", None),
            ("a..b@x.test", None),
            (".a@x.test", None),
            ("a<b>@x.test", None),
            ("a@x_y.test", None),
            ("a@-x.test", None),
            ("\"a b\"@x.test", None),
            ("a b@x.test", None),
        ];
        for (input, want) in cases {
            let got = parse_address(input).ok();
            let want = want.map(|(a, d)| (a.to_string(), d.to_string()));
            assert_eq!(got, want, "{input}");
        }
        let long = format!("{}@x.test", "a".repeat(65));
        assert!(parse_address(&long).is_err());
        let long = format!("a@{}.test", "b".repeat(250));
        assert!(parse_address(&long).is_err());
        assert_eq!(check_domain("Example.org.").unwrap(), "example.org");
    }

    #[test]
    fn xml_escaping() {
        assert_eq!(xml_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
    }

    #[test]
    fn thunderbird_lists_every_service_in_preference_order() {
        let x = thunderbird(&services(), "example.org");
        let imaps = x.find("<port>993</port>").unwrap();
        let imap = x.find("<port>143</port>").unwrap();
        assert!(imaps < imap, "implicit TLS first");
        assert!(x.contains("<socketType>SSL</socketType>"));
        assert!(x.contains("<socketType>STARTTLS</socketType>"));
        assert!(x.contains("<outgoingServer type=\"smtp\">"));
        assert!(
            !x.contains("type=\"pop3\""),
            "no POP3 listener, no POP3 entry"
        );
    }

    #[test]
    fn autodiscover_request_and_response() {
        let req = "<?xml version=\"1.0\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\"><Request><EMailAddress> bob@example.org </EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>";
        assert_eq!(autodiscover_request_address(req), Some("bob@example.org"));
        assert_eq!(
            autodiscover_request_address("<a:EMailAddress>x@y.z</a:EMailAddress>"),
            Some("x@y.z")
        );
        assert_eq!(autodiscover_request_address("<Request/>"), None);
        assert_eq!(autodiscover_request_address("<EMailAddress>x@y"), None);
        let x = autodiscover(&services(), "bob@example.org");
        assert_eq!(x.matches("<Protocol>").count(), 2, "IMAP and SMTP");
        assert!(x.contains("<Port>993</Port>") && !x.contains("<Port>143</Port>"));
        assert!(
            x.contains("<Encryption>TLS</Encryption>"),
            "587 is STARTTLS"
        );
        assert!(autodiscover_error("a<b").contains("a&lt;b"));
    }

    #[test]
    fn mobileconfig_is_stable_per_address() {
        let a = mobileconfig(&services(), "bob@example.org", "example.org").unwrap();
        let b = mobileconfig(&services(), "bob@example.org", "example.org").unwrap();
        let c = mobileconfig(&services(), "eve@example.org", "example.org").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.contains("<integer>993</integer>") && a.contains("<integer>587</integer>"));
        let mut none = services();
        none.list.retain(|s| s.protocol != Protocol::Submission);
        assert!(mobileconfig(&none, "bob@example.org", "example.org").is_none());
        let u = uuid_from("x");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "8");
    }
}
