"""imapd extension checks with Python's imaplib: keywords (persisted,
searched, copied), SEARCH date/size/OR/NOT keys, APPEND date-time, RENAME
(subfolders, subscriptions, INBOX), CHILDREN, modified UTF-7 names,
NAMESPACE, ID, ENABLE, UNSELECT.

argv: imaps_port ca_file user password maildir
"""
import imaplib, os, re, ssl, sys

port = int(sys.argv[1])
ca, user, password, maildir = sys.argv[2:6]
ctx = ssl.create_default_context(cafile=ca)
for cmd in ("ID", "ENABLE", "UNSELECT"):
    imaplib.Commands.setdefault(cmd, ("NONAUTH", "AUTH", "SELECTED"))


def check(name, cond, detail=""):
    if not cond:
        print("FAIL", name, detail)
        sys.exit(1)
    print("ok", name)


def connect():
    m = imaplib.IMAP4_SSL("localhost", port, ssl_context=ctx)
    m.login(user, password)
    return m


def ok(resp, what):
    typ, data = resp
    check(what, typ == "OK", data)
    return data


def flags(m, msn):
    typ, data = m.fetch(str(msn), "(FLAGS)")
    text = data[0].decode() if isinstance(data[0], bytes) else data[0][0].decode()
    return set(re.search(r"FLAGS \(([^)]*)\)", text).group(1).split())


def search(m, *criteria):
    typ, data = m.search(None, *criteria)
    check("search %s" % (criteria,), typ == "OK", data)
    return [int(x) for x in data[0].split()]


m = connect()
caps = m.capabilities
for c in ("CHILDREN", "NAMESPACE", "ID", "ENABLE", "UNSELECT", "UIDPLUS", "MOVE"):
    check("capability " + c, c in caps, caps)

# NAMESPACE, ID, ENABLE.
data = ok(m.namespace(), "namespace")
check("namespace personal", data[0] == b'(("" ".")) NIL NIL', data)
typ, data = m.xatom("ID", '("name" "imaplib" "version" "3")')
check("id", typ == "OK" and b"postern-imapd" in b" ".join(m.untagged_responses.pop("ID", [b""])), data)
if m.state == "SELECTED":
    ok(m.unselect(), "unselect before ENABLE")
typ, data = m._simple_command("ENABLE", "CONDSTORE")
check("enable ok (nothing to enable)", typ == "OK", data)

# Messages for the searches: one with an old APPEND date and Date header.
old_msg = b"Subject: old one\r\nDate: Tue, 1 Feb 1994 21:52:25 -0800\r\nFrom: old@example.test\r\n\r\nancient text\r\n"
ok(m.append("INBOX", None, '"01-Feb-1994 10:00:00 +0000"', old_msg), "append with date-time")
big = b"Subject: big one\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\n" + b"x" * 5000 + b"\r\n"
ok(m.append("INBOX", r"(\Flagged)", '"10-Mar-2020 12:00:00 +0100"', big), "append big")
small = b"Subject: small one\r\n\r\ntiny\r\n"
ok(m.append("INBOX", r"(\Seen $Label1)", None, small), "append with a keyword")

data = ok(m.select("INBOX"), "select")
check("3 messages", data[0] == b"3", data)
flag_line = m.untagged_responses.get("FLAGS", [b""])[0]
check("FLAGS lists the keyword", b"$Label1" in flag_line, flag_line)
perm = [x for x in m.untagged_responses.get("OK", []) if b"PERMANENTFLAGS" in x]
check("PERMANENTFLAGS allows new keywords", perm and b"\\*" in perm[0], perm)

typ, data = m.fetch("1", "(INTERNALDATE)")
check("internal date from APPEND", b'"01-Feb-1994 10:00:00 +0000"' in data[0], data)
typ, data = m.fetch("2", "(INTERNALDATE)")
check("internal date in UTC", b'"10-Mar-2020 11:00:00 +0000"' in data[0], data)

r = search(m, "BEFORE", "2-Feb-1994")
check("BEFORE", r == [1], r)
r = search(m, "ON", "1-Feb-1994")
check("ON", r == [1], r)
r = search(m, "SINCE", "1-Jan-2000")
check("SINCE", r == [2, 3], r)
r = search(m, "SENTBEFORE", "2-Feb-1994")
check("SENTBEFORE", r == [1], r)
r = search(m, "SENTON", "7-Feb-1994")
check("SENTON (own time zone)", r == [2], r)
r = search(m, "SENTSINCE", "2-Feb-1994")
check("SENTSINCE", r == [2], r)
r = search(m, "LARGER", "4000")
check("LARGER", r == [2], r)
r = search(m, "SMALLER", "50")
check("SMALLER", r == [3], r)
r = search(m, "OR", "FLAGGED", "SEEN")
check("OR", r == [2, 3], r)
r = search(m, "NOT", "OR", "FLAGGED", "SEEN")
check("NOT", r == [1], r)
r = search(m, "(SINCE 1-Jan-2000 UNSEEN)")
check("parenthesised", r == [2], r)
r = search(m, "KEYWORD", "$label1")
check("KEYWORD", r == [3], r)
r = search(m, "UNKEYWORD", "$Label1")
check("UNKEYWORD", r == [1, 2], r)
r = search(m, "CHARSET", "UTF-8", "SUBJECT", "old")
check("CHARSET UTF-8", r == [1], r)
typ, data = m.search("KOI8-R", "ALL")
check("unknown charset refused", typ == "NO" and b"BADCHARSET" in data[0], data)
typ, data = m.uid("SEARCH", "OR", "KEYWORD", "$Label1", "ON", "1-Feb-1994")
uids = [int(x) for x in data[0].split()]
check("UID SEARCH", typ == "OK" and len(uids) == 2, data)

# Keywords: set, persist, clear, copy.
ok(m.store("1", "+FLAGS", "($Junk Work)"), "store keywords")
check("fetch keywords", flags(m, 1) == {"$Junk", "Work"}, flags(m, 1))
m.logout()
m = connect()
ok(m.select("INBOX"), "reselect")
check("keywords persist across sessions", flags(m, 1) == {"$Junk", "Work"}, flags(m, 1))
with open(os.path.join(maildir, "dovecot-keywords")) as f:
    kw = f.read()
check("dovecot-keywords on disk", "$Junk" in kw and "$Label1" in kw, kw)
ok(m.store("1", "-FLAGS", "(Work)"), "remove keyword")
check("keyword removed", flags(m, 1) == {"$Junk"}, flags(m, 1))
ok(m.store("1", "-FLAGS", "(NeverSeen)"), "remove unknown keyword is a no-op")
try:
    m.store("1", "+FLAGS", "(bad(kw)")
    check("invalid keyword refused", False)
except imaplib.IMAP4.error as e:
    check("invalid keyword refused", "BAD" in str(e), str(e))
data = ok(m.copy("1", "Archive"), "copy with keywords")
ok(m.select("Archive"), "select Archive")
check("keyword kept by COPY", flags(m, 1) == {"$Junk"}, flags(m, 1))
typ, data = m.fetch("1", "(INTERNALDATE)")
check("COPY keeps the internal date", b"01-Feb-1994" in data[0], data)

# UNSELECT: no expunge, no selection afterwards.
ok(m.store("1", "+FLAGS", r"(\Deleted)"), "mark deleted")
ok(m.unselect(), "unselect")
typ, data = m.status("Archive", "(MESSAGES)")
check("UNSELECT does not expunge", b"MESSAGES 1" in data[0], data)
m.state = "SELECTED"  # make imaplib send it; the server must refuse
try:
    m.fetch("1", "(FLAGS)")
    check("fetch after unselect refused", False)
except imaplib.IMAP4.error:
    print("ok fetch after unselect refused")
m.state = "AUTH"

# RENAME with subfolders and subscriptions; CHILDREN.
ok(m.create("Work"), "create Work")
ok(m.create("Work.Sub"), "create Work.Sub")
ok(m.subscribe("Work.Sub"), "subscribe Work.Sub")
ok(m.append("Work.Sub", None, None, b"Subject: deep\r\n\r\nin a subfolder\r\n"), "append to Work.Sub")
typ, data = m.list(pattern="Work*")
text = b"\n".join(data).decode()
check("HasChildren", re.search(r'\\HasChildren\) "\." "Work"', text) is not None, text)
check("HasNoChildren", re.search(r'\\HasNoChildren\) "\." "Work.Sub"', text) is not None, text)
ok(m.rename("Work", "Job"), "rename Work Job")
typ, data = m.list()
text = b"\n".join(data).decode()
check("renamed in LIST", '"Job"' in text and '"Job.Sub"' in text and '"Work' not in text, text)
typ, data = m.lsub()
text = b"\n".join(data).decode()
check("subscription follows", '"Job.Sub"' in text and "Work" not in text, text)
ok(m.select("Job.Sub"), "select renamed child")
typ, data = m.fetch("1", "(BODY.PEEK[TEXT])")
check("message moved along", data[0][1] == b"in a subfolder\r\n", data)
typ, data = m.rename("Job", "Sent")
check("rename onto an existing folder", typ == "NO" and b"ALREADYEXISTS" in data[0], data)
typ, data = m.rename("Nope", "Other")
check("rename of a missing folder", typ == "NO" and b"NONEXISTENT" in data[0], data)
ok(m.rename("INBOX", "\"Old Inbox\""), "rename INBOX")
typ, data = m.status("INBOX", "(MESSAGES)")
check("INBOX empty after rename", b"MESSAGES 0" in data[0], data)
typ, data = m.status('"Old Inbox"', "(MESSAGES)")
check("INBOX messages moved", b"MESSAGES 3" in data[0], data)
ok(m.select('"Old Inbox"'), "select Old Inbox")
check("keywords kept by INBOX rename", {"$Junk"} <= flags(m, 1), flags(m, 1))

# Modified UTF-7 names, kept as such on disk.
ok(m.create("&ZeVnLIqe-"), "create mUTF-7 name")
typ, data = m.list(pattern="&ZeVnLIqe-")
check("mUTF-7 in LIST", b'"&ZeVnLIqe-"' in data[0], data)
check("mUTF-7 on disk", os.path.isdir(os.path.join(maildir, ".&ZeVnLIqe-", "cur")))
typ, data = m.create("&Jjo!-")
check("invalid mUTF-7 refused", typ == "NO", data)
# LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE (RFC 6154).
for c in ("LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE"):
    check("capability " + c, c in m.capabilities, m.capabilities)
typ, data = m._simple_command("LIST", "(SPECIAL-USE)", '""', "*")
lines = [x.decode() for x in m.untagged_responses.pop("LIST", [])]
check("LIST (SPECIAL-USE) selects special-use folders only",
      typ == "OK" and len(lines) == 5 and all(re.search(r"\\(Sent|Drafts|Trash|Junk|Archive)", l) for l in lines), lines)
typ, data = m._simple_command("LIST", "(SUBSCRIBED)", '""', "(Job* INBOX)")
lines = [x.decode() for x in m.untagged_responses.pop("LIST", [])]
check("LIST (SUBSCRIBED) with patterns",
      typ == "OK" and any('"Job.Sub"' in l and "\\Subscribed" in l for l in lines)
      and not any('"Job"' in l for l in lines), lines)
typ, data = m._simple_command("LIST", '""', "Job*", "RETURN", "(CHILDREN SUBSCRIBED STATUS (MESSAGES UNSEEN))")
lines = [x.decode() for x in m.untagged_responses.pop("LIST", [])]
status = [x.decode() for x in m.untagged_responses.pop("STATUS", [])]
check("LIST RETURN (STATUS)", typ == "OK" and len(lines) == 2 and any(
    re.search(r'"Job.Sub" \(MESSAGES 1 UNSEEN 1\)', x) for x in status), (lines, status))
check("LIST RETURN (SUBSCRIBED)", any('"Job.Sub"' in l and "\\Subscribed" in l for l in lines), lines)

# QUOTA (RFC 9208) from the directory's quota (1M, set by the test).
for c in ("QUOTA", "QUOTA=RES-STORAGE"):
    check("capability " + c, c in m.capabilities, m.capabilities)
used = 0
for dirpath, _, files in os.walk(maildir):
    if os.path.basename(dirpath) in ("cur", "new"):
        for f in files:
            mo = re.search(r",S=(\d+)", f)
            used += int(mo.group(1)) if mo else os.path.getsize(os.path.join(dirpath, f))
typ, data = m.getquotaroot("INBOX")
check("GETQUOTAROOT", typ == "OK" and data[0] in ([b'INBOX ""'], [b'"INBOX" ""']) and data[1] == [b'"" (STORAGE %d 1024)' % ((used + 1023) // 1024)], data)
typ, data = m.getquota('""')
check("GETQUOTA", typ == "OK" and data == [b'"" (STORAGE %d 1024)' % ((used + 1023) // 1024)], data)
typ, data = m.setquota('""', "(STORAGE 5)")
check("SETQUOTA refused", typ == "NO", data)

# CONDSTORE (RFC 7162): MODSEQ, CHANGEDSINCE, UNCHANGEDSINCE, SEARCH MODSEQ,
# HIGHESTMODSEQ; STATUS=SIZE.
check("capability CONDSTORE", "CONDSTORE" in m.capabilities, m.capabilities)
ok(m.create("Cs"), "create Cs")
a = b"Subject: cs a\r\n\r\nfirst\r\n"
b = b"Subject: cs b\r\n\r\nsecond one\r\n"
ok(m.append("Cs", None, None, a), "append a")
ok(m.append("Cs", None, None, b), "append b")
if m.state == "SELECTED":
    ok(m.unselect(), "unselect before ENABLE")
typ, data = m._simple_command("ENABLE", "CONDSTORE")
enabled = m.untagged_responses.pop("ENABLED", [b""])
check("ENABLE CONDSTORE", typ == "OK" and b"CONDSTORE" in enabled[0], enabled)
ok(m.select("Cs"), "select Cs")
h0 = int(m.untagged_responses.get("HIGHESTMODSEQ", [b"0"])[0])
check("HIGHESTMODSEQ on SELECT", h0 > 0, h0)


def modseqs(resp):
    return [int(x) for x in re.findall(rb"MODSEQ \((\d+)\)", b" ".join(
        x if isinstance(x, bytes) else x[0] for x in resp))]


typ, data = m.fetch("1:2", "(MODSEQ)")
ms = modseqs(data)
check("FETCH MODSEQ", typ == "OK" and len(ms) == 2 and max(ms) <= h0, (data, h0))
typ, data = m.store("1", "+FLAGS", r"(\Flagged)")
n1 = modseqs(data)
check("STORE answers with a higher MODSEQ", len(n1) == 1 and n1[0] > h0, data)
typ, data = m.fetch("1:*", "(FLAGS) (CHANGEDSINCE %d)" % h0)
check("CHANGEDSINCE returns only the changed message",
      typ == "OK" and len(data) == 1 and data[0].startswith(b"1 (") and b"MODSEQ" in data[0], data)
typ, data = m.store("1", "(UNCHANGEDSINCE %d) +FLAGS" % h0, r"(\Seen)")
modified = m.untagged_responses.pop("MODIFIED", [b""])
check("UNCHANGEDSINCE refuses a changed message", typ == "OK" and modified == [b"1"], (typ, modified))
check("conditional STORE left the flag alone", "\\Seen" not in flags(m, 1), flags(m, 1))
typ, data = m.store("2", "(UNCHANGEDSINCE %d) +FLAGS" % n1[0], r"(\Seen)")
check("UNCHANGEDSINCE passes an unchanged message", "\\Seen" in flags(m, 2), (data, flags(m, 2)))
typ, data = m.search(None, "MODSEQ", str(n1[0]))
check("SEARCH MODSEQ", typ == "OK" and data[0].split()[0] in (b"1", b"2") and b"(MODSEQ" in data[0], data)
# ESEARCH (RFC 4731).
check("capability ESEARCH", "ESEARCH" in m.capabilities, m.capabilities)
typ, data = m._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT ALL)", "ALL")
es = m.untagged_responses.pop("ESEARCH", [b""])[0]
check("ESEARCH MIN MAX COUNT ALL", typ == "OK" and es.endswith(b"MIN 1 MAX 2 COUNT 2 ALL 1:2"), es)
typ, data = m._simple_command("UID", "SEARCH", "RETURN", "(COUNT MIN)", "FLAGGED")
es = m.untagged_responses.pop("ESEARCH", [b""])[0]
check("UID ESEARCH", typ == "OK" and b" UID COUNT 1 MIN " in es, es)
typ, data = m._simple_command("SEARCH", "RETURN", "()", "KEYWORD", "nothing")
es = m.untagged_responses.pop("ESEARCH", [b""])[0]
check("ESEARCH with no match", typ == "OK" and b"ALL" not in es and b"TAG" in es, es)
typ, data = m.status("Cs", "(HIGHESTMODSEQ SIZE MESSAGES)")
st = data[0].decode()
size = int(re.search(r"SIZE (\d+)", st).group(1))
hm = int(re.search(r"HIGHESTMODSEQ (\d+)", st).group(1))
check("STATUS SIZE", size == len(a) + len(b), st)
check("STATUS HIGHESTMODSEQ", hm >= n1[0], st)
# SORT and THREAD=ORDEREDSUBJECT (RFC 5256).
for c in ("SORT", "THREAD=ORDEREDSUBJECT"):
    check("capability " + c, c in m.capabilities, m.capabilities)
ok(m.create("St"), "create St")
for subj, date, frm, body in [
    ("Banana", "Wed, 3 Jan 2024 10:00:00 +0000", "zed@example.test", "x" * 10),
    ("Re: apple", "Tue, 2 Jan 2024 10:00:00 +0000", "amy@example.test", "x" * 300),
    ("Apple", "Mon, 1 Jan 2024 10:00:00 +0000", "bob@example.test", "x" * 100),
    ("Fwd: banana", "Thu, 4 Jan 2024 10:00:00 +0000", "cat@example.test", "x"),
]:
    msg = ("Subject: %s\r\nDate: %s\r\nFrom: %s\r\n\r\n%s\r\n" % (subj, date, frm, body)).encode()
    ok(m.append("St", None, None, msg), "append " + subj)
ok(m.select("St"), "select St")
typ, data = m.sort("(DATE)", "UTF-8", "ALL")
check("SORT DATE", typ == "OK" and data[0] == b"3 2 1 4", data)
typ, data = m.sort("(REVERSE SIZE)", "UTF-8", "ALL")
check("SORT REVERSE SIZE", data[0] == b"2 3 1 4", data)
typ, data = m.sort("(SUBJECT DATE)", "UTF-8", "ALL")
check("SORT SUBJECT (base subject)", data[0] == b"3 2 1 4", data)
typ, data = m.sort("(FROM)", "US-ASCII", "NOT", "SUBJECT", "apple")
check("SORT FROM with search keys", data[0] == b"4 1", data)
typ, data = m.uid("SORT", "(ARRIVAL)", "UTF-8", "ALL")
check("UID SORT", typ == "OK" and len(data[0].split()) == 4, data)
typ, data = m.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
check("THREAD ORDEREDSUBJECT", typ == "OK" and data[0] == b"(3 2)(1 4)", data)
typ, data = m.thread("REFERENCES", "UTF-8", "ALL")
check("THREAD REFERENCES groups by base subject", typ == "OK" and data[0] == b"(3 2)(1 4)", data)
ok(m.create("Th"), "create Th")
for n, refs, day in [(1, "", 1), (2, "<t1@x>", 2), (3, "<t1@x> <t2@x>", 3), (4, "<t1@x>", 4)]:
    hdr = "Subject: %stopic\r\nMessage-ID: <t%d@x>\r\nDate: %d Jan 2024 10:00:00 +0000\r\n" % ("Re: " if refs else "", n, day)
    if refs:
        hdr += "References: %s\r\n" % refs
    ok(m.append("Th", None, None, (hdr + "\r\nbody\r\n").encode()), "append t%d" % n)
ok(m.select("Th"), "select Th")
typ, data = m.thread("REFERENCES", "UTF-8", "ALL")
check("THREAD REFERENCES", typ == "OK" and data[0] == b"(1 (2 3)(4))", data)
typ, data = m.uid("THREAD", "REFERENCES", "UTF-8", "NOT", "HEADER", "Message-ID", "t2")
check("UID THREAD REFERENCES with a missing parent", typ == "OK" and data[0].count(b"(") == 3, data)
ok(m.select("St"), "back to St")
# SEARCHRES (RFC 5182): RETURN (SAVE) and $.
check("capability SEARCHRES", "SEARCHRES" in m.capabilities, m.capabilities)
m.untagged_responses.pop("ESEARCH", None)
typ, data = m._simple_command("SEARCH", "RETURN", "(SAVE)", "SUBJECT", "apple")
check("SAVE alone answers no ESEARCH", typ == "OK" and "ESEARCH" not in m.untagged_responses, m.untagged_responses)
typ, data = m.fetch("$", "(UID)")
check("FETCH $", typ == "OK" and sorted(d.split()[0] for d in data) == [b"2", b"3"], data)
r = search(m, "$", "FROM", "amy")
check("SEARCH $ and more keys", r == [2], r)
ok(m.store("$", "+FLAGS", r"(\Flagged)"), "STORE $")
r = search(m, "FLAGGED")
check("STORE $ flagged the saved messages", r == [2, 3], r)
typ, data = m._simple_command("SEARCH", "RETURN", "(SAVE COUNT)", "FROM", "zed")
es = m.untagged_responses.pop("ESEARCH", [b""])[0]
check("SAVE with COUNT answers ESEARCH", es.endswith(b"COUNT 1"), es)
typ, data = m.uid("SEARCH", "UID", "$")
check("UID SEARCH UID $", typ == "OK" and len(data[0].split()) == 1, data)
ok(m.select("Cs"), "back to Cs")
m.logout()
m = connect()
ok(m.select("Cs"), "reselect Cs")
typ, data = m.fetch("1", "(MODSEQ)")
check("MODSEQ persists", modseqs(data) == n1, (data, n1))
# QRESYNC (RFC 7162): VANISHED instead of EXPUNGE, SELECT (QRESYNC ...),
# UID FETCH (CHANGEDSINCE n VANISHED).
check("capability QRESYNC", "QRESYNC" in m.capabilities, m.capabilities)
ok(m.unselect(), "unselect before ENABLE QRESYNC")
typ, data = m._simple_command("ENABLE", "QRESYNC")
enabled = m.untagged_responses.pop("ENABLED", [b""])
check("ENABLE QRESYNC", typ == "OK" and b"QRESYNC" in enabled[0], enabled)
ok(m.select("Cs"), "select Cs with QRESYNC on")
uidv = int(m.untagged_responses["UIDVALIDITY"][0])
hm = int(m.untagged_responses["HIGHESTMODSEQ"][0])
typ, data = m.uid("SEARCH", "ALL")
check("two messages in Cs", data[0] == b"1 2", data)
ok(m.store("1", "+FLAGS.SILENT", r"(\Deleted)"), "delete 1")
m.untagged_responses.pop("VANISHED", None)
typ, data = m.expunge()
vanished = m.untagged_responses.pop("VANISHED", [])
check("EXPUNGE reported as VANISHED", typ == "OK" and vanished == [b"1"] and data == [None], (vanished, data))
ok(m.store("1", "+FLAGS", r"(\Answered)"), "change the remaining message")
ok(m.unselect(), "unselect")
m.untagged_responses.clear()
typ, data = m._simple_command("SELECT", "Cs", "(QRESYNC (%d %d 1:2))" % (uidv, hm))
vanished = m.untagged_responses.pop("VANISHED", [])
fetches = m.untagged_responses.pop("FETCH", [])
check("SELECT QRESYNC: VANISHED (EARLIER)", typ == "OK" and vanished == [b"(EARLIER) 1"], vanished)
check("SELECT QRESYNC: changed flags", len(fetches) == 1 and b"UID 2" in fetches[0] and b"\\Answered" in fetches[0], fetches)
m.state = "SELECTED"
typ, data = m.uid("FETCH", "1:2", "(FLAGS) (CHANGEDSINCE %d VANISHED)" % hm)
vanished = m.untagged_responses.pop("VANISHED", [])
check("UID FETCH VANISHED", typ == "OK" and vanished == [b"(EARLIER) 1"] and len(data) == 1 and b"UID 2" in data[0], (vanished, data))
typ, data = m._simple_command("SELECT", "Cs", "(QRESYNC (%d %d))" % (uidv + 1, hm))
check("QRESYNC with a stale UIDVALIDITY: plain SELECT", typ == "OK" and "VANISHED" not in m.untagged_responses, m.untagged_responses)
m.logout()

# BINARY (RFC 3516): decoded parts, literal8 for NULs, BINARY.SIZE.
m = connect()
check("capability BINARY", "BINARY" in m.capabilities, m.capabilities)
mime = (b"Subject: bin\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=\"x.bin\"\r\n\r\n"
        b"AAECA/79\r\n--B\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"caf=C3=A9 =\r\nau lait\r\n--B--\r\n")
ok(m.append("Cs", None, None, mime), "append a MIME message")
ok(m.select("Cs"), "select Cs for BINARY")
typ, data = m.fetch("*", "(BINARY.PEEK[1] BINARY.SIZE[2] BINARY.PEEK[2])")
check("BINARY[1] base64 decoded (literal8)", typ == "OK" and data[0][1] == b"\x00\x01\x02\x03\xfe\xfd" and b"~{6}" in data[0][0], data)
check("BINARY[2] quoted-printable decoded", data[1][1] == "café au lait".encode(), data)
flat = b" ".join(x if isinstance(x, bytes) else x[0] for x in data)
check("BINARY.SIZE", b"BINARY.SIZE[2] 13" in flat, flat)
typ, data = m.fetch("*", "(FLAGS)")
check("BINARY.PEEK leaves \\Seen alone", b"\\Seen" not in data[0], data)
typ, data = m.fetch("*", "(BODYSTRUCTURE BODY)")
flat = data[0] if isinstance(data[0], bytes) else data[0][0]
bs, _, body = flat.partition(b" BODY (")
check("BODYSTRUCTURE extension data: disposition, boundary",
      b'("ATTACHMENT" ("FILENAME" "x.bin"))' in bs and b'"MIXED" ("BOUNDARY" "B") NIL NIL NIL)' in bs, flat)
check("BODY without extension data", b"ATTACHMENT" not in body and b"BOUNDARY" not in body, flat)
m.logout()

# SEARCH decodes encoded words and encoded bodies (CHARSET UTF-8 needles).
m = connect()
ok(m.create("Enc"), "create Enc")
enc = (b"Subject: =?UTF-8?B?Q2Fmw6kgY3LDqG1l?=\r\nFrom: =?ISO-8859-1?Q?J=F6rg?= <j@x.test>\r\n"
       b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
       b"w6ljbGFpciBhdSBjaG9jb2xhdA==\r\n")
ok(m.append("Enc", None, None, enc), "append encoded")
ok(m.append("Enc", None, None, b"Subject: plain\r\n\r\nnothing here\r\n"), "append plain")
ok(m.select("Enc"), "select Enc")
for key, needle in [("SUBJECT", "CAFÉ"), ("FROM", "jörg"), ("BODY", "éclair"), ("TEXT", "crème")]:
    m.literal = needle.encode()
    typ, data = m.search("UTF-8", key)
    check("decoded SEARCH %s %s" % (key, needle), typ == "OK" and data[0] == b"1", data)
m.logout()

# MOVE renames the file into the destination (atomic per message): same
# base name, flags and keywords carried over, COPYUID given.
m = connect()
ok(m.create("Mv"), "create Mv")
ok(m.select("St"), "select St for MOVE")
ok(m.store("1", "+FLAGS", r"(\Flagged $Moved)"), "flag before move")


def bases(folder):
    d = os.path.join(maildir, "." + folder, "cur")
    return {f.split(":2,")[0]: f.split(":2,")[1] if ":2," in f else "" for f in os.listdir(d)}


before = bases("St")
typ, data = m.uid("MOVE", "1", "Mv")
copyuid = [x for x in m.untagged_responses.pop("OK", []) if b"COPYUID" in x] + \
    m.untagged_responses.pop("COPYUID", [])
check("UID MOVE", typ == "OK" and copyuid, (data, copyuid))
after_src, dest = bases("St"), bases("Mv")
gone = set(before) - set(after_src)
check("moved by rename: the same base name in Mv", len(gone) == 1 and gone <= set(dest), (before, after_src, dest))
ok(m.select("Mv"), "select Mv")
check("flags and keyword moved along", flags(m, 1) >= {"\\Flagged", "$Moved"}, flags(m, 1))
m.logout()

# Another session's flag change reaches this one (NOOP and IDLE), also
# after a quiet spell in which IDLE polling skips the directory scan.
import time
a = connect()
b = connect()
ok(a.select("Cs"), "A selects Cs")
ok(b.select("Cs"), "B selects Cs")
ok(b.store("1", "+FLAGS", r"(\Draft)"), "B sets \\Draft")
typ, data = a.noop()
fl = [x for x in a.untagged_responses.pop("FETCH", [])]
check("NOOP reports B's flag change", any(b"\\Draft" in x for x in fl), fl)
tag = a._new_tag()
a.send(tag + b" IDLE\r\n")
check("idle continuation", a.readline().startswith(b"+"))
time.sleep(3)  # settle: the polls now skip the scan while nothing changes
ok(b.store("1", "-FLAGS", r"(\Draft)"), "B clears \\Draft")
ok(b.append("Cs", None, None, b"Subject: late arrival\r\n\r\nx\r\n"), "B appends")
start = time.time()
seen = b""
a.sock.settimeout(5)
while not (b"EXISTS" in seen and b"FETCH" in seen) and time.time() - start < 5:
    seen += a.readline()
check("IDLE sees flags and a new message within 1.5 s", b"EXISTS" in seen and b"FETCH" in seen and time.time() - start < 1.5, (seen, time.time() - start))
a.send(b"DONE\r\n")
while True:
    l = a.readline()
    if l.startswith(tag):
        break
check("IDLE done", l.startswith(tag + b" OK"), l)
a.logout()
b.logout()

# COMPRESS=DEFLATE (RFC 4978), by hand over TLS: imaplib has no COMPRESS.
import socket, zlib
raw = ctx.wrap_socket(socket.create_connection(("localhost", port), timeout=20), server_hostname="localhost")
buf = b""


def line_plain():
    global buf
    while b"\r\n" not in buf:
        buf += raw.recv(4096)
    l, _, buf = buf.partition(b"\r\n")
    return l


line_plain()
raw.sendall(b'a LOGIN "%s" "%s"\r\n' % (user.encode(), password.encode()))
while not line_plain().startswith(b"a "):
    pass
raw.sendall(b"b COMPRESS DEFLATE\r\n")
resp = line_plain()
check("COMPRESS DEFLATE", resp.startswith(b"b OK"), resp)
zo = zlib.compressobj(6, zlib.DEFLATED, -15)
zi = zlib.decompressobj(-15)
plain = zi.decompress(buf)
buf = b""


def send_z(data):
    raw.sendall(zo.compress(data) + zo.flush(zlib.Z_SYNC_FLUSH))


def until_tag(tag):
    global plain
    while (b"\r\n" + tag + b" ") not in (b"\r\n" + plain):
        chunk = raw.recv(65536)
        check("connection open while compressed", chunk != b"", plain)
        plain += zi.decompress(chunk)
    out, plain = plain, b""
    return out


big = b"Subject: deflated\r\n\r\n" + b"".join(b"line %d of a compressible message\r\n" % i for i in range(3000))
send_z(b"c APPEND Cs {%d+}\r\n" % len(big) + big + b"\r\n")
r = until_tag(b"c")
check("APPEND through COMPRESS", b"c OK" in r, r[-200:])
send_z(b"d SELECT Cs\r\n")
r = until_tag(b"d")
n = int(re.search(rb"\* (\d+) EXISTS", r).group(1))
send_z(b"e FETCH %d BODY.PEEK[]\r\n" % n)
r = until_tag(b"e")
check("FETCH through COMPRESS byte-exact", big in r and b"{%d}" % len(big) in r, r[:200])
send_z(b"f COMPRESS DEFLATE\r\n")
r = until_tag(b"f")
check("second COMPRESS refused", b"f NO [COMPRESSIONACTIVE]" in r, r)
send_z(b"g LOGOUT\r\n")
r = until_tag(b"g")
check("LOGOUT through COMPRESS", b"* BYE" in r and b"g OK" in r, r)
raw.close()
print("all ok")
