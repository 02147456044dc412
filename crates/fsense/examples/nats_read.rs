//! Reads a JetStream stream back: one line per message, `Nats-Msg-Id` TAB payload.
//!
//!   cargo run -p fsense --example nats_read -- 127.0.0.1:4222 FSENSE
//!
//! For trying `--sink` out (README, "Fleet: events into NATS"); SIEMs use their own consumers.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(server), stream) = (args.next(), args.next().unwrap_or_else(|| "FSENSE".into()))
    else {
        eprintln!("usage: nats_read HOST:PORT [STREAM]");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = rt.block_on(read(&server, &stream)) {
        // `| head` closing the pipe is the reader being done, not an error.
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return;
        }
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn read(server: &str, stream: &str) -> Result<(), Box<dyn std::error::Error>> {
    let js = async_nats::jetstream::new(async_nats::connect(server).await?);
    let mut stream = js.get_stream(stream).await?;
    let total = stream.info().await?.state.messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = std::io::stdout().lock();
    for _ in 0..total {
        let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), messages.next()).await
        else {
            break;
        };
        let m = m?;
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        writeln!(out, "{id}\t{}", String::from_utf8_lossy(&m.payload))?;
    }
    eprintln!("{total} messages");
    Ok(())
}
