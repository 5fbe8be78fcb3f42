# postern — the two commands: `make run` and `make test`.
#
#   make run       build everything and run the whole stack in the foreground
#                  (dev/postern.toml: loopback high ports, state under ./var)
#   make test      install what the tests need, then fmt + clippy + all tests
#   make bench     postern vs Postfix + Dovecot on this machine (release build)
#   make fuzz      every cargo-fuzz target for FUZZ_SECONDS (60) each, on stable
#   make install   install binaries, systemd units, config, users, directories
#   make build     debug build of the workspace

CARGO      ?= cargo
PROFILE    ?= release
PREFIX     ?= /usr/local
DESTDIR    ?=
SYSCONFDIR ?= /etc
UNITDIR    ?= $(SYSCONFDIR)/systemd/system
LIBEXECDIR ?= $(PREFIX)/lib/postern
SBINDIR    ?= $(PREFIX)/sbin
DOCDIR     ?= $(PREFIX)/share/doc/postern
DAEMONS    := authd lmtp-delivery queue-manager smtpd pop3d imapd autoconfigd

.PHONY: all build run test test-deps lint fmt install clean bench fuzz

all: build

build:
	$(CARGO) build --workspace --bins

run: build
	./target/debug/postern-dev --config dev/postern.toml

# Packages the test suite needs (Debian names). scripts/test-deps.sh
# installs the missing ones with apt-get.
test-deps:
	./scripts/test-deps.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: test-deps lint
	$(CARGO) build --workspace --bins
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) test --workspace --doc && $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi

fmt:
	$(CARGO) fmt --all

# Benchmarks: scripts/bench.sh installs the reference stack's packages,
# builds in release mode and runs `postern-bench suite $(BENCH_ARGS)`.
# Numbers are printed and written to bench/results/; nothing fails on timing.
BENCH_ARGS ?=
bench:
	./scripts/bench.sh $(BENCH_ARGS)

# Fuzzing: scripts/fuzz.sh runs every crates/*/fuzz target for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./scripts/fuzz.sh

# Installs into $(DESTDIR); creates the system users only when DESTDIR is
# empty (a real install). Does not enable or start anything: see README.
# sendmail, mailq and newaliases are links to mailctl in $(SBINDIR);
# SENDMAIL_LINK=1 also points /usr/sbin/sendmail at it (what cron, mail(1)
# and mutt call) — only when no other MTA owns that path.
install:
	@if [ ! -x target/$(PROFILE)/smtpd ]; then $(CARGO) build --workspace --bins $(if $(filter release,$(PROFILE)),--release,); fi
	install -d $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(SYSCONFDIR)/postern/tls $(DESTDIR)$(SYSCONFDIR)/tmpfiles.d $(DESTDIR)$(DOCDIR)
	for d in $(DAEMONS); do install -m 0755 target/$(PROFILE)/$$d $(DESTDIR)$(LIBEXECDIR)/$$d; done
	install -m 0755 target/$(PROFILE)/mailctl $(DESTDIR)$(SBINDIR)/mailctl
	for n in sendmail mailq newaliases; do ln -sf mailctl $(DESTDIR)$(SBINDIR)/$$n; done
	@if [ -n "$(SENDMAIL_LINK)" ]; then ln -sf $(SBINDIR)/mailctl $(DESTDIR)/usr/sbin/sendmail; fi
	install -m 0644 deploy/systemd/*.service deploy/systemd/*.socket deploy/systemd/postern.target $(DESTDIR)$(UNITDIR)/
	sed -i 's#/usr/local/lib/postern/#$(LIBEXECDIR)/#' $(DESTDIR)$(UNITDIR)/postern-*.service
	install -m 0644 deploy/postern.tmpfiles $(DESTDIR)$(SYSCONFDIR)/tmpfiles.d/postern.conf
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/postern/postern.toml ]; then \
	  echo "keeping existing $(SYSCONFDIR)/postern/postern.toml (new example: $(DOCDIR)/postern.toml)"; \
	else install -m 0640 deploy/postern.toml $(DESTDIR)$(SYSCONFDIR)/postern/postern.toml; fi
	install -m 0644 deploy/postern.toml README.md $(DESTDIR)$(DOCDIR)/
	@if [ -z "$(DESTDIR)" ] && [ -z "$(NO_USERS)" ]; then ./scripts/install-users.sh; fi

clean:
	$(CARGO) clean
	rm -rf var
