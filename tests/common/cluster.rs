//! A private 3-node RabbitMQ cluster for the cluster tests (scripts/rabbitmq-cluster), and
//! what the tests do to its nodes: kill one's Erlang VM, boot it again, stop and start its
//! RabbitMQ application, read which node leads a quorum queue. Tests that use it run one
//! at a time (a process-wide lock): a cluster is heavy on a small machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use tokio::sync::{Mutex, MutexGuard};

/// Held while a cluster runs: one cluster at a time per test binary.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A running 3-node cluster, stopped and deleted when dropped.
pub struct Cluster {
    /// scripts/rabbitmq-cluster's DIR.
    dir: PathBuf,
    /// Each node's `amqp://` URL.
    pub urls: Vec<String>,
    /// Each node's data directory (scripts/rabbitmq's DIR).
    pub node_dirs: Vec<PathBuf>,
    /// Each node's Erlang node name.
    pub names: Vec<String>,
    _turn: MutexGuard<'static, ()>,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

impl Cluster {
    /// Boots the cluster, once no other test of the binary runs one; fails with
    /// instructions when it cannot. Blocking: call it off the actix thread (`blocking`).
    pub fn start() -> Self {
        let turn = ONE_AT_A_TIME.blocking_lock();
        let dir = std::env::temp_dir().join(format!(
            "celeriac-cluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let output = Command::new(script("rabbitmq-cluster"))
            .arg("start")
            .arg(&dir)
            .output()
            .expect("scripts/rabbitmq-cluster runs");
        if !output.status.success() {
            let _ = Command::new(script("rabbitmq-cluster"))
                .arg("stop")
                .arg(&dir)
                .status();
            panic!(
                "could not start a 3-node RabbitMQ cluster with scripts/rabbitmq-cluster (needs \
                 Debian's rabbitmq-server: scripts/test installs it; about 1 GB of free memory; \
                 try `scripts/rabbitmq-cluster start /tmp/c` by hand, and `scripts/rabbitmq-cluster \
                 stop /tmp/c`): {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let env = String::from_utf8_lossy(&output.stdout).into_owned();
        let value = |name: &str| {
            env.lines()
                .find_map(|line| line.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} in the cluster's env:\n{env}"))
                .to_string()
        };
        let urls = value("CELERIAC_TEST_CLUSTER_URL")
            .split(';')
            .map(str::to_string)
            .collect();
        let node_dirs = value("CELERIAC_TEST_CLUSTER_NODE_DIRS")
            .split(':')
            .map(PathBuf::from)
            .collect();
        let names = value("CELERIAC_TEST_CLUSTER_NODES")
            .split(' ')
            .map(str::to_string)
            .collect();
        Cluster {
            dir,
            urls,
            node_dirs,
            names,
            _turn: turn,
        }
    }

    /// The failover list of all three nodes with node `first` first, then the others in
    /// order: a client given it connects to `first`.
    pub fn url_from(&self, first: usize) -> String {
        let n = self.urls.len();
        (0..n)
            .map(|k| self.urls[(first + k) % n].as_str())
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Runs `rabbitmqctl args` on node `node`; answers its output, fails with its error.
    /// Blocking: call it off the actix thread (`blocking`).
    pub fn ctl(&self, node: usize, args: &[&str]) -> String {
        super::node_ctl(&self.node_dirs[node], args)
    }

    /// Runs `scripts/rabbitmq <command> <node's dir>`, failing with its error.
    fn node_command(&self, command: &str, node: usize) {
        let output = Command::new(script("rabbitmq"))
            .arg(command)
            .arg(&self.node_dirs[node])
            .output()
            .expect("scripts/rabbitmq runs");
        assert!(
            output.status.success(),
            "scripts/rabbitmq {command} on node {} failed: {}",
            self.names[node],
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// SIGKILLs node `node`'s Erlang VM and waits until it is gone (blocking).
    pub fn kill(&self, node: usize) {
        self.node_command("kill", node);
    }

    /// Boots node `node` again after `kill`, and waits until it runs (blocking).
    pub fn boot(&self, node: usize) {
        self.node_command("boot", node);
    }

    /// The nodes the cluster runs, as node `asked` sees them (blocking).
    pub fn running_nodes(&self, asked: usize) -> usize {
        let status = self.ctl(asked, &["cluster_status", "--formatter", "json"]);
        let status: serde_json::Value =
            serde_json::from_str(&status).expect("cluster_status answers JSON");
        status["running_nodes"].as_array().map_or(0, Vec::len)
    }

    /// The index of the node that leads quorum queue `queue`, as node `asked` sees it
    /// (blocking).
    pub fn leader_of(&self, queue: &str, asked: usize) -> Option<usize> {
        let listing = self.ctl(
            asked,
            &["list_queues", "-q", "--no-table-headers", "name", "leader"],
        );
        listing.lines().find_map(|line| {
            let (name, leader) = line.split_once('\t')?;
            (name == queue)
                .then(|| self.names.iter().position(|node| node == leader.trim()))
                .flatten()
        })
    }

    /// `(ready, unacked)` of `queue` as node `asked` sees it ((0, 0) when it is missing;
    /// blocking).
    pub fn queue_counts(&self, queue: &str, asked: usize) -> (u64, u64) {
        let listing = self.ctl(
            asked,
            &[
                "list_queues",
                "-q",
                "--no-table-headers",
                "name",
                "messages_ready",
                "messages_unacknowledged",
            ],
        );
        listing
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                match fields[..] {
                    [name, ready, unacked] if name == queue => Some((
                        ready.trim().parse().expect("a count"),
                        unacked.trim().parse().expect("a count"),
                    )),
                    _ => None,
                }
            })
            .unwrap_or((0, 0))
    }
}

/// Runs blocking `work` (rabbitmqctl) on a thread of its own, so that the actix system (the
/// workers of the test) keeps running however long it takes.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    actix_rt::task::spawn_blocking(work)
        .await
        .expect("the blocking thread")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script("rabbitmq-cluster"))
            .arg("stop")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
