#!/usr/bin/env python3
"""A scripted SMTP server for the remote-delivery tests (tests/tests/remote.rs).

usage: sink.py PORT OUTDIR CERT KEY

Listens on 127.0.0.1:PORT, one thread per connection. EHLO offers
PIPELINING, SIZE 100000, 8BITMIME, DSN, SMTPUTF8 and STARTTLS with
CERT/KEY before TLS, AUTH PLAIN (accepting relayuser/relaypass, 535
otherwise) after it. Recipients whose local part starts with "reject" get
550 5.1.1; those starting with "defer" get 451 4.2.0 while OUTDIR/defer
exists; every other recipient is accepted. While OUTDIR/nodsn exists, EHLO
does not offer DSN; while OUTDIR/chunking exists, it offers CHUNKING and
BINARYMIME and takes BDAT (the message is stored as the chunks carried it). A message with a recipient
starting with "slow" gets its final reply after 0.5 s. Each accepted
message is written to OUTDIR/msg-N.eml (via a temporary name) with
X-Sink-Mail (the MAIL command line), X-Sink-Tls (yes/no), X-Sink-Auth (the
user or "-") and one X-Sink-Rcpt per accepted recipient in front of the
data. Every command line is appended to OUTDIR/log ("tls " in front once
TLS is on; AUTH arguments are not logged). OUTDIR/maxconc holds the
highest number of connections open at the same time. Prints "ready" when
listening.
Bounded: lines of at most 4096 bytes, messages of at most 1 MB.
"""
import base64
import os
import socket
import time
import ssl
import sys
import threading

port, outdir, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
lock = threading.Lock()
counter = [0]
active = [0, 0]  # open connections, highest seen
MAX_LINE = 4096
MAX_MSG = 1 << 20


def log(line):
    with lock:
        with open(os.path.join(outdir, "log"), "a") as f:
            f.write(line + "\n")


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def readline(self):
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise EOFError
            d = self.sock.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def read(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def send(self, s):
        self.sock.sendall(s.encode() + b"\r\n")


def opened(delta):
    with lock:
        active[0] += delta
        if active[0] > active[1]:
            active[1] = active[0]
            with open(os.path.join(outdir, "maxconc"), "w") as f:
                f.write(str(active[1]))


def handle(sock):
    opened(1)
    c = Conn(sock)
    tls = False
    user = "-"
    mail = None
    rcpts = []
    bdat = None
    c.send("220 mx.remote.test ESMTP test sink")
    try:
        while True:
            line = c.readline().decode("utf-8", "replace").rstrip("\r\n")
            log(("tls " if tls else "") + (line[:10] if line.upper().startswith("AUTH") else line))
            cmd = line[:4].upper()
            if cmd == "EHLO":
                ext = ["mx.remote.test", "PIPELINING", "SIZE 100000", "8BITMIME", "DSN", "SMTPUTF8"]
                if os.path.exists(os.path.join(outdir, "nodsn")):
                    ext.remove("DSN")
                if os.path.exists(os.path.join(outdir, "chunking")):
                    ext += ["CHUNKING", "BINARYMIME"]
                if not tls:
                    ext.append("STARTTLS")
                else:
                    ext.append("AUTH PLAIN")
                for e in ext[:-1]:
                    c.send("250-" + e)
                c.send("250 " + ext[-1])
            elif cmd == "HELO":
                c.send("250 mx.remote.test")
            elif line.upper() == "STARTTLS" and not tls:
                if c.buf:
                    c.send("554 5.5.1 data after STARTTLS")
                    return
                c.send("220 2.0.0 go ahead")
                c.sock = ctx.wrap_socket(c.sock, server_side=True)
                tls = True
                mail, rcpts = None, []
            elif line.upper().startswith("AUTH PLAIN ") and tls:
                try:
                    _, u, p = base64.b64decode(line[11:]).decode().split("\0")
                except Exception:
                    u, p = "", ""
                if (u, p) == ("relayuser", "relaypass"):
                    user = u
                    c.send("235 2.7.0 authenticated")
                else:
                    c.send("535 5.7.8 authentication failed")
            elif cmd == "MAIL":
                mail, rcpts = line, []
                c.send("250 2.1.0 ok")
            elif cmd == "RCPT":
                addr = line[line.index("<") + 1:line.index(">")]
                local = addr.split("@")[0]
                if local.startswith("reject"):
                    c.send("550 5.1.1 <%s>: no such user here" % addr)
                elif local.startswith("defer") and os.path.exists(os.path.join(outdir, "defer")):
                    c.send("451 4.2.0 <%s>: try again later" % addr)
                else:
                    rcpts.append(addr)
                    c.send("250 2.1.5 ok")
            elif cmd in ("DATA", "BDAT"):
                if cmd == "BDAT":
                    words = line.split()
                    size = int(words[1])
                    if size > MAX_MSG:
                        return
                    data = c.read(size)
                    if len(words) < 3 or words[2].upper() != "LAST":
                        c.send("250 2.0.0 %d octets received" % size)
                        bdat = (bdat or b"") + data
                        continue
                    data = (bdat or b"") + data
                    bdat = None
                    if not rcpts or mail is None:
                        c.send("554 5.5.1 no valid recipients")
                        continue
                else:
                    if not rcpts or mail is None:
                        c.send("554 5.5.1 no valid recipients")
                        continue
                    c.send("354 go ahead")
                    data = b""
                    while True:
                        l = c.readline()
                        if l in (b".\r\n", b".\n"):
                            break
                        if l.startswith(b"."):
                            l = l[1:]
                        data += l
                        if len(data) > MAX_MSG:
                            return
                with lock:
                    counter[0] += 1
                    n = counter[0]
                hdr = "X-Sink-Mail: %s\r\nX-Sink-Tls: %s\r\nX-Sink-Auth: %s\r\n" % (
                    mail, "yes" if tls else "no", user)
                hdr += "".join("X-Sink-Rcpt: %s\r\n" % r for r in rcpts)
                tmp = os.path.join(outdir, ".tmp-%d" % n)
                with open(tmp, "wb") as f:
                    f.write(hdr.encode() + data)
                if any(r.startswith("slow") for r in rcpts):
                    time.sleep(0.5)
                os.rename(tmp, os.path.join(outdir, "msg-%d.eml" % n))
                c.send("250 2.0.0 queued as %d" % n)
                mail, rcpts = None, []
            elif cmd == "RSET":
                mail, rcpts = None, []
                c.send("250 2.0.0 ok")
            elif cmd == "NOOP":
                c.send("250 2.0.0 ok")
            elif cmd == "QUIT":
                c.send("221 2.0.0 bye")
                return
            else:
                c.send("502 5.5.2 command not implemented")
    except (EOFError, OSError, ssl.SSLError, ValueError):
        pass
    finally:
        opened(-1)
        try:
            c.sock.close()
        except OSError:
            pass


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
print("ready", flush=True)
while True:
    s, _ = srv.accept()
    threading.Thread(target=handle, args=(s,), daemon=True).start()
