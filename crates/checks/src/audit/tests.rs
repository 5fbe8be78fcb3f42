//! Audit rules against real MIME messages: charsets, transfer encodings,
//! attachments, bounds, verdicts and the audit log.

use std::net::{IpAddr, Ipv4Addr};

use postern_common::checks::CheckRole;
use postern_common::checks::audit::{AuditAction, AuditConfig, AuditRule, AuditScope};

use super::*;

/// RFC 4648 base64, wrapped at 76 columns with CRLF (as MUAs send it).
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s.as_bytes()
        .chunks(76)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn gbk(s: &str) -> Vec<u8> {
    let (b, _, bad) = encoding_rs::GBK.encode(s);
    assert!(!bad);
    b.into_owned()
}

fn big5(s: &str) -> Vec<u8> {
    let (b, _, bad) = encoding_rs::BIG5.encode(s);
    assert!(!bad);
    b.into_owned()
}

/// A single-part message.
fn single(headers: &str, body: &str) -> Vec<u8> {
    format!(
        "Received: from client.example by mx.example.test\r\nFrom: a@example.org\r\nTo: b@example.test\r\nMessage-ID: <m1@example.org>\r\n{headers}\r\n{body}"
    )
    .into_bytes()
}

/// A multipart/mixed message: a text part and one attachment.
fn with_attachment(att_headers: &str, att_body: &str) -> Vec<u8> {
    format!(
        "From: a@example.org\r\nTo: b@example.test\r\nSubject: report\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
         --XX\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nsee attached\r\n\
         --XX\r\n{att_headers}\r\n{att_body}\r\n--XX--\r\n"
    )
    .into_bytes()
}

fn rule(name: &str, keywords: &[&str], regex: &[&str], action: AuditAction) -> AuditRule {
    AuditRule {
        name: name.into(),
        keywords: keywords.iter().map(|s| s.to_string()).collect(),
        regex: regex.iter().map(|s| s.to_string()).collect(),
        action,
        archive_to: if action == AuditAction::Archive {
            "audit@example.test".into()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

fn audit(rules: Vec<AuditRule>) -> Audit {
    Audit::new(&AuditConfig {
        enabled: true,
        rule: rules,
        ..Default::default()
    })
    .unwrap()
}

/// Which rules match `message` on MX, with where.
fn matched(a: &Audit, message: &[u8]) -> Vec<(String, AuditScope)> {
    a.evaluate(Role::Mx, message)
        .matches
        .iter()
        .map(|m| (a.rules[m.rule].name.clone(), m.scope))
        .collect()
}

#[test]
fn rules_match_after_mime_and_charset_decoding() {
    let secret = || rule("secret", &["机密", "confidential"], &[], AuditAction::Log);
    let exe = || AuditRule {
        scope: vec![AuditScope::AttachmentName],
        ..rule("exe", &[], &[r"\.(exe|scr)$"], AuditAction::Log)
    };
    let subject = || AuditRule {
        scope: vec![AuditScope::Headers],
        ..rule(
            "subject",
            &[],
            &[r"^Subject:.*(绝密|top secret)"],
            AuditAction::Log,
        )
    };
    let msdownload = || AuditRule {
        scope: vec![AuditScope::AttachmentType],
        ..rule(
            "msdownload",
            &["application/x-msdownload"],
            &[],
            AuditAction::Log,
        )
    };
    use AuditScope::*;
    type Case = (&'static str, Vec<u8>, Vec<(&'static str, AuditScope)>);
    let cases: Vec<Case> = vec![
        (
            "GBK base64 body",
            single(
                "Subject: hello\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=GBK\r\nContent-Transfer-Encoding: base64\r\n",
                &(b64(&gbk("这是一份机密文件，请勿外传。")) + "\r\n"),
            ),
            vec![("secret", Body)],
        ),
        (
            "GB2312 label, base64 body",
            single(
                "Content-Type: text/plain; charset=\"gb2312\"\r\nContent-Transfer-Encoding: base64\r\n",
                &(b64(&gbk("内部机密")) + "\r\n"),
            ),
            vec![("secret", Body)],
        ),
        (
            "GB18030 base64 body",
            single(
                "Content-Type: text/plain; charset=GB18030\r\nContent-Transfer-Encoding: base64\r\n",
                &(b64(&gbk("机密资料")) + "\r\n"),
            ),
            vec![("secret", Body)],
        ),
        (
            "Big5 base64 body",
            single(
                "Content-Type: text/plain; charset=big5\r\nContent-Transfer-Encoding: base64\r\n",
                &(b64(&big5("這是機密文件")) + "\r\n"),
            ),
            // Traditional 機密 is not the simplified keyword 机密: no match;
            // the Big5 case below lists it explicitly.
            vec![],
        ),
        (
            "UTF-8 quoted-printable body with a soft line break inside the word",
            single(
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n",
                "This is strictly CONFI=\r\nDENTIAL, and =E6=9C=BA=E5=AF=86.\r\n",
            ),
            vec![("secret", Body)],
        ),
        (
            "ISO-8859-1 quoted-printable body",
            single(
                "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n",
                "Vertraulich: confidential r=E9sum=E9\r\n",
            ),
            vec![("secret", Body)],
        ),
        (
            "HTML part as text",
            single(
                "Content-Type: text/html; charset=utf-8\r\n",
                "<html><body><p>con<b></b>fidential</p><p>机密</p></body></html>\r\n",
            ),
            vec![("secret", Body)],
        ),
        (
            "GBK encoded-word Subject",
            single(
                &format!("Subject: =?GBK?B?{}?=\r\n", b64(&gbk("绝密：季度报告"))),
                "nothing here\r\n",
            ),
            vec![("subject", Headers)],
        ),
        (
            "attachment name, RFC 2231 encoded",
            with_attachment(
                "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=UTF-8''%E6%8A%A5%E5%91%8A.EXE\r\nContent-Transfer-Encoding: base64\r\n",
                "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
            vec![("exe", AttachmentName)],
        ),
        (
            "attachment type",
            with_attachment(
                "Content-Type: application/x-msdownload; name=\"setup.bin\"\r\nContent-Transfer-Encoding: base64\r\n",
                "TVqQAAMAAAAEAAAA",
            ),
            vec![("msdownload", AttachmentType)],
        ),
        (
            "a GBK text attachment is body text too",
            with_attachment(
                "Content-Type: text/plain; charset=gbk; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\nContent-Transfer-Encoding: base64\r\n",
                &b64(&gbk("会议纪要（机密）")),
            ),
            vec![("secret", Body)],
        ),
        (
            "a forwarded message (message/rfc822): its header fields and GBK body",
            with_attachment(
                "Content-Type: message/rfc822\r\n",
                &format!(
                    "From: x@example.net\r\nSubject: =?GBK?B?{}?=\r\nContent-Type: text/plain; charset=GBK\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                    b64(&gbk("绝密")),
                    b64(&gbk("附件：机密名单"))
                ),
            ),
            vec![("secret", Body), ("subject", Headers)],
        ),
        (
            "no false positive: near words, other words, base64 noise",
            single(
                "Subject: confidence and 机会\r\nContent-Type: text/plain; charset=GBK\r\nContent-Transfer-Encoding: base64\r\n",
                &(b64(&gbk(
                    "机会难得，密码请勿外传；我们有信心。an executive summary.exe.txt",
                )) + "\r\n"),
            ),
            vec![],
        ),
        (
            "the raw base64 of a keyword is not text",
            single("Subject: x\r\n", &(b64(&gbk("机密")) + "\r\n")),
            vec![],
        ),
    ];
    let a = audit(vec![secret(), exe(), subject(), msdownload()]);
    for (what, msg, want) in cases {
        let want: Vec<(String, AuditScope)> =
            want.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
        assert_eq!(matched(&a, &msg), want, "{what}");
    }
    // Traditional characters in Big5 are found with a traditional keyword.
    let trad = audit(vec![rule("trad", &["機密"], &[], AuditAction::Log)]);
    let msg = single(
        "Content-Type: text/plain; charset=big5\r\nContent-Transfer-Encoding: base64\r\n",
        &(b64(&big5("這是機密文件")) + "\r\n"),
    );
    assert_eq!(
        matched(&trad, &msg),
        vec![("trad".to_string(), AuditScope::Body)]
    );
}

#[test]
fn headers_can_be_limited_by_name() {
    let a = audit(vec![AuditRule {
        scope: vec![AuditScope::Headers],
        headers: vec!["subject".into()],
        ..rule("s", &["example.org"], &[], AuditAction::Log)
    }]);
    // example.org is in From:, not in Subject: no match.
    assert!(matched(&a, &single("Subject: hi\r\n", "x\r\n")).is_empty());
    let d = a.evaluate(Role::Mx, &single("Subject: about example.org\r\n", "x\r\n"));
    assert_eq!(d.matches.len(), 1);
    assert_eq!(d.matches[0].header, "Subject");
    assert_eq!(d.verdicts, vec![]);
}

#[test]
fn case_sensitivity_is_per_rule() {
    let mut r = rule("cs", &["Secret"], &[], AuditAction::Log);
    let msg = single("Subject: x\r\n", "a SECRET plan\r\n");
    assert_eq!(matched(&audit(vec![r.clone()]), &msg).len(), 1);
    r.case_sensitive = true;
    assert!(matched(&audit(vec![r]), &msg).is_empty());
}

#[test]
fn verdicts_by_action_and_reject_wins() {
    let msg = single(
        "Subject: quarterly\r\nContent-Type: text/plain; charset=GBK\r\nContent-Transfer-Encoding: base64\r\n",
        &(b64(&gbk("机密 and payroll")) + "\r\n"),
    );
    let hold = rule("hold1", &["机密"], &[], AuditAction::Hold);
    let archive = rule("arch", &["payroll"], &[], AuditAction::Archive);
    let header = AuditRule {
        header_name: "X-Audit".into(),
        ..rule("hdr", &["quarterly"], &[], AuditAction::AddHeader)
    };
    let log = rule("logonly", &["payroll"], &[], AuditAction::Log);
    let a = audit(vec![
        hold.clone(),
        archive.clone(),
        header.clone(),
        log.clone(),
    ]);
    let d = a.evaluate(Role::Mx, &msg);
    assert_eq!(
        d.verdicts,
        vec![
            Verdict::new(
                NAME,
                Action::Hold {
                    reason: "rule hold1 matched in body".into()
                },
                "rule hold1 matched in body"
            ),
            Verdict::new(
                NAME,
                Action::Archive {
                    to: "audit@example.test".into()
                },
                "rule arch matched in body"
            ),
            Verdict::new(
                NAME,
                Action::AddHeader {
                    name: "X-Audit".into(),
                    value: "hdr".into()
                },
                "rule hdr matched in header Subject"
            ),
        ]
    );
    // Every matching rule is logged, the log-only one too.
    assert_eq!(d.matches.len(), 4);

    // A reject rule (after the others in the file) is the only verdict.
    let reject = AuditRule {
        code: 554,
        text: "Refused by the audit policy".into(),
        ..rule("no-payroll", &["payroll"], &[], AuditAction::Reject)
    };
    let a = audit(vec![hold, archive, header, log, reject]);
    let d = a.evaluate(Role::Mx, &msg);
    assert_eq!(
        d.verdicts,
        vec![Verdict::new(
            NAME,
            Action::Reject {
                code: 554,
                enhanced: (5, 7, 1),
                text: "Refused by the audit policy".into()
            },
            "rule no-payroll matched in body"
        )]
    );
    assert_eq!(d.matches.len(), 1);
    // The default text and code.
    let a = audit(vec![rule("r", &["payroll"], &[], AuditAction::Reject)]);
    match &a.evaluate(Role::Mx, &msg).verdicts[0].action {
        Action::Reject { code, text, .. } => {
            assert_eq!(
                (*code, text.as_str()),
                (550, "Message content rejected by policy")
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rules_apply_per_role() {
    let msg = single("Subject: x\r\n", "payroll\r\n");
    let a = audit(vec![
        AuditRule {
            roles: vec![CheckRole::Submission],
            ..rule("out", &["payroll"], &[], AuditAction::Hold)
        },
        AuditRule {
            roles: vec![CheckRole::Mx],
            ..rule("in", &["payroll"], &[], AuditAction::Log)
        },
    ]);
    let names = |role| {
        a.evaluate(role, &msg)
            .matches
            .iter()
            .map(|m| a.rules[m.rule].name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(Role::Mx), ["in"]);
    assert_eq!(names(Role::Submission), ["out"]);
}

#[test]
fn scan_bounds_are_honoured() {
    // The keyword in the 6th part; only 3 parts looked at.
    let mut body = String::from(
        "From: a@example.org\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n",
    );
    for i in 0..6 {
        let word = if i == 5 { "payroll" } else { "nothing" };
        body.push_str(&format!(
            "--B\r\nContent-Type: text/plain\r\n\r\npart {i} {word}\r\n"
        ));
    }
    body.push_str("--B--\r\n");
    let r = rule("p", &["payroll"], &[], AuditAction::Log);
    let cfg = |parts, bytes| AuditConfig {
        enabled: true,
        max_parts: parts,
        max_scan_bytes: bytes,
        rule: vec![r.clone()],
        ..Default::default()
    };
    let few = Audit::new(&cfg(3, 1 << 20)).unwrap();
    let d = few.evaluate(Role::Mx, body.as_bytes());
    assert!(d.matches.is_empty() && d.extracted.truncated);
    let enough = Audit::new(&cfg(100, 1 << 20)).unwrap();
    let d = enough.evaluate(Role::Mx, body.as_bytes());
    assert_eq!(d.matches.len(), 1);
    assert!(!d.extracted.truncated);
    // Byte budget: a word beyond it is not seen, and text is cut at a
    // character boundary (no panic in the middle of a CJK character).
    let long = single(
        "Content-Type: text/plain; charset=utf-8\r\n",
        &format!("{}payroll\r\n", "字".repeat(1000)),
    );
    let small = Audit::new(&cfg(100, 1001)).unwrap();
    let d = small.evaluate(Role::Mx, &long);
    assert!(d.matches.is_empty() && d.extracted.truncated);
    let total: usize = d.extracted.items.iter().map(|i| i.text.len()).sum();
    assert!(total <= 1001);
}

#[test]
fn excerpt_is_bounded_and_centred() {
    let text = format!("{}机密{}", "前".repeat(100), "后".repeat(100));
    let start = text.find("机密").unwrap();
    let e = rules::excerpt(&text, start, start + "机密".len(), 10);
    assert_eq!(e, "前前前前机密后后后后");
    assert_eq!(rules::excerpt("a\r\nSECRET\tb", 3, 9, 80), "a  SECRET b");
    // A match longer than the bound: its start.
    assert_eq!(rules::excerpt("xxabcdefyy", 2, 8, 3), "abc");
    assert_eq!(rules::excerpt("abc", 0, 3, 0), "");
}

#[test]
fn bad_configuration_names_the_key() {
    let cases: Vec<(AuditRule, &str)> = vec![
        (
            rule("bad name", &["x"], &[], AuditAction::Log),
            "rule[0].name",
        ),
        (rule("r", &[], &[], AuditAction::Log), "rule[0].keywords"),
        (
            rule("r", &[""], &[], AuditAction::Log),
            "rule[0].keywords[0]",
        ),
        (
            rule("r", &[], &["ok", "(unclosed"], AuditAction::Log),
            "rule[0].regex[1]",
        ),
        (
            AuditRule {
                archive_to: String::new(),
                ..rule("r", &["x"], &[], AuditAction::Archive)
            },
            "rule[0].archive_to",
        ),
        (
            AuditRule {
                code: 451,
                ..rule("r", &["x"], &[], AuditAction::Reject)
            },
            "rule[0].code",
        ),
        (
            AuditRule {
                text: "two\r\nlines".into(),
                ..rule("r", &["x"], &[], AuditAction::Reject)
            },
            "rule[0].text",
        ),
        (
            AuditRule {
                header_name: "X Bad".into(),
                ..rule("r", &["x"], &[], AuditAction::AddHeader)
            },
            "rule[0].header_name",
        ),
        (
            AuditRule {
                scope: vec![],
                ..rule("r", &["x"], &[], AuditAction::Log)
            },
            "rule[0].scope",
        ),
    ];
    for (r, key) in cases {
        let e = Audit::new(&AuditConfig {
            enabled: true,
            rule: vec![r],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(e.to_string().starts_with(&format!("checks.audit.{key}: ")));
    }
    let twice = Audit::new(&AuditConfig {
        enabled: true,
        rule: vec![
            rule("r", &["x"], &[], AuditAction::Log),
            rule("r", &["y"], &[], AuditAction::Log),
        ],
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(twice.key, "rule[1].name");
    let bad_log = Audit::new(&AuditConfig {
        enabled: true,
        log_path: "/nonexistent-dir/audit.log".into(),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(bad_log.key, "log_path");
}

#[test]
fn garbage_input_never_panics() {
    let a = audit(vec![rule("r", &["x"], &[r"^\w+:"], AuditAction::Log)]);
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        b"\r\n\r\n".to_vec(),
        vec![0xff; 1000],
        b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n".to_vec(),
        b"Content-Type: text/plain; charset=gbk\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!====\xff\xfe"
            .to_vec(),
        b"Subject: =?gbk?B?\xff?= =?x?Q?=ZZ?=\r\n\r\n".to_vec(),
        "Content-Type: message/rfc822\r\n\r\n".repeat(50).into_bytes(),
    ];
    for i in inputs {
        let _ = a.evaluate(Role::Mx, &i);
    }
}

fn conn(role: Role) -> Connection {
    Connection {
        session_id: "S42".into(),
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        port: 25,
        role,
        trusted: false,
        helo: "client.example".into(),
        tls: false,
        auth_user: None,
        hostname: "mx.example.test".into(),
    }
}

/// Through the pipeline as smtpd uses it: the verdict comes back and the
/// audit log gets one JSON line per effective match, with a bounded
/// excerpt.
#[tokio::test]
async fn pipeline_session_gives_verdicts_and_appends_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let mut cfg = Config::default();
    cfg.checks.audit = AuditConfig {
        enabled: true,
        log_path: log.display().to_string(),
        excerpt_length: 12,
        rule: vec![
            rule("hold-secret", &["机密"], &[], AuditAction::Hold),
            rule("arch", &["机密"], &[], AuditAction::Archive),
        ],
        ..Default::default()
    };
    let p = Pipeline::from_config(&cfg).unwrap();
    assert!(p.names().contains(&"audit"));
    let msg = single(
        "Subject: hi\r\nContent-Type: text/plain; charset=GBK\r\nContent-Transfer-Encoding: base64\r\n",
        &(b64(&gbk("第一段文字，这是一份机密文件，请勿外传。")) + "\r\n"),
    );
    let env = Envelope {
        sender: "a@example.org".into(),
        recipients: vec!["b@example.test".into()],
    };
    let mut s = p.session(conn(Role::Mx));
    let out = s.data(&env, &msg).await;
    assert_eq!(
        out.hold().as_deref(),
        Some("audit: rule hold-secret matched in body")
    );
    assert_eq!(out.archive(), vec!["audit@example.test".to_string()]);
    assert!(out.refusal().is_none());
    // A clean message: no verdict, no log line.
    let out = s.data(&env, &single("Subject: x\r\n", "fine\r\n")).await;
    assert!(out.verdicts.is_empty());

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let l = &lines[0];
    assert_eq!(l["session"], "S42");
    assert_eq!(l["message_id"], "m1@example.org");
    assert_eq!(l["client"], "192.0.2.7");
    assert_eq!(l["role"], "mx");
    assert_eq!(l["sender"], "a@example.org");
    assert_eq!(l["recipients"], serde_json::json!(["b@example.test"]));
    assert_eq!(l["rule"], "hold-secret");
    assert_eq!(l["action"], "hold");
    assert_eq!(l["scope"], "body");
    assert_eq!(l["excerpt"], "，这是一份机密文件，请勿");
    assert_eq!(l["excerpt"].as_str().unwrap().chars().count(), 12);
    assert!(l["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[1]["rule"], "arch");
    // Appended, never truncated: a second session adds to the same file.
    let mut s2 = p.session(conn(Role::Submission));
    s2.data(&env, &msg).await;
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 4);
}

#[test]
fn disabled_adds_nothing() {
    let mut p = Pipeline::default();
    build(&Config::default(), &mut p).unwrap();
    assert!(p.is_empty());
}

/// Mutated MIME messages (bytes flipped, cut, boundaries and encodings
/// broken; a fixed pseudo-random sequence, so a failure reproduces): no
/// panic, and the scan bounds hold for every one.
#[test]
fn mutated_messages_never_panic_and_stay_in_bounds() {
    let seeds = [
        with_attachment(
            "Content-Type: message/rfc822\r\n",
            &format!(
                "Subject: =?GBK?B?{}?=\r\nContent-Type: multipart/alternative; boundary=I\r\n\r\n--I\r\nContent-Type: text/plain; charset=gbk\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--I\r\nContent-Type: text/html; charset=big5\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>=A7A=A6n</p>\r\n--I--\r\n",
                b64(&gbk("绝密")),
                b64(&gbk("机密机密机密"))
            ),
        ),
        single(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n",
            "CONFI=\r\nDENTIAL =E6=9C=BA=E5=AF=86 =\r\n",
        ),
    ];
    let a = Audit::new(&AuditConfig {
        enabled: true,
        max_scan_bytes: 300,
        max_parts: 4,
        rule: vec![rule(
            "r",
            &["机密", "confidential"],
            &[r"^Subject:"],
            AuditAction::Hold,
        )],
        ..Default::default()
    })
    .unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..2000 {
        let mut m = seeds[round % seeds.len()].clone();
        for _ in 0..(1 + next() % 8) {
            let i = (next() % m.len() as u64) as usize;
            match next() % 4 {
                0 => m[i] = next() as u8,
                1 => m.truncate(i.max(1)),
                2 => m.insert(i, b"\r\n-=?\"\\\x80"[(next() % 8) as usize]),
                _ => {
                    m.remove(i);
                }
            }
            if m.is_empty() {
                m.push(b'\n');
            }
        }
        let d = a.evaluate(Role::Mx, &m);
        let scanned: usize = d.extracted.items.iter().map(|i| i.text.len()).sum();
        assert!(scanned <= 300, "round {round}: {scanned} bytes scanned");
        assert!(d.matches.iter().all(|m| m.excerpt.chars().count() <= 80));
    }
}
