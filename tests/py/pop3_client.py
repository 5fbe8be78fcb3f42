"""POP3 checks with Python's poplib against a running pop3d.

Usage: pop3_client.py PORT110 PORT995 CAFILE USER PASSWORD EXPECTED_DIR
EXPECTED_DIR holds 1.eml, 2.eml, ... : the messages as delivered (CRLF form),
in delivery order. Exits non-zero with a message on the first failure.
"""
import os
import poplib
import ssl
import sys

port, port_tls, cafile, user, password, expected_dir = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cafile)
expected = []
n = 1
while os.path.exists(os.path.join(expected_dir, f"{n}.eml")):
    with open(os.path.join(expected_dir, f"{n}.eml"), "rb") as f:
        expected.append(f.read())
    n += 1


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def login_stls():
    p = poplib.POP3("127.0.0.1", int(port), timeout=20)
    caps = p.capa()
    check("STLS" in caps and "USER" not in caps, f"CAPA before TLS hides USER, offers STLS: {caps}")
    p.stls(context=ctx)
    caps = p.capa()
    check("USER" in caps and "STLS" not in caps and "PIPELINING" in caps and "UIDL" in caps, f"CAPA after TLS: {caps}")
    p.user(user)
    p.pass_(password)
    return p


# Plaintext login before TLS is refused.
p = poplib.POP3("127.0.0.1", int(port), timeout=20)
try:
    p.user(user)
    p.pass_(password)
    check(False, "USER/PASS before STLS must fail")
except poplib.error_proto as e:
    check(b"-ERR" in e.args[0], f"plaintext refusal: {e}")
p.quit()

# Wrong password: -ERR [AUTH].
p = poplib.POP3_SSL("127.0.0.1", int(port_tls), context=ctx, timeout=20)
try:
    p.user(user)
    p.pass_(password + "x")
    check(False, "wrong password must fail")
except poplib.error_proto as e:
    check(b"[AUTH]" in e.args[0], f"wrong password reply: {e}")
p.quit()

p = login_stls()
count, total = p.stat()
check(count == len(expected), f"STAT count {count} != {len(expected)}")
_, listing, _ = p.list()
sizes = [int(line.split()[1]) for line in listing]
check(sum(sizes) == total, f"STAT size {total} != sum of LIST {sum(sizes)}")
_, uidls, _ = p.uidl()
uids1 = [line.split()[1] for line in uidls]
check(len(set(uids1)) == len(uids1), "UIDLs unique")
for i, want in enumerate(expected, start=1):
    resp, lines, octets = p.retr(i)
    got = b"\r\n".join(lines) + b"\r\n"
    check(got == want, f"RETR {i} byte-exact ({len(got)} vs {len(want)} bytes)")
    check(octets - 0 >= 0 and int(resp.split()[1]) == sizes[i - 1], f"RETR {i} octets {resp} vs LIST {sizes[i - 1]}")
# TOP n 1: headers, blank line, one body line.
_, top, _ = p.top(1, 1)
head, _, body = expected[0].partition(b"\r\n\r\n")
want_top = head.split(b"\r\n") + [b""] + body.split(b"\r\n")[:1]
check(top == want_top, f"TOP 1 1: {top!r} vs {want_top!r}")
# DELE then RSET keeps everything.
p.dele(1)
check(p.stat()[0] == len(expected) - 1, "STAT after DELE excludes the message")
p.rset()
check(p.stat()[0] == len(expected), "RSET undeletes")
p.quit()

# UIDLs stable across sessions; a second session while one is open: IN-USE.
p = login_stls()
_, uidls, _ = p.uidl()
check([line.split()[1] for line in uidls] == uids1, "UIDLs stable across sessions")
q = poplib.POP3_SSL("127.0.0.1", int(port_tls), context=ctx, timeout=20)
q.user(user)
try:
    q.pass_(password)
    check(False, "second session must get IN-USE")
except poplib.error_proto as e:
    check(b"[IN-USE]" in e.args[0], f"IN-USE reply: {e}")
q.quit()
# DELE + QUIT commits the deletion.
p.dele(1)
p.quit()
p = poplib.POP3_SSL("127.0.0.1", int(port_tls), context=ctx, timeout=20)
p.user(user)
p.pass_(password)
check(p.stat()[0] == len(expected) - 1, "QUIT in TRANSACTION expunged the message")
_, uidls, _ = p.uidl()
check([line.split()[1] for line in uidls] == uids1[1:], "remaining UIDLs unchanged")
p.quit()
print("ok")
