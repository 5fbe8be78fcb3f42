#!/usr/bin/env bash
# Install the Debian packages the test suite needs, if they are missing.
# Used by `make test` (and so by .ci/run). Needs root or sudo for apt-get.
set -euo pipefail

# Each package is here because a test uses it:
#   systemd       systemd-analyze verify of the units in deploy/ (tests/tests/deploy.rs)
#   make          the install test runs `make install DESTDIR=...`
#   mariadb-server, mariadb-client, postgresql, postgresql-client
#                 throwaway database servers for authd's MySQL/PostgreSQL backends
#                 (tests/tests/authd.rs, tests/src/db.rs)
#   passwd        useradd/chpasswd/userdel for the system-user test (tests/tests/authd.rs)
#   postfix, swaks, libnet-ssleay-perl
#                 Postfix smtpd authenticating via authd's Dovecot socket, driven by
#                 swaks --tls (tests/tests/authd.rs, tests/src/postfix.rs)
#   fetchmail, mutt, isync, s-nail
#                 real mail clients driven by the POP3/IMAP/sendmail tests
#   dovecot-core, dovecot-imapd, dovecot-pop3d, dovecot-lmtpd
#                 interop: our queue delivering to Dovecot's LMTP, Dovecot reading our
#                 Maildir (also the reference stack of `make bench`)
#   dnsmasq-base  a real DNS server on loopback serving MX records for the
#                 remote-delivery tests
#   bind9-utils   named-checkzone/named-compilezone load `mailctl dns`'s zone fragment
#                 with BIND's integrity checks (tests/tests/dns.rs)
#   bind9         named serves `mailctl dns`'s records to `mailctl doctor` (tests/tests/doctor.rs)
#   prometheus    promtool check rules on deploy/prometheus/postern-rules.yml (tests/tests/metrics.rs)
#   clamav-daemon clamd on a private socket with a test signature database
#                 (tests/tests/checks_scan.rs; freshclam is never run)
#   opendkim, opendkim-tools
#                 OpenDKIM as a signing milter, keys from opendkim-genkey
#   python3-milter, python3-dkim
#                 a test milter on pymilter (tests/src/test_milter.py); dkimpy
#                 verifies the signatures (Debian's /usr/bin/python3)
#   python3-nacl  Ed25519 for dkimpy, which verifies postern's DKIM signatures
#                 (tests/tests/checks_auth.rs)
#   python3-authres  Authentication-Results parsing dkimpy needs to add an ARC set
#                 (tests/tests/checks_auth.rs)
#   openssl       the key of the independent dkimpy signer (tests/tests/checks_auth.rs)
#   publicsuffix  the Public Suffix List file [checks.dmarc] reads by default
PACKAGES=(systemd make mariadb-server mariadb-client postgresql postgresql-client passwd
  postfix swaks libnet-ssleay-perl fetchmail mutt isync s-nail
  dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd dnsmasq-base prometheus bind9-utils bind9
  clamav-daemon opendkim opendkim-tools python3-milter python3-dkim
  python3-nacl python3-authres openssl publicsuffix)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "test-deps: all present (${PACKAGES[*]})"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
