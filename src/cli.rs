//! The command line: `chaosflow run` and `chaosflow validate`, with `chaos`'s options;
//! `chaosflow settings`, `chaosflow sidecar` and `chaosflow crd`.
//!
//! Global options are accepted before or after the subcommand. Exit codes are `chaos`'s: 0
//! for a completed, non-deviated run or a valid experiment; 1 otherwise (invalid input, a run
//! that failed, aborted, was interrupted or deviated); 2 for a usage error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::events::{Emitter, Phase, Publisher, names};
use crate::experiment::config::{self, Env, ProcessEnv, Vars};
use crate::experiment::validate::{self, Report};
use crate::experiment::{Experiment, load};
use crate::journal::Status;
use crate::pipeline::Pipeline;
use crate::runner::{self, Dry, RunOptions, Strategy};
use crate::settings::Settings;
use crate::telemetry::{self, LogFormat, LogOptions};

/// Run Chaos Toolkit experiments, natively, with a structured event stream.
#[derive(Debug, Parser)]
#[command(name = "chaosflow", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Display debug level traces.
    #[arg(long, global = true)]
    verbose: bool,
    /// Accepted for compatibility with `chaos`; chaosflow never checks for updates.
    #[arg(long, global = true)]
    no_version_check: bool,
    /// Change directory before running the experiment.
    #[arg(long, global = true, value_name = "DIR")]
    change_dir: Option<PathBuf>,
    /// Disable logging to file entirely.
    #[arg(long, global = true)]
    no_log_file: bool,
    /// File path where to write the command's log (appended) [default: chaostoolkit.log; none
    /// for the sidecar, whose log is its console].
    #[arg(long, global = true, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// File logging level.
    #[arg(long, global = true, value_enum, default_value_t = FileLevel::Debug)]
    log_file_level: FileLevel,
    /// Console logging format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::String)]
    log_format: LogFormat,
    /// Path to the settings file [default: ~/.chaostoolkit/settings.yaml].
    #[arg(long, global = true, value_name = "PATH", env = "CHAOSFLOW_SETTINGS")]
    settings: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FileLevel {
    Debug,
    Info,
    Warning,
    Error,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the experiment loaded from SOURCE, a local JSON/YAML file or an http(s) URL.
    Run(RunArgs),
    /// Validate the experiment at SOURCE.
    Validate(ValidateArgs),
    /// Check or show the settings.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Follow a runner's events file and deliver its events to the settings' sinks, at least
    /// once (in a pod, next to `chaosflow run --delivery sidecar`).
    Sidecar(SidecarArgs),
    /// Print the ChaosToolkitExperiment CustomResourceDefinition (YAML), generated from
    /// chaosflow's types.
    Crd,
    /// Run the Kubernetes operator: ChaosToolkitExperiment resources become runner pods (or
    /// CronJobs) with the sidecar; their runs come back as status and events.
    Operator(OperatorArgs),
}

#[derive(Debug, Args)]
struct OperatorArgs {
    /// Watch only the experiments of this namespace [default: all namespaces].
    #[arg(long, value_name = "NS", env = "CHAOSFLOW_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Image of the runner and sidecar containers when an experiment names none [default: the
    /// operator's own pod's image].
    #[arg(long, value_name = "IMAGE", env = "CHAOSFLOW_RUNNER_IMAGE")]
    image: Option<String>,
    /// Serve `/metrics`, `/healthz` and `/readyz` on ADDR.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0:8080",
        env = "CHAOSFLOW_OPERATOR_LISTEN"
    )]
    listen: SocketAddr,
}

#[derive(Debug, Args)]
struct SidecarArgs {
    /// The runner's events file (its --events-path); waited for if it does not exist yet.
    #[arg(long, value_name = "PATH", env = "CHAOSFLOW_EVENTS")]
    events: PathBuf,
    /// Where to keep the delivery checkpoint [default: <events>.checkpoint].
    #[arg(long, value_name = "PATH")]
    checkpoint: Option<PathBuf>,
    /// Seconds between looks at the files when no file notification comes (network volumes).
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS", value_parser = positive_seconds)]
    poll_interval: f64,
    /// Answer health probes at ADDR: `GET /healthz` (alive), `GET /readyz` (sinks running).
    #[arg(long, value_name = "ADDR")]
    health_addr: Option<SocketAddr>,
    /// Do not use file notifications (inotify): only look every --poll-interval, for volumes
    /// whose notifications are missing or unreliable.
    #[arg(long)]
    no_notify: bool,
    /// Run as a Kubernetes native sidecar (an init container with `restartPolicy: Always`):
    /// stay after the stream ends, since the kubelet restarts a sidecar that exits, and on
    /// SIGTERM, which comes once the runner has ended, read the file to its end before the
    /// drain deadline.
    #[arg(long)]
    native_sidecar: bool,
}

/// Who delivers a run's events to the settings' sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Delivery {
    /// This process, in process.
    Process,
    /// A `chaosflow sidecar` following --events-path: this process starts no sink.
    Sidecar,
}

#[derive(Debug, Subcommand)]
enum SettingsCommand {
    /// Validate a settings file (default: --settings, $CHAOSFLOW_SETTINGS or
    /// ~/.chaostoolkit/settings.yaml) and report every problem.
    Check {
        /// The settings file to check.
        file: Option<PathBuf>,
    },
    /// Print the effective settings, secrets masked.
    Show,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Path where to save the journal from the execution.
    #[arg(long, default_value = "./journal.json", value_name = "PATH")]
    journal_path: PathBuf,
    /// Run the experiment without executing the chosen kind of activity (or pauses).
    #[arg(long, value_enum)]
    dry: Option<Dry>,
    /// Do not validate the experiment before running.
    #[arg(long)]
    no_validation: bool,
    /// Do not verify TLS certificates when loading SOURCE from a URL.
    #[arg(long)]
    no_verify_tls: bool,
    /// Rollback runtime strategy. Default is to never play them on interruption or failed
    /// hypothesis.
    #[arg(long, value_parser = ["default", "always", "never", "deviated"])]
    rollback_strategy: Option<String>,
    /// Substitution value for a configuration key, `key=value` or `key:type=value` with type
    /// str, int, float, bytes, bool or json. Repeatable.
    #[arg(long, value_name = "KEY[:TYPE]=VALUE", value_parser = parse_var)]
    var: Vec<(String, Value)>,
    /// JSON/YAML file of `configuration`/`secrets` values, or a .env file of environment
    /// variables. Repeatable; later files override earlier ones, --var overrides them all.
    #[arg(long, value_name = "FILE", value_parser = existing_file)]
    var_file: Vec<PathBuf>,
    /// Accepted for compatibility: control files hold Python controls, which chaosflow does
    /// not run.
    #[arg(long, value_name = "FILE", value_parser = existing_file)]
    control_file: Vec<PathBuf>,
    /// When to evaluate the steady-state hypothesis.
    #[arg(long, value_parser = [
        "default", "before-method-only", "after-method-only", "during-method-only",
        "continuously", "continously",
    ])]
    hypothesis_strategy: Option<String>,
    /// Seconds between two evaluations of the hypothesis (during-method-only, continuously).
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    hypothesis_frequency: f64,
    /// Fail the experiment as soon as the hypothesis deviates during the method.
    #[arg(long)]
    fail_fast: bool,
    /// Write the run's events as JSON Lines to PATH (appended; `-` for stdout).
    #[arg(long, value_name = "PATH", env = "CHAOSFLOW_EVENTS_PATH")]
    events_path: Option<PathBuf>,
    /// Write the run's outcome as one JSON object to PATH when it ends (in a pod:
    /// /dev/termination-log, which the operator reads back from the pod's status).
    #[arg(long, value_name = "PATH", env = "CHAOSFLOW_TERMINATION_LOG")]
    termination_log: Option<PathBuf>,
    /// Who delivers the events to the settings' sinks: this process, or a sidecar following
    /// --events-path (never both: every event would arrive twice).
    #[arg(long, value_enum, default_value_t = Delivery::Process, env = "CHAOSFLOW_DELIVERY")]
    delivery: Delivery,
    /// The experiment: a .json/.yaml/.yml file or an http(s) URL.
    source: String,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// Do not verify TLS certificates when loading SOURCE from a URL.
    #[arg(long)]
    no_verify_tls: bool,
    /// Write the validation's events as JSON Lines to PATH (appended; `-` for stdout).
    #[arg(long, value_name = "PATH")]
    events_path: Option<PathBuf>,
    /// The experiment: a .json/.yaml/.yml file or an http(s) URL.
    source: String,
}

fn parse_var(raw: &str) -> Result<(String, Value), String> {
    config::parse_var(raw)
}

fn positive_seconds(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("'{raw}' is not a positive number of seconds")),
    }
}

fn existing_file(raw: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(raw);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("File '{raw}' does not exist."))
    }
}

/// The environment as seen by the experiment: the process's, plus `.env` var files.
struct OverlayEnv {
    overlay: Arc<BTreeMap<String, String>>,
}

impl Env for OverlayEnv {
    fn get(&self, key: &str) -> Option<String> {
        self.overlay
            .get(key)
            .cloned()
            .or_else(|| ProcessEnv.get(key))
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    // One TLS provider for every client (ring); reqwest relies on the process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let global = &cli.global;
    let log_file = match (&global.log_file, &cli.command) {
        (Some(path), _) => Some(path.clone()),
        (None, Command::Sidecar(_) | Command::Crd | Command::Operator(_)) => None,
        (None, _) => Some(PathBuf::from("chaostoolkit.log")),
    };
    let log = LogOptions {
        verbose: global.verbose,
        format: global.log_format,
        file: log_file.clone().filter(|_| !global.no_log_file),
        file_level: match global.log_file_level {
            FileLevel::Debug => tracing::Level::DEBUG,
            FileLevel::Info => tracing::Level::INFO,
            FileLevel::Warning => tracing::Level::WARN,
            FileLevel::Error => tracing::Level::ERROR,
        },
    };
    if let Err(e) = telemetry::init(&log) {
        eprintln!(
            "chaosflow: cannot open log file {}: {e}",
            log_file.unwrap_or_default().display()
        );
        return ExitCode::FAILURE;
    }
    let command = match cli.command {
        Command::Run(_) => "run",
        Command::Validate(_) => "validate",
        Command::Settings(_) => "settings",
        Command::Sidecar(_) => "sidecar",
        Command::Crd => "crd",
        Command::Operator(_) => "operator",
    };
    let settings_path = match &cli.command {
        Command::Settings(SettingsCommand::Check { file: Some(file) }) => file.clone(),
        _ => global
            .settings
            .clone()
            .unwrap_or_else(Settings::default_path),
    };
    tracing::debug!("{}", "#".repeat(79));
    tracing::debug!("Running command '{command}'");
    tracing::debug!("Using settings file '{}'", settings_path.display());
    if let Some(dir) = &global.change_dir {
        tracing::warn!("Moving to {}", dir.display());
        if let Err(e) = std::env::set_current_dir(dir) {
            tracing::error!("Cannot change directory to {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    if let Command::Crd = &cli.command {
        print!("{}", crate::operator::crd::crd_yaml());
        return ExitCode::SUCCESS;
    }
    if let Command::Sidecar(args) = &cli.command {
        let checkpoint = args.checkpoint.clone().unwrap_or_else(|| {
            let mut path = args.events.clone().into_os_string();
            path.push(".checkpoint");
            PathBuf::from(path)
        });
        let options = crate::sidecar::Options {
            events: args.events.clone(),
            settings: settings_path,
            checkpoint,
            poll_interval: std::time::Duration::from_secs_f64(args.poll_interval),
            health: args.health_addr,
            notify: !args.no_notify,
            native: args.native_sidecar,
        };
        return ExitCode::from(crate::sidecar::run(&options));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("Cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Operator(args) = &cli.command {
        let options = crate::operator::Options {
            namespace: args.namespace.clone(),
            image: args.image.clone(),
            listen: args.listen,
        };
        // The operator needs no settings file: it runs before they are loaded.
        let code = runtime.block_on(crate::operator::run(&options));
        runtime.shutdown_background();
        return ExitCode::from(code);
    }
    let code = runtime.block_on(async {
        let settings = match Settings::load_for_use(&settings_path) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}");
                return 1;
            }
        };
        match cli.command {
            Command::Run(args) => run(args, &settings).await,
            Command::Sidecar(_) | Command::Crd | Command::Operator(_) => {
                unreachable!("handled before the runtime starts")
            }
            Command::Validate(args) => validate_command(args, &settings).await,
            Command::Settings(SettingsCommand::Show) => {
                print!("{}", settings.show());
                0
            }
            // Checked above: a file that loads is valid.
            Command::Settings(SettingsCommand::Check { .. }) => {
                println!(
                    "{}: valid, {} sink(s){}",
                    settings.path.display(),
                    settings.sinks.len(),
                    if settings.found {
                        ""
                    } else {
                        " (no file: embedded defaults)"
                    }
                );
                0
            }
        }
    });
    // Background tasks (children killed on drop) must not keep the process alive.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// A command's event stream: the emitter and the sinks it feeds.
struct Stream {
    emitter: Emitter,
    pipeline: Pipeline,
}

impl Stream {
    /// Starts the settings' sinks and opens the events file.
    fn open(path: Option<&Path>, settings: &Settings, deliver: bool) -> Result<Self, u8> {
        let mut publisher = Publisher::new();
        let sinks = if deliver { &settings.sinks[..] } else { &[] };
        let pipeline = Pipeline::start(sinks, &mut publisher, settings.pipeline).map_err(|e| {
            tracing::error!(
                "Cannot start the sinks of {}: {e}.",
                settings.path.display()
            );
            1
        })?;
        let emitter = Emitter::new(path, publisher).map_err(|e| {
            let shown = path.map(|p| p.display().to_string()).unwrap_or_default();
            tracing::error!("Cannot open the events file {shown}: {e}");
            1
        })?;
        Ok(Self { emitter, pipeline })
    }

    /// Ends the stream, lets the sinks drain, reports, and returns the exit code.
    fn end(
        self,
        phase: Phase,
        status: &str,
        deviated: bool,
        exit_code: u8,
        journal_path: Option<&Path>,
    ) -> u8 {
        let emitter = self.emitter;
        emitter.emit(
            names::STREAM_ENDED,
            phase,
            json!({
                "status": status,
                "deviated": deviated,
                "exit_code": exit_code,
                "events": emitter.count() + 1,
                "journal_path": journal_path.map(|p| p.display().to_string()),
            }),
            None,
        );
        emitter.sync();
        let lost = emitter.write_errors();
        if lost > 0 {
            tracing::error!(
                lost,
                "{lost} events could not be written to the events file."
            );
        }
        emitter.close();
        if !self.pipeline.is_empty() {
            for summary in self.pipeline.shutdown() {
                if summary.failed + summary.dropped + summary.undelivered > 0 {
                    tracing::warn!("{summary}");
                } else {
                    tracing::info!("{summary}");
                }
            }
        }
        exit_code
    }
}

/// Loads SOURCE with the loader's credentials; the error is logged and returned as text.
async fn load_source(
    source: &str,
    no_verify_tls: bool,
    settings: &Settings,
) -> Result<load::Loaded, String> {
    let authorization = loader_authorization(source, settings);
    load::load(source, !no_verify_tls, authorization)
        .await
        .map_err(|e| {
            tracing::error!("{e}");
            e.to_string()
        })
}

/// `Authorization` for an experiment URL: `CHAOSTOOLKIT_LOADER_AUTH_BEARER_TOKEN`, else the
/// settings' `auths:` entry for the URL's `host[:port]`.
fn loader_authorization(source: &str, settings: &Settings) -> Option<String> {
    if let Ok(token) = std::env::var("CHAOSTOOLKIT_LOADER_AUTH_BEARER_TOKEN")
        && !token.trim().is_empty()
    {
        crate::redact::global().register(&[Value::String(token.trim().to_owned())]);
        return Some(format!("bearer {}", token.trim()));
    }
    let url = url::Url::parse(source).ok()?;
    let mut netloc = url.host_str()?.to_owned();
    if let Some(port) = url.port() {
        netloc.push_str(&format!(":{port}"));
    }
    settings.authorization_for(&netloc)
}

/// Masks the experiment's secrets (and var files' secret overrides) from here on.
fn register_secrets(document: &Value, vars: &Vars, env: &dyn Env) {
    let mut values = config::declared_secret_values(document.get("secrets"), env);
    values.extend(vars.secrets.values().cloned());
    crate::redact::global().register(&values);
}

fn log_report(source: &str, report: &Report) {
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    for problem in &report.problems {
        tracing::error!("{source}: {problem}");
    }
}

fn report_error(source: &str, report: &Report) -> String {
    report
        .problems
        .iter()
        .map(|p| format!("{source}: {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn run(args: RunArgs, settings: &Settings) -> u8 {
    if args.delivery == Delivery::Sidecar {
        match args.events_path.as_deref() {
            Some(p) if p.as_os_str() != "-" => tracing::debug!(
                "The events go to {} for the sidecar, which delivers them to the sinks.",
                p.display()
            ),
            _ => {
                tracing::error!(
                    "--delivery sidecar needs --events-path FILE: the sidecar follows that file."
                );
                return 2;
            }
        }
    }
    let mut deliver = args.delivery == Delivery::Process;
    if let Some(path) = args.events_path.as_deref().filter(|p| p.as_os_str() != "-") {
        let claim = crate::sidecar::claim_path(path);
        if deliver && !settings.sinks.is_empty() && claim.exists() {
            tracing::warn!(
                "A sidecar delivers the events of {} ({} exists): the sinks of {} are left to it, so that no event arrives twice. Use --delivery sidecar to say so, or remove the claim if no sidecar runs.",
                path.display(),
                claim.display(),
                settings.path.display()
            );
            deliver = false;
        }
    }
    let stream = match Stream::open(args.events_path.as_deref(), settings, deliver) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let executed = execute(&args, settings, &stream.emitter).await;
    // The run is over (the journal is written): its Python, if it had one, ends now.
    crate::extensions::bridge::close_all(Duration::from_secs(2)).await;
    let (code, outcome) = match executed {
        Ok(ended) => {
            let code = stream.end(
                Phase::Run,
                ended.status.as_str(),
                ended.deviated,
                ended.exit_code,
                Some(&args.journal_path),
            );
            (code, ended.outcome)
        }
        Err(Invalid { error, payload }) => {
            let outcome =
                json!({"status": "invalid", "deviated": false, "exitCode": 1, "error": error});
            stream
                .emitter
                .emit(names::RUN_INVALID, Phase::Run, payload, Some(error));
            (stream.end(Phase::Run, "invalid", false, 1, None), outcome)
        }
    };
    if let Some(path) = &args.termination_log {
        write_termination_log(path, &outcome);
    }
    code
}

/// Kubernetes keeps at most this much of a termination message.
const TERMINATION_LOG_MAX: usize = 4096;

/// Writes the run's outcome for whoever reads the pod's status (the operator). A failure is
/// reported and leaves the exit code alone: the run itself is over and recorded.
fn write_termination_log(path: &Path, outcome: &Value) {
    let mut text = outcome.to_string();
    if text.len() > TERMINATION_LOG_MAX {
        // Only an error message can make it long; keep the verdict whole.
        let mut short = outcome.clone();
        short["error"] = Value::String("(too long for a termination message; see the log)".into());
        text = short.to_string();
    }
    if let Err(e) = std::fs::write(path, text) {
        tracing::error!("Cannot write the termination log {}: {e}", path.display());
    }
}

/// The outcome of a run, as `--termination-log` writes it: the journal's status and
/// deviation, the exit code, times, and the activities run and failed.
fn outcome(journal: &crate::journal::Journal, exit_code: u8, journal_path: &Path) -> Value {
    use crate::journal::ItemStatus;
    let items = journal.run.iter().chain(&journal.rollbacks);
    let failed = items
        .clone()
        .filter(|i| i.status == Some(ItemStatus::Failed))
        .count();
    let met = |s: &Option<crate::journal::SteadyState>| s.as_ref().and_then(|s| s.steady_state_met);
    json!({
        "status": journal.status.map(|s| s.as_str()),
        "deviated": journal.deviated,
        "exitCode": exit_code,
        "start": journal.start,
        "end": journal.end,
        "activities": items.count(),
        "failed": failed,
        "hypothesisBefore": met(&journal.steady_states.before),
        "hypothesisAfter": met(&journal.steady_states.after),
        "journalPath": journal_path.display().to_string(),
    })
}

/// How a run ended.
struct Ended {
    /// What `--termination-log` writes.
    outcome: Value,
    status: Status,
    deviated: bool,
    exit_code: u8,
}

/// Input that stopped a run before it started: the error and the experiment, if loaded.
struct Invalid {
    error: String,
    payload: Value,
}

fn invalid(error: String, payload: Value) -> Invalid {
    Invalid { error, payload }
}

/// Loads, validates, configures and runs the experiment, then writes the journal.
async fn execute(args: &RunArgs, settings: &Settings, emitter: &Emitter) -> Result<Ended, Invalid> {
    // Variables: var files in order, then --var.
    let mut vars = Vars::default();
    let mut overlay = BTreeMap::new();
    for path in &args.var_file {
        tracing::debug!("Loading var from file '{}'", path.display());
        match config::read_var_file(path) {
            Ok(file) => {
                vars.configuration.extend(file.vars.configuration);
                vars.secrets.extend(file.vars.secrets);
                for (k, v) in file.env {
                    tracing::debug!(
                        "Inject environment variable '{k}' from file '{}'",
                        path.display()
                    );
                    overlay.insert(k, v);
                }
            }
            Err(e) => {
                tracing::error!("{e}");
                return Err(invalid(e, Value::Null));
            }
        }
    }
    for (k, v) in &args.var {
        tracing::debug!("Using configuration variable '{k}'");
        vars.configuration.insert(k.clone(), v.clone());
    }
    if !args.control_file.is_empty() {
        tracing::warn!(
            "Control files hold Python controls, which chaosflow does not run; ignoring them."
        );
    }
    let overlay = Arc::new(overlay);
    let env = OverlayEnv {
        overlay: overlay.clone(),
    };

    let loaded = match load_source(&args.source, args.no_verify_tls, settings).await {
        Ok(l) => l,
        Err(e) => return Err(invalid(e, Value::Null)),
    };
    register_secrets(&loaded.document, &vars, &env);
    emitter.emit(
        names::RUN_STARTED,
        Phase::Run,
        loaded.document.clone(),
        None,
    );

    if !args.no_validation {
        tracing::info!("Validating the experiment's syntax");
        let report = validate::validate(&loaded.document, &vars, &env);
        log_report(&loaded.source, &report);
        if !report.is_valid() {
            return Err(invalid(
                report_error(&loaded.source, &report),
                loaded.document,
            ));
        }
        tracing::info!("Experiment looks valid");
    }
    let Some(experiment) = Experiment::new(loaded.document.clone()) else {
        let error = format!("{}: an experiment must be a mapping", loaded.source);
        tracing::error!("{error}");
        return Err(invalid(error, loaded.document));
    };

    // Strategies: settings < experiment runtime (which resets both) < command line.
    let (settings_problems, settings_warnings) =
        validate::check_runtime_block(settings.runtime(), "runtime");
    for w in settings_warnings {
        tracing::warn!("{}: {w}", settings.path.display());
    }
    if let Some(problem) = settings_problems.first() {
        let error = format!("{}: {problem}", settings.path.display());
        tracing::error!("{error}");
        return Err(invalid(error, loaded.document));
    }
    let (mut hypothesis, mut rollbacks) = (
        settings
            .runtime_strategy("hypothesis")
            .unwrap_or_else(|| "default".into()),
        settings
            .runtime_strategy("rollbacks")
            .unwrap_or_else(|| "default".into()),
    );
    if let Some(runtime) = experiment
        .doc
        .get("runtime")
        .filter(|r| crate::python::truthy(r))
    {
        let pick = |section: &str| {
            runtime
                .get(section)
                .and_then(|s| s.get("strategy"))
                .map_or_else(|| "default".to_owned(), crate::python::to_str)
        };
        hypothesis = pick("hypothesis");
        rollbacks = pick("rollbacks");
    }
    if let Some(h) = args.hypothesis_strategy.clone() {
        hypothesis = h;
    }
    if let Some(r) = args.rollback_strategy.clone() {
        rollbacks = r;
    }
    tracing::debug!("Runtime strategies: hypothesis - {hypothesis} / rollbacks - {rollbacks}");
    if hypothesis == "continously" {
        tracing::warn!(
            "\nThe \"--hypothesis-strategy=continously\" command is depreciating and will be \
             removed in a future version\nInstead, please use \"--hypothesis-strategy=continuously\""
        );
    }
    let Some(strategy) = Strategy::parse(&hypothesis) else {
        let error = format!("unknown hypothesis strategy '{hypothesis}'");
        tracing::error!("{error}");
        return Err(invalid(error, loaded.document));
    };

    let scope = match runner::configure(&experiment, &vars, &env, &overlay).await {
        Ok(scope) => scope,
        Err(e) => {
            let error = format!("{}: {e}", loaded.source);
            tracing::error!("{error}");
            return Err(invalid(error, loaded.document));
        }
    };
    let options = RunOptions {
        dry: args.dry,
        strategy,
        rollback_strategy: rollbacks,
        hypothesis_frequency: args.hypothesis_frequency,
        fail_fast: args.fail_fast,
        traceparent: settings
            .sinks
            .iter()
            .any(|s| matches!(s.config, crate::pipeline::SinkConfig::Otlp(_))),
    };
    let journal = runner::run(experiment, scope, overlay, options, emitter.clone()).await;

    let status = journal.status.unwrap_or(Status::Completed);
    let mut exit = u8::from(status != Status::Completed || journal.deviated);
    let journal_value = journal.to_value();
    if let Err(e) = crate::journal::write(&journal_value, &args.journal_path) {
        tracing::error!(
            "Cannot write the journal to {}: {e}",
            args.journal_path.display()
        );
        exit = 1;
    }
    let flow = if status == Status::Completed {
        names::RUN_COMPLETED
    } else {
        names::RUN_FAILED
    };
    if journal.deviated {
        emitter.emit(flow, Phase::Run, journal_value.clone(), None);
        emitter.emit(names::RUN_DEVIATED, Phase::Run, journal_value, None);
    } else {
        emitter.emit(flow, Phase::Run, journal_value, None);
    }
    Ok(Ended {
        outcome: outcome(&journal, exit, &args.journal_path),
        status,
        deviated: journal.deviated,
        exit_code: exit,
    })
}

async fn validate_command(args: ValidateArgs, settings: &Settings) -> u8 {
    let stream = match Stream::open(args.events_path.as_deref(), settings, true) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let emitter = stream.emitter.clone();
    let loaded = match load_source(&args.source, args.no_verify_tls, settings).await {
        Ok(l) => l,
        Err(e) => {
            emitter.emit(
                names::VALIDATE_FAILED,
                Phase::Validate,
                Value::Null,
                Some(e),
            );
            return stream.end(Phase::Validate, "invalid", false, 1, None);
        }
    };
    register_secrets(&loaded.document, &Vars::default(), &ProcessEnv);
    emitter.emit(
        names::VALIDATE_STARTED,
        Phase::Validate,
        loaded.document.clone(),
        None,
    );
    tracing::info!("Validating the experiment's syntax");
    let report = validate::validate(&loaded.document, &Vars::default(), &ProcessEnv);
    log_report(&loaded.source, &report);
    if !report.is_valid() {
        emitter.emit(
            names::VALIDATE_FAILED,
            Phase::Validate,
            loaded.document,
            Some(report_error(&loaded.source, &report)),
        );
        return stream.end(Phase::Validate, "invalid", false, 1, None);
    }
    tracing::info!("Experiment looks valid");
    emitter.emit(
        names::VALIDATE_COMPLETED,
        Phase::Validate,
        loaded.document,
        None,
    );
    tracing::info!("experiment syntax and semantic look valid");
    stream.end(Phase::Validate, "valid", false, 0, None)
}
