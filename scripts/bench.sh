#!/usr/bin/env bash
# `make bench`: postern side by side with Postfix + Dovecot on this machine.
#
# Installs what the reference stack and the chart need (Debian packages),
# builds everything in release mode, and runs `postern-bench suite`, which
# starts both stacks on loopback, runs the same workloads against each,
# prints a Markdown table and writes bench/results/{latest.json,latest.md,
# latest.png}. Extra arguments go to the suite, e.g.
#   make bench BENCH_ARGS="--runs 1 --messages 500 --imap-seconds 10 --idle 2000"
# Needs root (the private Postfix and Dovecot instances, like the tests).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(postfix dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd fonts-dejavu-core)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "bench: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cargo build --release --workspace --bins
exec "${CARGO_TARGET_DIR:-target}/release/postern-bench" suite "$@"
