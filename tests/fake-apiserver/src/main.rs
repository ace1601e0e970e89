//! `fake-apiserver`: runs the fake Kubernetes API server as a process, for scripts and
//! benchmarks. Prints the URL as the first line of stdout, then serves until SIGINT, SIGTERM
//! or, when stdin is a pipe, its end (so it dies with the parent holding the pipe).

use fake_apiserver::FakeApiServer;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::process::ExitCode;

const USAGE: &str = "usage: fake-apiserver [--addr 127.0.0.1:0] [--kubeconfig PATH] [--log] [--apply FILE.json|FILE.yaml ...]";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-apiserver: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let mut builder = FakeApiServer::builder();
    let (mut kubeconfig, mut files) = (None, Vec::new());
    let mut args = std::env::args().skip(1).peekable();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--addr" => {
                builder = builder.addr(value()?.parse().map_err(|e| format!("--addr: {e}"))?)
            }
            "--kubeconfig" => kubeconfig = Some(value()?),
            "--log" => builder = builder.log_requests(true),
            "--apply" => {
                files.push(value()?);
                while let Some(more) = args.next_if(|a| !a.starts_with("--")) {
                    files.push(more);
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    let server = builder
        .start()
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
        for doc in documents(&text).map_err(|e| format!("{file}: {e}"))? {
            server.apply(doc).map_err(|e| format!("{file}: {e}"))?;
        }
    }
    if let Some(path) = &kubeconfig {
        server
            .write_kubeconfig(path)
            .map_err(|e| format!("{path}: {e}"))?;
    }
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{}", server.url()).and_then(|()| stdout.flush());
    wait_for_stop().await;
    Ok(())
}

/// The objects in a JSON or (multi-document) YAML file, `List` kinds flattened.
fn documents(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = match serde_json::from_str(text) {
        Ok(doc) => vec![doc],
        Err(_) => {
            // A test fixture may hold thousands of objects: the default budget stops at 1,024
            // documents (it guards untrusted input, which this is not).
            let options = serde_saphyr::options! {
                budget: serde_saphyr::budget! { max_documents: 1 << 20 },
            };
            serde_saphyr::from_multiple_with_options(text, options).map_err(|e| e.to_string())?
        }
    };
    let mut out = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        match doc.get("items").and_then(Value::as_array) {
            Some(items) if doc["kind"].as_str().is_some_and(|k| k.ends_with("List")) => {
                out.extend(items.iter().cloned())
            }
            _ => out.push(doc),
        }
    }
    Ok(out)
}

async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    let piped = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| std::fs::File::from(fd).metadata())
        .is_ok_and(|m| m.file_type().is_fifo());
    if piped {
        std::thread::spawn(move || {
            let _ = std::io::copy(
                &mut std::io::stdin().lock().take(u64::MAX),
                &mut std::io::sink(),
            );
            let _ = tx.send(());
        });
    } else {
        std::mem::forget(tx);
    }
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = stdin_closed => {}
    }
}
