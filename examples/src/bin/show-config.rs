//! Load a postern configuration with the same code the daemons use and
//! print where each daemon's sockets and directories end up.
//!
//! ```text
//! cargo run -p postern-examples --bin show-config -- dev/postern.toml
//! ```

use postern_common::Config;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "dev/postern.toml".into());
    let cfg = Config::load(path.as_ref())?;
    println!(
        "host {} / domain {}",
        cfg.global.myhostname, cfg.global.mydomain
    );
    println!("authd socket          {}", cfg.authd.socket);
    println!("queue socket          {}", cfg.queue.socket);
    println!("sendmail socket       {}", cfg.queue.public_socket);
    println!("lmtp socket           {}", cfg.lmtp.socket);
    println!(
        "spool                 {}",
        cfg.queue.spool_directory.display()
    );
    println!(
        "mailboxes             {}",
        cfg.lmtp.mail_directory.display()
    );
    for l in &cfg.smtpd.listener {
        println!("smtpd {:<12} {} ({:?})", l.name, l.address, l.role);
    }
    Ok(())
}
