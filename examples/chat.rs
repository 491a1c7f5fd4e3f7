//! A small chat server on the shardcast API: rooms, a namespace middleware, broadcasts to a
//! room from a socket, and a server-to-client acknowledgement with a timeout.
//!
//!     cargo run --example chat

use std::time::Duration;

use shardcast::{Config, ConnectError, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let io = Server::new(Config::builder().ping_interval(Duration::from_secs(10)).build()?);

    io.of("/admin").use_middleware(|socket| match socket.handshake().auth.get("token") {
        Some(_) => Ok(()),
        None => {
            Err(ConnectError::new("unauthorized").with_data(serde_json::json!({"retry": false})))
        }
    });

    io.on_connection(|socket| {
        socket.on("join", |socket, args, ack| {
            if let Some(room) = args.str(0) {
                socket.join(room);
            }
            if let Some(ack) = ack {
                let _ = ack.send((true,));
            }
        });
        socket.on("chat", |socket, args, _ack| {
            // Everyone in the room but the sender, on every shard; encoded once.
            let room = args.str(0).unwrap_or("lobby").to_owned();
            let _ = socket.to(room).emit("chat", args.skip(1));
        });
        socket.on_disconnect(|socket, reason| println!("{} left: {reason}", socket.id()));

        let s = socket.clone();
        tokio::spawn(async move {
            // Server-to-client acknowledgement with a timeout.
            let reply = s.timeout(Duration::from_secs(5)).emit_with_ack("ping", ()).await;
            println!("client answered: {reply:?}");
        });
    });

    let running = io.listen("127.0.0.1:3000".parse()?)?;
    println!("listening on {}", running.local_addr());
    running.wait();
    Ok(())
}
