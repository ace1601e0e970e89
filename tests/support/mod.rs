//! Helpers shared by the integration tests: the built binary, the real `chaos` (the oracle),
//! a local HTTP server for http probes, and runs in fresh working directories.

pub mod otel;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// Kubernetes' own schemas accept the manifest at `path`, strictly (no unknown field), for
/// Kubernetes `version` (the newest bundled when `None`): `.venv/bin/kubernetes-validate`,
/// which scripts/setup-test-peers installs. Panics with its report otherwise.
pub fn assert_kubernetes_valid(path: &Path, version: Option<&str>) {
    let validate = repo().join(".venv/bin/kubernetes-validate");
    let mut command = Command::new(&validate);
    command.args(["--strict", "--quiet"]);
    if let Some(version) = version {
        command.args(["--kubernetes-version", version]);
    }
    let out = command.arg(path).output().unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/setup-test-peers installs it)",
            validate.display()
        )
    });
    assert!(
        out.status.success(),
        "kubernetes-validate --strict refuses {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The chaosflow binary under test.
pub fn chaosflow_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chaosflow"))
}

/// The real Chaos Toolkit CLI: `$CHAOSFLOW_CHAOS`, else `.venv/bin/chaos` (installed by the
/// test command). Missing it is a failure, never a skip.
pub fn chaos_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let path = std::env::var_os("CHAOSFLOW_CHAOS")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join(".venv/bin/chaos"));
        assert!(
            path.is_file(),
            "the conformance suite needs the real `chaos` at {}: run ./scripts/test (it installs \
             chaostoolkit into .venv) or point CHAOSFLOW_CHAOS at a chaos executable",
            path.display()
        );
        path
    })
    .clone()
}

/// The conformance cases directory.
pub fn cases() -> PathBuf {
    repo().join("tests/conformance")
}

/// What one command did.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard error.
    pub stderr: String,
    /// Standard output.
    pub stdout: String,
    /// The journal written, if any.
    pub journal: Option<Value>,
    /// The working directory it ran in (kept until the outcome is dropped).
    pub dir: tempfile::TempDir,
}

impl Outcome {
    /// The console lines at INFO and above, without timestamps and colours.
    pub fn console_lines(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter_map(|line| {
                let mut l = line;
                if let Some(rest) = l.strip_prefix("\u{1b}[") {
                    l = &rest[rest.find('m')? + 1..];
                }
                // "[YYYY-mm-dd HH:MM:SS LEVEL] message", the reset code after "]" on terminals.
                let (head, message) = l.strip_prefix('[')?.split_once(']')?;
                let level = head.rsplit(' ').next()?;
                let message = message.trim_start_matches("\u{1b}[39m");
                Some(format!(
                    "{level}: {}",
                    message.strip_prefix(' ').unwrap_or(message)
                ))
            })
            .collect()
    }

    /// The journal, which must exist.
    pub fn journal(&self) -> &Value {
        self.journal
            .as_ref()
            .unwrap_or_else(|| panic!("no journal was written; stderr:\n{}", self.stderr))
    }
}

/// A command line for chaos or chaosflow, run in a fresh directory.
pub struct Run {
    program: PathBuf,
    global: Vec<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Run {
    /// `chaosflow`.
    pub fn chaosflow() -> Self {
        Self::new(chaosflow_bin())
    }

    /// The real `chaos`.
    pub fn chaos() -> Self {
        let mut run = Self::new(chaos_bin());
        run.global.push("--no-version-check".into());
        run
    }

    fn new(program: PathBuf) -> Self {
        Self {
            program,
            global: vec!["--settings".into(), "/nonexistent/settings.yaml".into()],
            args: Vec::new(),
            env: vec![("CONFORMANCE_BASE_URL".into(), server::base_url())],
        }
    }

    /// Adds arguments after the global options.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Replaces the settings file.
    pub fn settings(mut self, path: &Path) -> Self {
        self.global[1] = path.display().to_string();
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The command, ready to run in `dir`.
    pub fn command(&self, dir: &Path) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.global)
            .args(&self.args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .env("PYTHONDONTWRITEBYTECODE", "1");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs to completion in a fresh directory.
    pub fn run(&self) -> Outcome {
        let dir = tempfile::tempdir().expect("a temp dir");
        let output = self
            .command(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program.display()));
        outcome(output, dir)
    }
}

/// Sends a signal (`TERM`, `INT`, `USR1`...) to a child with `kill`.
pub fn signal(child: &std::process::Child, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("kill (procps) is installed by scripts/setup-test-peers");
    assert!(status.success(), "kill -{signal} failed");
}

/// Builds an outcome from a finished process and its directory.
pub fn outcome(output: Output, dir: tempfile::TempDir) -> Outcome {
    let journal_path = dir.path().join("journal.json");
    let journal = std::fs::read_to_string(&journal_path)
        .ok()
        .map(|t| serde_json::from_str(&t).expect("the journal is JSON"));
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        journal,
        dir,
    }
}

/// Runs Debian's `openssl` in `dir` (test certificates).
fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl (Debian's openssl package) makes the test certificates");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A self-signed certificate for `127.0.0.1`, as `(cert.pem, key.pem)` in `dir`.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ],
    );
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// A private CA (`ca.pem`) and a certificate for `127.0.0.1` it signed (`cert.pem`, `key.pem`),
/// as organisations run their internal endpoints: `(ca, cert, key)` in `dir`.
pub fn ca_signed_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=chaosflow test CA",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "cert.csr",
        ],
    );
    std::fs::write(
        path("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "cert.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    );
    (path("ca.pem"), path("cert.pem"), path("key.pem"))
}

/// A TLS terminator on 127.0.0.1 in front of a plain TCP port (Python's `ssl`), offering the
/// ALPN protocols the server behind it speaks; stopped on drop.
pub struct TlsProxy {
    child: std::process::Child,
    /// The port to connect to with TLS.
    pub port: u16,
    /// The private CA that signed its certificate (trust it with `REQUESTS_CA_BUNDLE`).
    pub ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsProxy {
    /// Terminates TLS and forwards every connection to `127.0.0.1:target`, which speaks
    /// `alpn` (`["h2"]` for gRPC, `["http/1.1"]`...).
    pub fn start(target: u16, alpn: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (ca, cert, key) = ca_signed_cert(dir.path());
        let script = r#"
import asyncio, ssl, sys
cert, key, target, alpn = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(alpn)
async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except Exception:
        pass
    finally:
        writer.close()
async def handle(reader, writer):
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        writer.close()
        return
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"#;
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(&cert)
            .arg(&key)
            .arg(target.to_string())
            .arg(alpn.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the TLS proxy");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("the TLS proxy prints its port");
        Self {
            child,
            port: line.trim().parse().expect("a port"),
            ca,
            _dir: dir,
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
