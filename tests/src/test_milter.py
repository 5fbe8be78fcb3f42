#!/usr/bin/python3
"""A test milter on Debian's pymilter (python3-milter, libmilter underneath),
for tests/tests/checks_scan.rs. It speaks the real milter protocol:

    test_milter.py unix:/path/to/socket /path/to/macros.log

* RCPT TO:<bob@...>            -> 550 5.7.1 "test milter refuses bob" (at RCPT)
* Subject containing REJECT-ME -> 554 5.7.1 "test milter says no" (end of message)
* Subject containing TEMPFAIL-ME -> 451 4.7.1 (end of message)
* Subject containing HOLD-ME   -> quarantine "test milter holds it"
* otherwise                    -> adds "X-Test-Milter: seen by test milter"
  and inserts "X-Test-Milter-Top: first" at the top, accepts.

Every macro value the MTA sent and the body size seen at end of message are
appended to the log file as "stage name=value" lines.
"""

import sys

import Milter

SOCKET, LOG = sys.argv[1], sys.argv[2]
MACROS = {
    "connect": ["j", "{daemon_name}", "v", "{client_addr}", "{client_port}", "_"],
    "envfrom": ["i", "{mail_addr}", "{auth_authen}"],
    "envrcpt": ["i", "{rcpt_addr}"],
    "eom": ["i"],
}


def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\n")


class TestMilter(Milter.Base):
    def __init__(self):
        self.subject = ""
        self.body_len = 0
        self.headers = []

    def macros(self, stage):
        for name in MACROS[stage]:
            value = self.getsymval(name)
            if value is not None:
                log(f"{stage} {name}={value}")

    def connect(self, hostname, family, hostaddr):
        self.macros("connect")
        log(f"connect hostname={hostname} addr={hostaddr[0]}")
        return Milter.CONTINUE

    def hello(self, helo):
        log(f"helo {helo}")
        return Milter.CONTINUE

    def envfrom(self, sender, *params):
        self.subject = ""
        self.body_len = 0
        self.headers = []
        self.macros("envfrom")
        log(f"envfrom {sender}")
        return Milter.CONTINUE

    def envrcpt(self, rcpt, *params):
        self.macros("envrcpt")
        log(f"envrcpt {rcpt}")
        if rcpt.lower().startswith("<bob@"):
            self.setreply("550", "5.7.1", "test milter refuses bob")
            return Milter.REJECT
        return Milter.CONTINUE

    def header(self, name, value):
        self.headers.append(name)
        if name.lower() == "subject":
            self.subject = value
        return Milter.CONTINUE

    def eoh(self):
        log("eoh headers=" + ",".join(self.headers))
        return Milter.CONTINUE

    def body(self, chunk):
        self.body_len += len(chunk)
        return Milter.CONTINUE

    def eom(self):
        self.macros("eom")
        log(f"eom body={self.body_len} subject={self.subject}")
        if "REJECT-ME" in self.subject:
            self.setreply("554", "5.7.1", "test milter says no")
            return Milter.REJECT
        if "TEMPFAIL-ME" in self.subject:
            return Milter.TEMPFAIL
        if "HOLD-ME" in self.subject:
            self.quarantine("test milter holds it")
            return Milter.ACCEPT
        self.addheader("X-Test-Milter", "seen by test milter")
        self.addheader("X-Test-Milter-Top", "first", 0)
        return Milter.ACCEPT

    def abort(self):
        log("abort")
        return Milter.CONTINUE

    def close(self):
        log("close")
        return Milter.CONTINUE


if __name__ == "__main__":
    Milter.factory = TestMilter
    Milter.set_flags(Milter.ADDHDRS | Milter.QUARANTINE)
    log("ready")
    Milter.runmilter("postern-test-milter", SOCKET, timeout=60)
