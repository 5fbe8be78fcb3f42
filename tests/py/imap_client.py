"""imapd checks with Python's imaplib (argv: imap_port imaps_port pop3_port
ca_file user password expected_dir maildir)."""
import imaplib, os, poplib, re, socket, ssl, sys, threading, time

imap_port, imaps_port, pop3_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ca, user, password, expected, maildir = sys.argv[4:9]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False  # the test certificate is for localhost; chain is verified


def exp(n):
    with open(os.path.join(expected, "%d.eml" % n), "rb") as f:
        return f.read()


def check(name, cond, detail=""):
    if not cond:
        print("FAIL", name, detail)
        sys.exit(1)
    print("ok", name)


# LOGIN refused before TLS, LOGINDISABLED advertised.
m = imaplib.IMAP4("127.0.0.1", imap_port)
check("logindisabled", "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities, m.capabilities)
try:
    m.login(user, password)
    check("login before tls refused", False)
except imaplib.IMAP4.error:
    print("ok login before tls refused")
m.starttls(ssl_context=ctx)
check("auth after tls", "AUTH=PLAIN" in m.capabilities and "LOGINDISABLED" not in m.capabilities, m.capabilities)
try:
    m.login(user, "wrong password")
    check("wrong password refused", False)
except imaplib.IMAP4.error as e:
    check("wrong password refused", "AUTHENTICATIONFAILED" in str(e), str(e))
typ, _ = m.login(user, password)
check("login", typ == "OK")

typ, lines = m.list()
text = b"\n".join(lines).decode()
check("list inbox", '"INBOX"' in text, text)
for name, use in [("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk")]:
    check("list " + name, re.search(r"\(.*%s.*\) \".\" \"%s\"" % (re.escape(use), name), text) is not None, text)

typ, data = m.select("INBOX")
check("select exists", typ == "OK" and data[0] == b"4", data)
uidvalidity = int(m.untagged_responses.get("UIDVALIDITY", [b"0"])[0])
check("uidvalidity", uidvalidity > 0)
typ, data = m.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY)")
check("status", b"MESSAGES 4" in data[0] and b"UNSEEN 4" in data[0] and (b"UIDVALIDITY %d" % uidvalidity) in data[0], data)

for n in range(1, 5):
    typ, data = m.fetch(str(n), "(RFC822.SIZE BODY.PEEK[])")
    meta, body = data[0]
    size = int(re.search(rb"RFC822\.SIZE (\d+)", meta).group(1))
    check("fetch %d byte-exact" % n, body == exp(n), (body[:200], exp(n)[:200]))
    check("fetch %d size" % n, size == len(body), (size, len(body)))

typ, data = m.search(None, "UNSEEN")
check("search unseen all", data[0] == b"1 2 3 4", data)
typ, data = m.search(None, "SUBJECT", "EMPTY")
check("search subject", data[0] == b"4", data)
typ, data = m.search(None, "BODY", '"body line 2"')
check("search body", data[0] == b"1", data)
typ, data = m.search(None, "HEADER", "From", "example.test", "UNSEEN")
check("search header", data[0] == b"1", data)
typ, data = m.uid("SEARCH", "TEXT", "x-8bit")
check("uid search text", len(data[0].split()) == 1, data)
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
check("header fields", data[0][1] == b"Subject: first\r\n\r\n", data)
typ, data = m.fetch("1", "(ENVELOPE)")
check("envelope", b'ENVELOPE (NIL "first" ((NIL NIL "a" "example.test"))' in data[0], data)
typ, data = m.fetch("1", "(BODYSTRUCTURE)")
check("bodystructure", b'BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 26 2 NIL NIL NIL NIL)' in data[0], data)
typ, data = m.fetch("1", "(BODY.PEEK[1])")
check("part 1 of a single-part message", data[0][1] == b"body line 1\r\nbody line 2\r\n", data)
typ, data = m.fetch("1", "(BODY[TEXT]<0.4>)")
check("partial text", data[0][1] == b"body", data)
typ, data = m.fetch("1", "(FLAGS)")
check("body[] sets seen", b"\\Seen" in data[0], data)
typ, data = m.search(None, "UNSEEN")
check("search unseen", data[0] == b"2 3 4", data)

# UID FETCH and the POP3 UIDL relation.
typ, data = m.uid("FETCH", "1:*", "(UID)")
uids = [int(re.search(rb"UID (\d+)", d).group(1)) for d in data]
check("uid fetch", len(uids) == 4 and uids == sorted(uids), data)
p = poplib.POP3("127.0.0.1", pop3_port)
p.stls(context=ctx)
p.user(user)
p.pass_(password)
uidls = [l.split()[1].decode() for l in p.uidl()[1]]
p.quit()
check("pop3 uidl = imap uid+uidvalidity", uidls == ["%08X%08X" % (u, uidvalidity) for u in uids], (uidls, uids, uidvalidity))

# A second session over implicit TLS.
m2 = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=ctx)
typ, _ = m2.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (user, password)).encode())
check("authenticate plain over 993", typ == "OK")
m2.select("INBOX")

typ, data = m.store("2", "+FLAGS", "(\\Deleted)")
check("store deleted", b"\\Deleted" in data[0], data)
typ, data = m.search(None, "DELETED")
check("search deleted", data[0] == b"2", data)
typ, data = m.expunge()
check("expunge", data == [b"2"], data)
typ, data = m.uid("FETCH", str(uids[2]), "(UID RFC822.SIZE)")
check("uid fetch after expunge", data[0].startswith(b"2 (UID %d" % uids[2]), data)

typ, _ = m2.noop()
check("second session sees expunge", m2.untagged_responses.get("EXPUNGE") == [b"2"], m2.untagged_responses)
typ, data = m2.fetch("2", "(UID)")
check("second session renumbered", b"UID %d" % uids[2] in data[0], data)

# IDLE in session 1; another process (a plain Maildir writer) delivers.
tag = m._new_tag()
m.send(tag + b" IDLE\r\n")
line = m.readline()
check("idle continuation", line.startswith(b"+"), line)
start = time.time()
msg = b"Subject: during idle\n\nhello\n"
tmp = os.path.join(maildir, "tmp", "idle.test")
with open(tmp, "wb") as f:
    f.write(msg)
os.rename(tmp, os.path.join(maildir, "new", "%d.idle.test" % int(time.time())))
m.sock.settimeout(3)
line = m.readline()
elapsed = time.time() - start
check("idle exists", line.strip() == b"* 4 EXISTS", line)
check("idle within 1.5 s", elapsed < 1.5, elapsed)
m.sock.settimeout(None)
m.send(b"DONE\r\n")
line = m.readline()
check("idle done", line.startswith(tag + b" OK"), line)
typ, data = m.fetch("4", "(BODY.PEEK[])")
check("idle message", data[0][1] == msg.replace(b"\n", b"\r\n"), data)

# CREATE, APPEND (APPENDUID), COPY (COPYUID), UID MOVE.
typ, _ = m.create("Work")
check("create", typ == "OK")
typ, _ = m.create("Work")
check("create twice refused", typ == "NO")
typ, lines = m.list("\"\"", "W*")
check("list created", any(b'"Work"' in l for l in lines), lines)
appended = b"Subject: appended\r\n\r\nx\r\n"
typ, data = m.append("Work", "(\\Seen)", None, appended)
check("append", typ == "OK" and b"APPENDUID" in data[0], data)
typ, data = m.copy("1", "Work")
check("copy", typ == "OK" and b"COPYUID" in data[0], data)
typ, data = m.uid("MOVE", str(uids[0]), "Work")
check("uid move", typ == "OK" and m.untagged_responses.pop("EXPUNGE", None) == [b"1"], (data, m.untagged_responses))
typ, data = m.status("Work", "(MESSAGES UNSEEN)")
check("status work", b"MESSAGES 3" in data[0] and b"UNSEEN 0" in data[0], data)
typ, data = m.select("Work")
check("select work", data[0] == b"3", data)
typ, data = m.fetch("1", "(FLAGS BODY.PEEK[])")
check("appended message", data[0][1] == appended and b"\\Seen" in data[0][0] + data[1], data)
typ, data = m.fetch("2:3", "(BODY.PEEK[])")
check("copied and moved", data[0][1] == exp(1) and data[2][1] == exp(1), data)

typ, _ = m.subscribe("Work")
typ, lines = m.lsub("\"\"", "*")
check("lsub after subscribe", typ == "OK" and any(b'"Work"' in l for l in lines), lines)
typ, _ = m.unsubscribe("Work")
typ, lines = m.lsub("\"\"", "*")
check("lsub after unsubscribe", not any(b'"Work"' in l for l in lines) and any(b'"Sent"' in l for l in lines), lines)
m.close()
typ, _ = m.delete("Work")
check("delete", typ == "OK")
typ, lines = m.list("\"\"", "*")
check("deleted gone", not any(b"Work" in l for l in lines), lines)
typ, _ = m.delete("INBOX")
check("inbox not deletable", typ == "NO")
m.logout()
m2.logout()
print("all imap checks passed")
