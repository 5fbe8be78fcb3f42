//! Dial authd's gRPC socket, check the contract version and list the SASL
//! mechanisms it offers over TLS.
//!
//! ```text
//! cargo run -p postern-examples --bin auth-ping -- var/run/private/auth.sock
//! ```

use postern_ipc::auth::v1::{MechanismsRequest, auth_client::AuthClient};
use postern_ipc::{DialOptions, SocketUri, dial};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let socket = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "unix:var/run/private/auth.sock".into());
    let uri: SocketUri = socket.parse()?;
    let mut client = AuthClient::new(dial(&uri, &DialOptions::default())?);
    let hello = client
        .handshake(postern_ipc::auth_handshake("auth-ping"))
        .await?
        .into_inner();
    postern_ipc::check_auth_version(hello.version.as_ref())?;
    println!("connected to {} at {uri}", hello.server);
    let mechs = client
        .mechanisms(MechanismsRequest { secured: true })
        .await?
        .into_inner();
    println!("mechanisms over TLS: {}", mechs.mechanisms.join(" "));
    Ok(())
}
