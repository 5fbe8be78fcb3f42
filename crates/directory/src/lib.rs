//! # postern-directory
//!
//! Users, domains, aliases, password schemes and SASL for postern. authd
//! wraps this crate behind the `postern.auth.v1` gRPC service; mailctl uses
//! its management functions; queue-manager and smtpd use recipient
//! resolution.
//!
//! ## Modules
//!
//! | module | what |
//! |---|---|
//! | [`scheme`] | Dovecot-style `{SCHEME}` password hashes: hash, verify, identify |
//! | [`sasl`] | sans-I/O SASL server mechanisms: PLAIN, LOGIN, SCRAM-SHA-256 |
//! | [`aliases`] | `/etc/aliases` parser (sendmail/Postfix format) |
//! | [`sql`] | SQL store over sqlx `Any`: SQLite (default), MySQL/MariaDB, PostgreSQL |
//! | [`system`] | Unix users from `/etc/passwd` + `/etc/shadow` |
//! | [`Directory`] | the async API: login, user lookup, recipient resolution, management |
//! | [`config`] | [`DirectoryConfig`], embedded in daemon configs |
//! | [`cache`] | TTL cache with negative entries |
//! | [`address`] | address normalisation, plus-address extension |
//! | [`secret`] | [`Secret`]: `Debug`/`Display` print `***` |
//!
//! ## Security rules
//!
//! - **No user enumeration.** [`Directory::authenticate`] answers
//!   [`AuthError::Failed`] for an unknown user, a wrong password, a disabled
//!   account or domain, and an unusable hash alike; an unknown user costs a
//!   dummy verification in the configured scheme and cost parameters
//!   ([`scheme::dummy_hash`]), so timing does not tell either. SCRAM exchanges for unknown users go on
//!   with a stable fake salt and fail at the proof. The reason is logged
//!   server-side (`info`), never sent.
//! - **Constant time.** Derived values are compared with [`subtle`]
//!   (SSHA, SCRAM, PLAIN via digests, MD5-crypt; argon2, bcrypt and
//!   sha-crypt compare in constant time inside their crates).
//! - **Secrets never logged.** Passwords travel as [`Secret`]; stored
//!   hashes in [`User::password_hash`] are `Secret` too; SCRAM keys print as
//!   `***`. Database URLs are not logged by this crate.
//! - **Plain text is opt-in.** `{PLAIN}`/`{CLEAR}` hashes verify only with
//!   `allow_plaintext_schemes`; a bare unrecognised hash is never taken as
//!   plain text. MD5-CRYPT and the unsalted / SHA-1 digests (`{SHA512}`,
//!   `{SHA256}`, `{SHA}`, `{SSHA}`) verify for migration only and are
//!   flagged ([`scheme::Verified::deprecated`]); a warning is logged on each
//!   login. New hashes are never written in them.
//! - **`Ok` is authentication, not authorisation.** An authzid different
//!   from the authcid needs a master user ([`Directory::authorize`]).
//! - **Bounded input.** Every size bound is a named constant: SASL
//!   ([`sasl::MAX_RESPONSE_LEN`], ...), passwords ([`scheme::MAX_PASSWORD_LEN`]),
//!   aliases ([`aliases::MAX_INCLUDE_DEPTH`], ...), expansion
//!   ([`MAX_ALIAS_DEPTH`], [`MAX_EXPANSION`]).
//! - SQL lookups bind every value as a parameter; configurable queries use
//!   Postfix placeholders (`%s %u %d`) that become bound parameters.
//! - Password hashing and verification run on `spawn_blocking` threads.
//!
//! ## authd: login (IMAP LOGIN, POP3 USER/PASS)
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use directory::{AuthError, Directory, DirectoryConfig, Secret};
//! let dir = Directory::open(DirectoryConfig::default()).await?;
//! match dir.authenticate("alice@example.org", &Secret::new("pw".to_string())).await {
//!     Ok(ok) => {
//!         // ok.user: address, mailbox, uid/gid, host (for proxying), quota
//!         // ok.verified.needs_rehash: the caller may store a new hash
//!     }
//!     Err(AuthError::Failed) => { /* "authentication failed", count a penalty */ }
//!     Err(AuthError::Temporary) => { /* tell the client to try later */ }
//! }
//! # Ok(()) }
//! ```
//!
//! ## authd: SASL exchange
//!
//! ```no_run
//! # async fn f(dir: &directory::Directory, client_lines: &mut dyn Iterator<Item = Vec<u8>>) -> Result<(), directory::AuthError> {
//! use directory::AuthError;
//! use directory::sasl::{Mechanism, SaslServer, Step, decode_response, encode_challenge};
//! let mut s = SaslServer::new(Mechanism::from_name("SCRAM-SHA-256").unwrap());
//! let first = decode_response(&client_lines.next().unwrap()).map_err(|_| AuthError::Failed)?;
//! let mut step = s.start(Some(&first));
//! let acting_user = loop {
//!     step = match step {
//!         Step::Challenge(c) => {
//!             let _wire = encode_challenge(&c); // send "334 <wire>" / "+ <wire>"
//!             let reply = decode_response(&client_lines.next().unwrap()).map_err(|_| AuthError::Failed)?;
//!             s.step(&reply)
//!         }
//!         Step::NeedScramSecret { authcid } => s.scram_secret(dir.scram_secret(&authcid).await?),
//!         // PLAIN / LOGIN: the directory verifies the password and the authzid
//!         Step::Credentials(c) => break dir.authenticate_credentials(&c).await?.1,
//!         // SCRAM verified the proof; apply the authzid rule; final_data
//!         // (server-final) goes to the client as AuthOk.final_data
//!         Step::Done { id, final_data: _ } => {
//!             let user = dir.lookup_user(&id.authcid).await.ok().flatten().ok_or(AuthError::Failed)?;
//!             break dir.authorize(&id, &user).await?;
//!         }
//!         Step::Failed(_) => return Err(AuthError::Failed),
//!     };
//! };
//! # let _ = acting_user; Ok(()) }
//! ```
//!
//! ## queue-manager / smtpd: recipient resolution
//!
//! ```no_run
//! # async fn f(dir: &directory::Directory) -> Result<(), directory::DirectoryError> {
//! use directory::Resolution;
//! match dir.resolve_recipient("Alice+lists@Example.org").await? {
//!     Resolution::Deliver(d) => {
//!         // d.local: mailboxes (user, Maildir path, quota, uid/gid, host, extension)
//!         // d.remote: addresses to relay to; d.commands / d.files: /etc/aliases targets
//!         // d.dropped: alias targets that bounce (unknown, disabled, loop)
//!     }
//!     Resolution::NotOurs => { /* relay only for authorised clients */ }
//!     Resolution::Unknown => { /* 550 5.1.1 */ }
//!     Resolution::Disabled => { /* 550 5.2.1 */ }
//! }
//! let _transport = dir.transport("example.org").await?; // e.g. "lmtp:unix:/run/..."
//! dir.invalidate_all(); // on SIGHUP; reload_aliases() after newaliases
//! # Ok(()) }
//! ```
//!
//! Resolution order: lowercase; plus-address extension split
//! (`recipient_delimiter`); for `mydestination` domains the local
//! `/etc/aliases` table; virtual aliases (`forwardings`) for the exact
//! address, then without extension; the user's mailbox; the catch-all
//! `@domain` only when nothing else matched; recursively, with loop
//! detection, [`MAX_ALIAS_DEPTH`] and [`MAX_EXPANSION`]; duplicates removed.
//! Results, negative ones included, are cached for `cache_ttl_secs`.
//!
//! ## mailctl: management
//!
//! ```no_run
//! # async fn f(dir: &directory::Directory) -> Result<(), directory::DirectoryError> {
//! use directory::{NewUser, Secret};
//! dir.domain_add("example.org").await?;                 // Duplicate / BadAddress
//! dir.user_add(NewUser::new("alice@example.org", Secret::new("pw".into()))).await?; // UnknownDomain
//! dir.user_passwd("alice@example.org", Secret::new("new".into())).await?;
//! dir.alias_add("team@example.org", "alice@example.org").await?;
//! dir.alias_add("@example.org", "alice@example.org").await?; // catch-all
//! for u in dir.user_list(Some("example.org")).await? { println!("{}", u.address); }
//! let alice = dir.user_show("alice@example.org").await?;   // UnknownUser
//! dir.alias_del("team@example.org", None).await?;
//! dir.user_del("alice@example.org").await?;
//! # let _ = alice; Ok(()) }
//! ```
//!
//! Also: `domain_del` (refused while users or aliases remain), `domain_list`,
//! `user_set_enabled`, `user_set_quota`, `alias_list`, `transport_set`, and
//! [`Directory::sql`] for the store itself (e.g. `domain_set_enabled`).
//!
//! ## Limits of this version
//!
//! - SQL backends: SQLite is tested in every run; MySQL/MariaDB and
//!   PostgreSQL run the same scenario when `POSTERN_TEST_MYSQL_URL` /
//!   `POSTERN_TEST_PG_URL` are set (last run by hand against MariaDB 10.11
//!   and PostgreSQL 15).
//! - yescrypt (`$y$`, the Debian 11+ `/etc/shadow` default) verifies only
//!   where the system's libxcrypt (`libcrypt.so.1` with `crypt_rn`) can be
//!   loaded at run time (the only `unsafe` code of the crate, in `libcrypt`).
//! - Dovecot encoding suffixes are accepted on digest schemes only
//!   (`{SHA256.HEX}`, `{SSHA512.B64}`; not `{PLAIN.B64}`).
//! - Not supported: DES crypt, `{PLAIN-MD5}`, CRAM-MD5, DIGEST-MD5,
//!   SCRAM-SHA-1, SCRAM channel binding (`-PLUS`), SASLprep of SCRAM names
//!   and passwords (ASCII is unaffected).
//! - Hashes in non-default schemes are reported (`needs_rehash`), never
//!   rewritten automatically.
//! - SHA-crypt `rounds=` outside 1000..=999999999 are refused as malformed
//!   (glibc clamps them).
//! - Passwords are not zeroed in memory on drop (no `zeroize` dependency).

pub mod address;
pub mod aliases;
pub mod cache;
pub mod config;
mod directory;
mod libcrypt;
pub mod model;
pub mod sasl;
pub mod scheme;
pub mod secret;
pub mod sql;
pub mod system;

pub use address::Address;
pub use config::{BackendKind, DirectoryConfig, SqlQueries};
pub use directory::{Directory, MAX_ALIAS_DEPTH, MAX_EXPANSION};
pub use model::{
    AuthError, AuthenticatedUser, Delivery, DirectoryError, Domain, DroppedReason, LocalMailbox,
    NewUser, Resolution, User,
};
pub use sasl::{Authenticated, Credentials};
pub use secret::Secret;
