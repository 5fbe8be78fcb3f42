"""A burst of SMTP deliveries from several concurrent smtplib senders.

Usage: smtp_burst.py PORT RCPT TOTAL SENDERS DEADLINE_SECS

Each message carries a unique `X-Burst-Id: <sender>-<n>` header (and a
Message-ID built from it). Senders reuse their connection for several
messages; when the server goes away (a daemon killed under them) the
sender counts that message as not acknowledged, reconnects and goes on
with the next id, as a real client would with a new message.

Prints one line per message as soon as its fate is known, flushed:
`ACK <id>` when DATA got 250, `FAIL <id> <code> <reason>` otherwise
(`<code>` the SMTP reply code, `-` when the connection was lost). Stops after
TOTAL messages or DEADLINE_SECS, whichever comes first.
"""
import smtplib
import sys
import threading
import time

port, rcpt, total, senders, deadline = sys.argv[1:6]
port, total, senders = int(port), int(total), int(senders)
end = time.monotonic() + float(deadline)
lock = threading.Lock()


def say(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def code_of(e):
    """The SMTP reply code behind a failure, or "-" for a lost connection."""
    if isinstance(e, smtplib.SMTPResponseException):
        return str(e.smtp_code)
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        return str(min(c for c, _ in e.recipients.values()))
    return "-"


def sender(k):
    s = None
    n = 0
    for n in range(k, total, senders):
        if time.monotonic() > end:
            return
        burst_id = f"{k}-{n}"
        msg = (
            f"From: burst@example.org\r\nTo: {rcpt}\r\nSubject: burst {burst_id}\r\n"
            f"Message-ID: <burst-{burst_id}@example.org>\r\nX-Burst-Id: {burst_id}\r\n\r\n"
            + "body line\r\n" * (20 + n % 50)
        ).encode()
        try:
            if s is None:
                s = smtplib.SMTP("127.0.0.1", port, timeout=15)
                s.ehlo("burst.example.org")
            s.sendmail("burst@example.org", [rcpt], msg)
            say(f"ACK {burst_id}")
        except (smtplib.SMTPException, OSError) as e:
            say(f"FAIL {burst_id} {code_of(e)} {type(e).__name__} {str(e)[:80]!r}")
            try:
                if s is not None:
                    s.close()
            except OSError:
                pass
            s = None
            time.sleep(0.05)
    if s is not None:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass


threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
for t in threads:
    t.start()
for t in threads:
    t.join()
say("DONE")
