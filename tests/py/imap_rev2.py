"""IMAP4rev2 (RFC 9051) with Python's imaplib, raw commands through
_simple_command: the capability, ENABLE IMAP4rev2, and what changes once
it is enabled: UTF-8 mailbox names both ways (kept in modified UTF-7 on
disk), no RECENT and no [UNSEEN] at SELECT but the mailbox's LIST line,
[CLOSED], SEARCH answered with ESEARCH, STATUS DELETED and SIZE, LIST
\\NonExistent for hierarchy parents and gone subscriptions. An IMAP4rev1
session beside it keeps the RFC 3501 forms.

argv: imaps_port ca_file user password maildir
"""
import imaplib, os, re, ssl, sys

port = int(sys.argv[1])
ca, user, password, maildir = sys.argv[2:6]
ctx = ssl.create_default_context(cafile=ca)
for cmd in ("ENABLE", "UNSELECT", "MOVE"):
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


def run(m, name, *args):
    """A raw command: (tagged status, {untagged type: [data]})."""
    m.untagged_responses.clear()
    typ, data = m._simple_command(name, *args)
    untagged = {k: list(v) for k, v in m.untagged_responses.items()}
    m.untagged_responses.clear()
    if name in ("SELECT", "EXAMINE"):  # imaplib's own state machine
        m.state = "SELECTED" if typ == "OK" else "AUTH"
    if name in ("UNSELECT", "CLOSE") and typ == "OK":
        m.state = "AUTH"
    return typ, data, untagged


def lines(untagged, key):
    return [x.decode("utf-8") if isinstance(x, bytes) else repr(x) for x in untagged.get(key, [])]


rev1 = connect()
m = connect()
typ, data, u = run(m, "CAPABILITY")
check("capability IMAP4rev2", re.match(r"IMAP4rev1 IMAP4rev2 ", lines(u, "CAPABILITY")[0]), u)

# Before ENABLE: IMAP4rev1 forms.
for msg in (b"Subject: one\r\n\r\nfirst\r\n", b"Subject: two\r\n\r\nsecond\r\n"):
    typ, _ = m.append("INBOX", None, None, msg)
    check("append", typ == "OK")
typ, data, u = run(m, "CREATE", "Entw&APw-rfe")
check("rev1 CREATE in modified UTF-7", typ == "OK", data)
typ, data, u = run(m, "SELECT", "INBOX")
check("rev1 SELECT has RECENT and UNSEEN", typ == "OK" and "RECENT" in u and "UNSEEN" in u and "LIST" not in u, u)
typ, data, u = run(m, "SEARCH", "ALL")
check("rev1 SEARCH answers * SEARCH", u.get("SEARCH") == [b"1 2"] and "ESEARCH" not in u, u)

# ENABLE IMAP4rev2 (in the authenticated state, RFC 5161).
run(m, "UNSELECT")
typ, data, u = run(m, "ENABLE", "IMAP4rev2")
check("ENABLE IMAP4rev2", typ == "OK" and lines(u, "ENABLED") == ["IMAP4rev2"], (typ, data, u))
m._encoding = "utf-8"  # RFC 9051: quoted strings may hold UTF-8 now

# Names are UTF-8 both ways, modified UTF-7 on disk.
typ, data, u = run(m, "LIST", '""', "*")
names = lines(u, "LIST")
check("LIST names in UTF-8", any(l.endswith('"Entwürfe"') for l in names) and not any("&APw-" in l for l in names), names)
typ, data, u = run(m, "CREATE", '"Tom & Jerry"')
check("CREATE with & in UTF-8 mode", typ == "OK" and os.path.isdir(os.path.join(maildir, ".Tom &- Jerry", "cur")), (data, os.listdir(maildir)))
typ, data, u = run(m, "CREATE", '"Été.Plage"')
check("CREATE a UTF-8 child", typ == "OK" and os.path.isdir(os.path.join(maildir, ".&AMk-t&AOk-.Plage", "cur")), (data, os.listdir(maildir)))
typ, data, u = run(rev1, "LIST", '""', "*")
names1 = lines(u, "LIST")
check("an IMAP4rev1 session still sees modified UTF-7", any(l.endswith('"Tom &- Jerry"') for l in names1) and any(l.endswith('"Entw&APw-rfe"') for l in names1), names1)

# \NonExistent: the parent of Été.Plage has no mailbox; nor has a
# subscription whose mailbox is gone.
typ, data, u = run(m, "LIST", '""', "%")
names = lines(u, "LIST")
check("LIST % shows the missing parent as \\NonExistent",
      any(re.match(r'\(\\NonExistent \\HasChildren\) "\." "Été"$', l) for l in names), names)
check("LIST % does not show the child", not any("Plage" in l for l in names), names)
typ, data, u = run(rev1, "LIST", '""', "%")
names1 = lines(u, "LIST")
check("IMAP4rev1 LIST shows it as \\Noselect",
      any(re.match(r'\(\\Noselect \\HasChildren\) "\." "&AMk-t&AOk-"$', l) for l in names1), names1)
with open(os.path.join(maildir, "subscriptions"), "a") as f:
    f.write("Gone\n")
typ, data, u = run(m, "LIST", "(SUBSCRIBED)", '""', "*")
names = lines(u, "LIST")
check("LIST (SUBSCRIBED) shows a gone subscription",
      any(l.startswith("(\\NonExistent") and "\\Subscribed" in l and l.endswith('"Gone"') for l in names)
      and any(l.endswith('"INBOX"') for l in names), names)
typ, data, u = run(m, "SELECT", "INBOX")
check("rev2 SELECT INBOX", typ == "OK" and "CLOSED" not in u, u)
typ, data, u = run(m, "SELECT", "Gone")
check("SELECT of it fails, INBOX is [CLOSED]", typ == "NO" and "CLOSED" in u, (data, u))

# SELECT: no RECENT, no UNSEEN, a LIST line; [CLOSED] for the previous one.
typ, data, u = run(m, "SELECT", '"Entwürfe"')
check("rev2 SELECT of a UTF-8 name", typ == "OK", (data, u))
check("rev2 SELECT: no RECENT, no UNSEEN, nothing to close", "RECENT" not in u and "UNSEEN" not in u and "CLOSED" not in u, u)
check("rev2 SELECT: the LIST line", lines(u, "LIST") == ['(\\HasNoChildren) "." "Entwürfe"'], u)
typ, data, u = run(m, "SELECT", "INBOX")
check("rev2 SELECT: [CLOSED] for the previous mailbox", typ == "OK" and "CLOSED" in u and lines(u, "EXISTS") == ["2"], u)
typ, data, u = run(m, "EXAMINE", "INBOX")
check("rev2 EXAMINE: [CLOSED] too", typ == "OK" and "CLOSED" in u, u)
typ, data, u = run(m, "SELECT", "INBOX")

# SEARCH is answered with ESEARCH (RFC 9051 section 6.4.4).
typ, data, u = run(m, "STORE", "1", "+FLAGS", "(\\Deleted)")
check("STORE", typ == "OK", data)
typ, data, u = run(m, "SEARCH", "ALL")
es = lines(u, "ESEARCH")
check("SEARCH ALL: ESEARCH ALL", len(es) == 1 and re.fullmatch(r'\(TAG "[A-Z0-9]+"\) ALL 1:2', es[0]) and "SEARCH" not in u, u)
typ, data, u = run(m, "FETCH", "1", "(UID)")
uid = int(re.search(r"UID (\d+)", lines(u, "FETCH")[0]).group(1))
typ, data, u = run(m, "UID", "SEARCH", "DELETED")
es = lines(u, "ESEARCH")
check("UID SEARCH: ESEARCH UID ALL", len(es) == 1 and re.fullmatch(r'\(TAG "[A-Z0-9]+"\) UID ALL %d' % uid, es[0]), (u, uid))
typ, data, u = run(m, "SEARCH", "SUBJECT", "nothing-matches")
es = lines(u, "ESEARCH")
check("SEARCH without hits: bare ESEARCH", typ == "OK" and len(es) == 1 and re.fullmatch(r'\(TAG "[A-Z0-9]+"\)', es[0]), u)
typ, data, u = run(m, "SEARCH", "RETURN", "(COUNT)", "ALL")
check("SEARCH RETURN still works", re.search(r"COUNT 2$", lines(u, "ESEARCH")[0]), u)

# STATUS DELETED and SIZE; UTF-8 names in STATUS.
typ, data, u = run(m, "STATUS", "INBOX", "(MESSAGES DELETED SIZE)")
st = lines(u, "STATUS")
mo = re.search(r"MESSAGES 2 DELETED 1 SIZE (\d+)", st[0]) if st else None
check("STATUS DELETED SIZE", mo is not None and int(mo.group(1)) > 40, st)

# MOVE, APPEND and RENAME with UTF-8 names.
typ, data, u = run(m, "UID", "MOVE", str(uid), '"Entwürfe"')
check("UID MOVE to a UTF-8 name", typ == "OK", (data, u))
typ, data = m.append('"Entwürfe"', None, None, b"Subject: three\r\n\r\nthird\r\n")
check("APPEND to a UTF-8 name", typ == "OK", data)
typ, data, u = run(m, "STATUS", '"Entwürfe"', "(MESSAGES DELETED)")
check("STATUS of a UTF-8 name", lines(u, "STATUS") == ['"Entwürfe" (MESSAGES 2 DELETED 1)'], u)
cur = os.listdir(os.path.join(maildir, ".Entw&APw-rfe", "cur")) + os.listdir(os.path.join(maildir, ".Entw&APw-rfe", "new"))
check("the messages are in the modified UTF-7 Maildir", len(cur) == 2, cur)
typ, data, u = run(m, "RENAME", '"Tom & Jerry"', '"Tom & Jerry 2"')
check("RENAME with UTF-8 names", typ == "OK" and os.path.isdir(os.path.join(maildir, ".Tom &- Jerry 2", "cur")), (data, os.listdir(maildir)))
typ, data, u = run(rev1, "STATUS", "Entw&APw-rfe", "(MESSAGES)")
check("the IMAP4rev1 session sees the same mailbox", lines(u, "STATUS") == ['"Entw&APw-rfe" (MESSAGES 2)'], u)

typ, data, u = run(m, "LOGOUT")
rev1.logout()
print("all ok")
