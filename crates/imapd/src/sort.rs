//! RFC 5256 SORT, THREAD=ORDEREDSUBJECT and THREAD=REFERENCES: sort keys
//! from the message headers (parsed with mail-parser), base subjects,
//! thread lists.

use std::collections::HashMap;

/// One SORT criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criterion {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
}

/// Parse a SORT criteria list (the atoms between the parentheses):
/// `(REVERSE) criterion` pairs; `None` if invalid or empty.
pub fn parse_criteria(atoms: &[String]) -> Option<Vec<(Criterion, bool)>> {
    let mut out = Vec::new();
    let mut reverse = false;
    for a in atoms {
        let c = match a.to_ascii_uppercase().as_str() {
            "REVERSE" if !reverse => {
                reverse = true;
                continue;
            }
            "ARRIVAL" => Criterion::Arrival,
            "CC" => Criterion::Cc,
            "DATE" => Criterion::Date,
            "FROM" => Criterion::From,
            "SIZE" => Criterion::Size,
            "SUBJECT" => Criterion::Subject,
            "TO" => Criterion::To,
            _ => return None,
        };
        out.push((c, reverse));
        reverse = false;
    }
    (!out.is_empty() && !reverse).then_some(out)
}

/// What sorting needs to know about one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortKeys {
    pub msn: u32,
    pub uid: u32,
    pub internal_date: u64,
    pub size: u64,
    /// The Date: header in seconds (UTC), else the internal date.
    pub date: i64,
    pub subject: String,
    pub from: String,
    pub to: String,
    pub cc: String,
    /// Message-ID (for THREAD=REFERENCES).
    pub message_id: Option<String>,
    /// References, else the first In-Reply-To id.
    pub references: Vec<String>,
}

impl SortKeys {
    /// Keys of a message from its header (wire or stored form).
    pub fn from_header(msn: u32, uid: u32, internal_date: u64, size: u64, header: &[u8]) -> Self {
        let parsed = mail_parser::MessageParser::default().parse_headers(header);
        let first_mailbox = |a: Option<&mail_parser::Address<'_>>| -> String {
            a.and_then(|a| a.first())
                .and_then(|x| x.address.as_deref())
                .map(|addr| {
                    addr.rsplit_once('@')
                        .map_or(addr, |(local, _)| local)
                        .to_ascii_lowercase()
                })
                .unwrap_or_default()
        };
        let (message_id, references) = match &parsed {
            Some(p) => {
                let list = |v: &mail_parser::HeaderValue<'_>| -> Vec<String> {
                    v.as_text_list()
                        .map(|l| l.iter().map(|x| x.to_string()).collect())
                        .unwrap_or_default()
                };
                let mut refs = list(p.references());
                if refs.is_empty() {
                    refs = list(p.in_reply_to()).into_iter().take(1).collect();
                }
                (p.message_id().map(str::to_string), refs)
            }
            None => (None, Vec::new()),
        };
        let (date, subject, from, to, cc) = match &parsed {
            Some(p) => (
                p.date()
                    .map_or(internal_date as i64, mail_parser::DateTime::to_timestamp),
                base_subject(p.subject().unwrap_or("")),
                first_mailbox(p.from()),
                first_mailbox(p.to()),
                first_mailbox(p.cc()),
            ),
            None => (
                internal_date as i64,
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
        };
        SortKeys {
            msn,
            uid,
            internal_date,
            size,
            date,
            subject,
            from,
            to,
            cc,
            message_id,
            references,
        }
    }
}

/// RFC 5256 section 2.1 base subject, simplified: leading `Re:`, `Fw:`,
/// `Fwd:` (with an optional `[blob]`) and `[blob]` prefixes, trailing
/// `(fwd)` and whitespace removed repeatedly; whitespace runs collapsed;
/// compared without regard to case.
pub fn base_subject(subject: &str) -> String {
    let mut s: String = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    loop {
        let before = s.clone();
        while s.to_ascii_lowercase().ends_with("(fwd)") {
            s.truncate(s.len() - 5);
            s = s.trim_end().to_string();
        }
        let lower = s.to_ascii_lowercase();
        for prefix in ["re", "fwd", "fw"] {
            if let Some(rest) = lower.strip_prefix(prefix) {
                let rest_trim = rest.trim_start();
                let after_blob = if rest_trim.starts_with('[') {
                    rest_trim.find(']').map(|i| rest_trim[i + 1..].trim_start())
                } else {
                    Some(rest_trim)
                };
                if let Some(r) = after_blob
                    && let Some(r) = r.strip_prefix(':')
                {
                    let cut = s.len() - r.len();
                    s = s[cut..].trim_start().to_string();
                    break;
                }
            }
        }
        if s.starts_with('[')
            && let Some(i) = s.find(']')
            && !s[i + 1..].trim().is_empty()
        {
            s = s[i + 1..].trim_start().to_string();
        }
        if s == before {
            break;
        }
    }
    s.to_lowercase()
}

/// Sort messages by the criteria; ties in sequence-number order.
pub fn sort(mut msgs: Vec<SortKeys>, criteria: &[(Criterion, bool)]) -> Vec<SortKeys> {
    msgs.sort_by(|a, b| {
        for &(c, reverse) in criteria {
            let o = match c {
                Criterion::Arrival => a.internal_date.cmp(&b.internal_date),
                Criterion::Cc => a.cc.cmp(&b.cc),
                Criterion::Date => a.date.cmp(&b.date),
                Criterion::From => a.from.cmp(&b.from),
                Criterion::Size => a.size.cmp(&b.size),
                Criterion::Subject => a.subject.cmp(&b.subject),
                Criterion::To => a.to.cmp(&b.to),
            };
            let o = if reverse { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        a.msn.cmp(&b.msn)
    });
    msgs
}

/// THREAD=ORDEREDSUBJECT: threads by base subject, each sorted by date
/// (then sequence number), threads ordered by their first message's date;
/// the first message is the parent of the others. Returns the `* THREAD`
/// data, numbers chosen by `id`.
pub fn ordered_subject(msgs: Vec<SortKeys>, id: impl Fn(&SortKeys) -> u32) -> String {
    let sorted = sort(
        msgs,
        &[(Criterion::Subject, false), (Criterion::Date, false)],
    );
    let mut threads: Vec<Vec<SortKeys>> = Vec::new();
    for m in sorted {
        match threads.last_mut() {
            Some(t) if t[0].subject == m.subject => t.push(m),
            _ => threads.push(vec![m]),
        }
    }
    threads.sort_by(|a, b| (a[0].date, a[0].msn).cmp(&(b[0].date, b[0].msn)));
    let mut out = String::new();
    for t in threads {
        out.push('(');
        out.push_str(&id(&t[0]).to_string());
        if t.len() == 2 {
            out.push_str(&format!(" {}", id(&t[1])));
        } else if t.len() > 2 {
            out.push(' ');
            for c in &t[1..] {
                out.push_str(&format!("({})", id(c)));
            }
        }
        out.push(')');
    }
    out
}

/// Deepest reply chain THREAD=REFERENCES builds: a message whose parent is
/// already this deep starts a new thread instead. Bounds the recursion on
/// a mailbox crafted with very long References chains.
pub const MAX_THREAD_DEPTH: usize = 200;

/// THREAD=REFERENCES (RFC 5256 section 3, after J. Zawinski): threads from
/// Message-ID / References / In-Reply-To, empty containers pruned, siblings
/// by date, roots with the same base subject gathered under the earliest
/// one (a simplification of the RFC's step 5), threads by date.
pub fn references(msgs: Vec<SortKeys>, id: impl Fn(&SortKeys) -> u32) -> String {
    #[derive(Default, Clone)]
    struct Node {
        msg: Option<usize>,
        parent: Option<usize>,
        children: Vec<usize>,
    }
    let mut nodes: Vec<Node> = Vec::new();
    let mut table: HashMap<String, usize> = HashMap::new();
    let get = |nodes: &mut Vec<Node>, table: &mut HashMap<String, usize>, key: &str| -> usize {
        if let Some(&n) = table.get(key) {
            return n;
        }
        nodes.push(Node::default());
        table.insert(key.to_string(), nodes.len() - 1);
        nodes.len() - 1
    };
    // Is `a` an ancestor of `b` (or `b` itself)?
    let ancestor = |nodes: &[Node], a: usize, mut b: usize| -> bool {
        for _ in 0..=nodes.len() {
            if a == b {
                return true;
            }
            match nodes[b].parent {
                Some(p) => b = p,
                None => return false,
            }
        }
        true
    };
    // Depth of `n` (0 for a root), counted up to the bound.
    let depth = |nodes: &[Node], mut n: usize| -> usize {
        let mut d = 0;
        while let Some(p) = nodes[n].parent {
            d += 1;
            if d >= MAX_THREAD_DEPTH {
                break;
            }
            n = p;
        }
        d
    };
    let unlink = |nodes: &mut Vec<Node>, c: usize| {
        if let Some(p) = nodes[c].parent.take() {
            nodes[p].children.retain(|&x| x != c);
        }
    };
    for (i, m) in msgs.iter().enumerate() {
        let mut key = m
            .message_id
            .clone()
            .unwrap_or_else(|| format!("\0postern-{i}"));
        if table.get(&key).is_some_and(|&n| nodes[n].msg.is_some()) {
            key = format!("\0postern-dup-{i}");
        }
        let c = get(&mut nodes, &mut table, &key);
        nodes[c].msg = Some(i);
        let mut prev: Option<usize> = None;
        for r in &m.references {
            let rc = get(&mut nodes, &mut table, r);
            if let Some(p) = prev
                && nodes[rc].parent.is_none()
                && !ancestor(&nodes, rc, p)
                && depth(&nodes, p) + 1 + subtree_height(&nodes, rc) < MAX_THREAD_DEPTH
            {
                nodes[rc].parent = Some(p);
                nodes[p].children.push(rc);
            }
            prev = Some(rc);
        }
        unlink(&mut nodes, c);
        if let Some(p) = prev
            && !ancestor(&nodes, c, p)
            && depth(&nodes, p) + 1 + subtree_height(&nodes, c) < MAX_THREAD_DEPTH
        {
            nodes[c].parent = Some(p);
            nodes[p].children.push(c);
        }
    }
    // Height of the subtree under `n`, counted up to the bound.
    fn subtree_height(nodes: &[Node], n: usize) -> usize {
        let mut h = 0;
        let mut level = vec![n];
        while !level.is_empty() && h < MAX_THREAD_DEPTH {
            level = level
                .iter()
                .flat_map(|&x| nodes[x].children.iter().copied())
                .collect();
            if !level.is_empty() {
                h += 1;
            }
        }
        h
    }
    // The date of a container: its message's, else its first child's.
    fn date(nodes: &[Node], msgs: &[SortKeys], n: usize) -> (i64, u32) {
        match nodes[n].msg {
            Some(i) => (msgs[i].date, msgs[i].msn),
            None => nodes[n]
                .children
                .iter()
                .map(|&c| date(nodes, msgs, c))
                .min()
                .unwrap_or((i64::MAX, u32::MAX)),
        }
    }
    // Prune empty containers: drop childless ones, replace the others by
    // their children (at the root only when there is a single child).
    fn prune(nodes: &mut Vec<Node>, n: usize, at_root: bool) -> Vec<usize> {
        let kids = std::mem::take(&mut nodes[n].children);
        let mut new_kids = Vec::new();
        for k in kids {
            new_kids.extend(prune(nodes, k, false));
        }
        for &k in &new_kids {
            nodes[k].parent = Some(n);
        }
        nodes[n].children = new_kids;
        if nodes[n].msg.is_some() {
            return vec![n];
        }
        match nodes[n].children.len() {
            0 => Vec::new(),
            1 => nodes[n].children.clone(),
            _ if !at_root => nodes[n].children.clone(),
            _ => vec![n],
        }
    }
    let roots: Vec<usize> = (0..nodes.len())
        .filter(|&n| nodes[n].parent.is_none())
        .collect();
    let mut top = Vec::new();
    for r in roots {
        for t in prune(&mut nodes, r, true) {
            nodes[t].parent = None;
            top.push(t);
        }
    }
    // Sort siblings and roots by date.
    for n in 0..nodes.len() {
        let mut kids = std::mem::take(&mut nodes[n].children);
        kids.sort_by_key(|&k| date(&nodes, &msgs, k));
        nodes[n].children = kids;
    }
    top.sort_by_key(|&t| date(&nodes, &msgs, t));
    // Gather roots with the same base subject under the earliest one.
    let subject = |nodes: &[Node], n: usize| -> String {
        let first = match nodes[n].msg {
            Some(i) => Some(i),
            None => nodes[n].children.first().and_then(|&c| nodes[c].msg),
        };
        first.map(|i| msgs[i].subject.clone()).unwrap_or_default()
    };
    let mut kept: Vec<usize> = Vec::new();
    let mut by_subject: HashMap<String, usize> = HashMap::new();
    for t in top {
        let subj = subject(&nodes, t);
        match by_subject.get(&subj) {
            Some(&owner) if !subj.is_empty() => {
                if nodes[t].msg.is_none() {
                    let kids = std::mem::take(&mut nodes[t].children);
                    nodes[owner].children.extend(kids);
                } else {
                    nodes[owner].children.push(t);
                }
                let mut kids = std::mem::take(&mut nodes[owner].children);
                kids.sort_by_key(|&k| date(&nodes, &msgs, k));
                nodes[owner].children = kids;
            }
            _ => {
                by_subject.insert(subj, t);
                kept.push(t);
            }
        }
    }
    fn write(
        nodes: &[Node],
        msgs: &[SortKeys],
        id: &dyn Fn(&SortKeys) -> u32,
        n: usize,
        out: &mut String,
    ) {
        let kids = &nodes[n].children;
        if let Some(i) = nodes[n].msg {
            out.push_str(&id(&msgs[i]).to_string());
            match kids.len() {
                0 => {}
                1 => {
                    out.push(' ');
                    write(nodes, msgs, id, kids[0], out);
                }
                _ => {
                    out.push(' ');
                    for &k in kids {
                        out.push('(');
                        write(nodes, msgs, id, k, out);
                        out.push(')');
                    }
                }
            }
        } else {
            for &k in kids {
                out.push('(');
                write(nodes, msgs, id, k, out);
                out.push(')');
            }
        }
    }
    let mut out = String::new();
    for t in kept {
        out.push('(');
        write(&nodes, &msgs, &id, t, &mut out);
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        assert_eq!(
            base_subject("Re: Fwd: [list] Hello  World (fwd)"),
            "hello world"
        );
        assert_eq!(base_subject("RE[2]: hi"), "hi");
        assert_eq!(base_subject("[only]"), "[only]");
        assert_eq!(base_subject("Reply needed"), "reply needed");
        assert_eq!(base_subject(""), "");
    }

    #[test]
    fn base_subject_never_panics() {
        let parts = [
            "Re",
            "re",
            ":",
            "[",
            "]",
            "(fwd)",
            " ",
            "Fwd",
            "\u{e9}",
            "\u{1f600}",
            "Fw",
            "x",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let s: String = (0..(seed % 10))
                .map(|k| parts[((seed >> (k * 4)) % parts.len() as u64) as usize])
                .collect();
            let _ = base_subject(&s);
        }
    }

    #[test]
    fn criteria() {
        let c = |s: &str| parse_criteria(&s.split(' ').map(String::from).collect::<Vec<_>>());
        assert_eq!(
            c("REVERSE DATE SUBJECT"),
            Some(vec![(Criterion::Date, true), (Criterion::Subject, false)])
        );
        assert_eq!(c("REVERSE"), None);
        assert_eq!(c("REVERSE REVERSE DATE"), None);
        assert_eq!(c("BOGUS"), None);
    }

    fn k(msn: u32, subject: &str, date: i64, size: u64) -> SortKeys {
        SortKeys {
            msn,
            uid: msn * 10,
            size,
            date,
            subject: base_subject(subject),
            ..Default::default()
        }
    }

    #[test]
    fn reference_threads() {
        let m = |msn: u32, id: &str, refs: &[&str], subject: &str, date: i64| SortKeys {
            msn,
            uid: msn + 100,
            date,
            subject: base_subject(subject),
            message_id: Some(id.to_string()),
            references: refs.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        };
        let msgs = vec![
            m(1, "a", &[], "hello", 10),
            m(2, "b", &["a"], "Re: hello", 20),
            m(3, "c", &["a"], "Re: hello", 30),
            m(4, "d", &["x", "c"], "Re: hello", 40),
            m(5, "e", &[], "other", 5),
            m(6, "f", &["zz"], "Re: other", 50),
        ];
        assert_eq!(references(msgs.clone(), |k| k.msn), "(5 6)(1 (2)(3 4))");
        assert_eq!(references(msgs, |k| k.uid), "(105 106)(101 (102)(103 104))");
        // Loops and duplicates do not hang or lose messages.
        let odd = vec![
            m(1, "a", &["b"], "x", 1),
            m(2, "b", &["a"], "y", 2),
            m(3, "a", &[], "z", 3),
        ];
        let t = references(odd, |k| k.msn);
        for n in ["1", "2", "3"] {
            assert!(t.contains(n), "{t}");
        }
        // A 5,000-message reply chain: bounded depth, no stack overflow,
        // every message still listed.
        let chain: Vec<SortKeys> = (1..=5000u32)
            .map(|n| {
                let refs: Vec<String> = (n.saturating_sub(3).max(1)..n)
                    .map(|r| r.to_string())
                    .collect();
                let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
                m(n, &n.to_string(), &refs, "chain", i64::from(n))
            })
            .collect();
        let t = references(chain, |k| k.msn);
        let listed: std::collections::HashSet<&str> = t
            .split(|c: char| !c.is_ascii_digit())
            .filter(|x| !x.is_empty())
            .collect();
        assert_eq!(listed.len(), 5000);
        // A parent that is missing with two replies: a dummy root.
        let orphans = vec![
            m(1, "r1", &["gone"], "Re: q", 1),
            m(2, "r2", &["gone"], "Re: q2", 2),
        ];
        assert_eq!(references(orphans, |k| k.msn), "((1)(2))");
    }

    #[test]
    fn sorting_and_threads() {
        let msgs = vec![
            k(1, "b", 30, 5),
            k(2, "Re: a", 20, 5),
            k(3, "a", 10, 1),
            k(4, "re: b", 40, 9),
            k(5, "c", 5, 9),
            k(6, "Fwd: a", 25, 1),
        ];
        let by = |c: &[(Criterion, bool)]| -> Vec<u32> {
            sort(msgs.clone(), c).iter().map(|m| m.msn).collect()
        };
        assert_eq!(by(&[(Criterion::Size, false)]), [3, 6, 1, 2, 4, 5]);
        assert_eq!(
            by(&[(Criterion::Size, true), (Criterion::Date, false)]),
            [5, 4, 2, 1, 3, 6]
        );
        assert_eq!(by(&[(Criterion::Subject, false)]), [2, 3, 6, 1, 4, 5]);
        assert_eq!(
            ordered_subject(msgs.clone(), |m| m.msn),
            "(5)(3 (2)(6))(1 4)"
        );
        assert_eq!(ordered_subject(msgs, |m| m.uid), "(50)(30 (20)(60))(10 40)");
    }
}
