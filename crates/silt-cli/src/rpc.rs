//! `silt rpc call|serve`: request/reply over topics (`silt_client::rpc`). `call` sends one request
//! and prints the reply; `serve` answers requests (shared with every server of its group) by
//! running a shell command per request: the request on its stdin, the reply its stdout.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use silt_client::rpc::{CallError, Requester, Responder};
use silt_client::{Client, ClientError};

use crate::args::{Output, RpcCallArgs, RpcCmd, RpcServeArgs};
use crate::error::CliError;

/// Largest request read from stdin.
const MAX_REQUEST_BYTES: u64 = 1024 * 1024;

pub async fn run(client: &Client, cmd: RpcCmd, out: Output) -> Result<(), CliError> {
    match cmd {
        RpcCmd::Call(a) => call(client, a, out).await,
        RpcCmd::Serve(a) => serve(client, a).await,
    }
}

/// Creates `topic` with the cluster's defaults unless it exists.
async fn ensure_topic(client: &Client, topic: &str) -> Result<(), CliError> {
    match client.admin().create_topic(topic, 0, 0, Default::default()).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(silt_proto::v1::ErrorCode::TopicAlreadyExists) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn call(client: &Client, a: RpcCallArgs, out: Output) -> Result<(), CliError> {
    let data = match a.data {
        Some(d) => d.into_bytes(),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(MAX_REQUEST_BYTES + 1)
                .read_to_end(&mut buf)
                .map_err(|e| CliError::failed(format!("reading stdin: {e}"), "IO"))?;
            if buf.len() as u64 > MAX_REQUEST_BYTES {
                return Err(CliError::usage(format!(
                    "the request is over {MAX_REQUEST_BYTES} bytes"
                )));
            }
            buf
        }
    };
    client.partition_count(&a.topic).await?;
    let reply_topic = a.reply_topic.unwrap_or_else(|| format!("{}.replies", a.topic));
    ensure_topic(client, &reply_topic).await?;
    let requester = Requester::new(client, &a.topic, &reply_topic).await?;
    let timeout = Duration::from_millis(a.timeout_ms);
    let r = requester.call(None, Bytes::from(data), timeout).await;
    let _ = requester.close().await;
    match r {
        Ok(reply) => {
            let text = reply.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            match out {
                Output::Json => outln!("{}", json!({"reply": text})),
                Output::Text => outln!("{}", text.trim_end_matches('\n')),
            }
            Ok(())
        }
        Err(CallError::Timeout(d)) => Err(CliError::failed(
            format!("no reply within {} ms", d.as_millis()),
            "REQUEST_TIMED_OUT",
        )),
        Err(CallError::Client(e)) => Err(e.into()),
    }
}

/// Runs `cmd` (by `sh -c`) with `input` on stdin; its stdout, or why it failed.
async fn run_command(cmd: &str, input: Bytes) -> Result<Vec<u8>, String> {
    let cmd = cmd.to_string();
    let run = move || {
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        // Written from another thread: a command that prints before reading (or never reads)
        // must not block on a full pipe.
        let writer = child.stdin.take().map(|mut stdin| {
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            })
        });
        let out = child.wait_with_output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        if !out.status.success() {
            return Err(format!("{cmd:?} exited with {}", out.status));
        }
        Ok(out.stdout)
    };
    tokio::task::spawn_blocking(run).await.map_err(|e| format!("command task: {e}"))?
}

async fn serve(client: &Client, a: RpcServeArgs) -> Result<(), CliError> {
    client.partition_count(&a.topic).await?;
    let mut responder = Responder::join(client, &a.topic, &a.group).await?;
    eprintln!("serving {} as a member of share group {}", a.topic, a.group);
    let mut answered = 0u64;
    let stopping = crate::consume::stop_signal();
    tokio::pin!(stopping);
    let result: Result<(), ClientError> = async {
        loop {
            if a.count.is_some_and(|n| answered >= n) {
                return Ok(());
            }
            let requests = tokio::select! {
                r = responder.poll() => r?,
                () = &mut stopping => return Ok(()),
            };
            for r in &requests {
                if a.count.is_some_and(|n| answered >= n) {
                    break; // the rest go back to the group when this server leaves
                }
                let input = r.value.clone().unwrap_or_default();
                match run_command(&a.exec, input).await {
                    Ok(reply) => {
                        responder.reply(r, Bytes::from(reply)).await?;
                        answered += 1;
                    }
                    Err(why) => {
                        eprintln!("request {}/{}@{} failed: {why}", r.topic, r.partition, r.offset);
                        responder.reject(r);
                    }
                }
            }
            responder.commit().await?;
        }
    }
    .await;
    responder.close().await?;
    result.map_err(CliError::from)
}
