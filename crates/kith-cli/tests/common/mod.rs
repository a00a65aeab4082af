//! Starting the real `kith serve` for a test. kith listens on `127.0.0.1:0` and prints the
//! address the system gave it, so no test picks a port that another process can take first,
//! and every wait is bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The `kith` binary on `data_dir`, with nothing from the environment that would point it
/// elsewhere (a config file, a database URL, a listen address, a preset password).
pub fn kith(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("KITH_CONFIG")
        .env_remove("KITH_DATABASE_URL")
        .env_remove("KITH_LISTEN")
        .env_remove("KITH_USER_PASSWORD")
        .env("KITH_LOG", "warn");
    command
}

/// What `kith serve` prints once it accepts connections.
const LISTENING: &str = "kith is listening on http://";

/// How long a start may take on a slow, busy machine; only a hung start reaches it.
pub const START_WITHIN: Duration = Duration::from_secs(60);

/// A started `kith serve`.
pub struct Served {
    /// The process.
    pub child: Child,
    /// The port it listens on.
    pub port: u16,
    /// What it printed before listening (the first start's banner: keys, a password, a curl).
    pub banner: Vec<String>,
}

/// Spawns `command`, a kith command line ending in `serve`, on `127.0.0.1:0`, and waits for
/// the line that gives the address bound.
pub fn serve(mut command: Command) -> Served {
    command.args(["--listen", "127.0.0.1:0"]).stdout(Stdio::piped());
    let mut child = command.spawn().expect("start kith");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, lines) = mpsc::channel();
    // Reads stdout to its end (the process's exit), so that kith never writes into a closed pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let deadline = Instant::now() + START_WITHIN;
    let mut banner = Vec::new();
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => match line.strip_prefix(LISTENING) {
                Some(address) => {
                    let port = address.rsplit(':').next().and_then(|port| port.parse().ok());
                    let port = port.unwrap_or_else(|| panic!("no port in {line:?}"));
                    return Served { child, port, banner };
                }
                None => banner.push(line),
            },
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("kith did not report its address within {START_WITHIN:?}; it printed {banner:?}");
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("kith exited at start ({:?}); it printed {banner:?}", child.wait());
            }
        }
    }
}

/// Waits at most `within` for the process to exit.
pub fn wait(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("the process's status") {
            return status;
        }
        assert!(Instant::now() < deadline, "kith did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
