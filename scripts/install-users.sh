#!/usr/bin/env bash
# Create the system users and directories of a real installation (make install).
#   postern  runs authd, queue-manager, smtpd
#   vmail    owns the virtual mailboxes; runs lmtp-delivery, pop3d, imapd
set -euo pipefail
getent group postern >/dev/null || groupadd --system postern
getent passwd postern >/dev/null || useradd --system --gid postern --home-dir /var/lib/postern --no-create-home --shell /usr/sbin/nologin postern
getent group vmail >/dev/null || groupadd --system vmail
getent passwd vmail >/dev/null || useradd --system --gid vmail --groups postern --home-dir /var/lib/postern/mail --no-create-home --shell /usr/sbin/nologin vmail
install -d -m 0755 /var/lib/postern
chgrp postern /etc/postern/postern.toml 2>/dev/null || true
chgrp -R postern /etc/postern/tls 2>/dev/null || true
chmod 0750 /etc/postern/tls
if command -v systemd-tmpfiles >/dev/null && [ -d /run/systemd/system ]; then
  systemd-tmpfiles --create /etc/tmpfiles.d/postern.conf
  systemctl daemon-reload
fi
echo "postern installed. Next: put a certificate in /etc/postern/tls/, edit /etc/postern/postern.toml,"
echo "then: systemctl enable --now postern.target"
