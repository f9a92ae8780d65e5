//! A cluster of N nodes on one machine for tests: each node has its own
//! network, mount and UTS namespace (a holder process keeps them), with
//! /etc and /var/lib overlaid on the host's and a private /run, a real
//! corosync, and a pmxcfs on the default paths (/etc/pve,
//! /var/lib/pve-cluster, /etc/corosync/corosync.conf, /run/pve-cluster).
//!
//! The daemon's command per node comes from `PMXCFS_NODE<N>_CMD` (default:
//! this project's binary), and only `-f` and the default paths are assumed,
//! so the same scenarios can run with some nodes on another pmxcfs.
//! Namespaces and state directories carry a unique prefix per cluster; only
//! processes started here are stopped, by their PID.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct ClusterNode {
    pub id: u32,
    pub dir: PathBuf,
    holder: Child,
    corosync: Option<Child>,
    pmxcfs: Option<Child>,
}

pub struct Cluster {
    pub prefix: String,
    pub base: PathBuf,
    pub nodes: Vec<ClusterNode>,
    /// Extra arguments for this project's daemon (test options); not given
    /// to a daemon from `PMXCFS_NODE<N>_CMD`.
    pub extra_args: Vec<String>,
    /// Every corosync started here: a corosync that is killed leaves its
    /// libqb files in /dev/shm (named after its PID), removed at the end.
    corosync_pids: Vec<u32>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn hostname(id: u32) -> String {
    format!("testnode{id}")
}

fn addr(id: u32) -> String {
    format!("10.99.0.{id}")
}

/// The totem crypto lines of the default test cluster (clear traffic).
pub const NO_CRYPTO: &str = "  crypto_cipher: none\n  crypto_hash: none\n";

pub fn corosync_conf(n: u32, cluster: &str) -> String {
    corosync_conf_with(n, cluster, NO_CRYPTO)
}

/// `totem_lines`: the crypto (and any other) totem settings, each line
/// indented by two spaces and ending in a newline.
pub fn corosync_conf_with(n: u32, cluster: &str, totem_lines: &str) -> String {
    let mut nodes = String::new();
    for i in 1..=n {
        nodes.push_str(&format!(
            "  node {{\n    name: {}\n    nodeid: {i}\n    quorum_votes: 1\n    ring0_addr: {}\n  }}\n",
            hostname(i),
            addr(i)
        ));
    }
    format!(
        "logging {{\n  debug: off\n  to_stderr: no\n  to_syslog: no\n  to_logfile: yes\n  logfile: /run/corosync.log\n}}\n\n\
         nodelist {{\n{nodes}}}\n\n\
         quorum {{\n  provider: corosync_votequorum\n}}\n\n\
         system {{\n  move_to_root_cgroup: no\n  sched_rr: no\n  state_dir: /run\n}}\n\n\
         totem {{\n  cluster_name: {cluster}\n  config_version: 1\n{totem_lines}  interface {{\n    linknumber: 0\n  }}\n  ip_version: ipv4\n  link_mode: passive\n  token: 1000\n  transport: knet\n  version: 2\n}}\n"
    )
}

/// Cluster tests create network and mount namespaces, run corosync and
/// mount FUSE: they need root.
pub fn require_root() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "cluster tests need root (network and mount namespaces, corosync, /dev/fuse)"
    );
}

/// A corosync authkey of 256 bytes, the same for the same `seed`
/// (xorshift32).
pub fn authkey(seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..256)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

impl Cluster {
    /// Build the network and the nodes' namespaces, write the configs; no
    /// process of the cluster runs yet.
    pub fn new(tag: &str, n: u32) -> Cluster {
        Cluster::new_with(tag, n, NO_CRYPTO, None)
    }

    /// `n` nodes started, each seeing all of them online.
    pub fn formed(tag: &str, n: u32) -> Cluster {
        let mut c = Cluster::new(tag, n);
        c.start_all();
        let online = format!("test $(grep -c '\"online\": 1' /etc/pve/.members) -eq {n}");
        for id in 1..=n {
            c.wait_for(id, &format!("{n} members online"), &online, 60);
        }
        c
    }

    /// A cluster whose corosync.conf carries `totem_lines` (crypto,
    /// compression) and whose nodes share `authkey`.
    pub fn new_with(tag: &str, n: u32, totem_lines: &str, authkey: Option<&[u8]>) -> Cluster {
        Cluster::build(tag, n, totem_lines, authkey, false)
    }

    /// A cluster whose nodes can install packages: /usr and all of /var
    /// are overlaid too, and /root is a private tmpfs. Its traffic is
    /// encrypted as on Proxmox VE (aes256/sha256, a shared authkey).
    pub fn new_for_packages(tag: &str, n: u32) -> Cluster {
        let key: Vec<u8> = (0..256u32).map(|i| (i * 31 + 17) as u8).collect();
        Cluster::build(
            tag,
            n,
            "  crypto_cipher: aes256\n  crypto_hash: sha256\n",
            Some(&key),
            true,
        )
    }

    fn build(
        tag: &str,
        n: u32,
        totem_lines: &str,
        authkey: Option<&[u8]>,
        whole_system: bool,
    ) -> Cluster {
        let prefix = format!("px{}{}", tag, std::process::id() % 100_000);
        let base = std::env::temp_dir().join(format!("pmxcfs-cluster-{prefix}"));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let br = format!("{prefix}br");
        ip(&["netns", "add", &br]);
        ip(&["-n", &br, "link", "set", "lo", "up"]);
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        let mut nodes = Vec::new();
        for id in 1..=n {
            let ns = format!("{prefix}n{id}");
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "link",
                "add",
                &format!("v{id}"),
                "netns",
                &br,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &ns,
            ]);
            ip(&[
                "-n",
                &br,
                "link",
                "set",
                &format!("v{id}"),
                "master",
                "br0",
                "up",
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", addr(id)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            let dir = base.join(format!("n{id}"));
            for d in [
                "etc/corosync",
                "etcwork",
                "varlib",
                "varlibwork",
                "usr",
                "usrwork",
                "var",
                "varwork",
            ] {
                fs::create_dir_all(dir.join(d)).unwrap();
            }
            let mut hosts = String::from("127.0.0.1 localhost\n");
            for i in 1..=n {
                hosts.push_str(&format!("{} {}\n", addr(i), hostname(i)));
            }
            fs::write(dir.join("etc/hosts"), hosts).unwrap();
            fs::write(dir.join("etc/hostname"), format!("{}\n", hostname(id))).unwrap();
            fs::write(
                dir.join("etc/corosync/corosync.conf"),
                corosync_conf_with(n, &prefix, totem_lines),
            )
            .unwrap();
            if let Some(key) = authkey {
                use std::os::unix::fs::PermissionsExt;
                let path = dir.join("etc/corosync/authkey");
                fs::write(&path, key).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
            }
            let var = if whole_system {
                "mount -t overlay overlay -o lowerdir=/var,upperdir={d}/var,workdir={d}/varwork /var; \
                 mount -t overlay overlay -o lowerdir=/usr,upperdir={d}/usr,workdir={d}/usrwork /usr; \
                 mount -t tmpfs tmpfs /root;"
            } else {
                "mount -t overlay overlay -o lowerdir=/var/lib,upperdir={d}/varlib,workdir={d}/varlibwork /var/lib;"
            }
            .replace("{d}", &dir.display().to_string());
            let setup = format!(
                "set -e; mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/etc,workdir={d}/etcwork /etc; \
                 {var} mount -t tmpfs tmpfs /run; hostname {h}; echo ready; exec sleep infinity",
                d = dir.display(),
                h = hostname(id)
            );
            let mut holder = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns,
                    "unshare",
                    "-m",
                    "-u",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    &setup,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            // Wait for the mounts.
            let mut out = holder.stdout.take().unwrap();
            let mut buf = [0u8; 6];
            use std::io::Read;
            out.read_exact(&mut buf).expect("holder set up");
            nodes.push(ClusterNode {
                id,
                dir,
                holder,
                corosync: None,
                pmxcfs: None,
            });
        }
        Cluster {
            prefix,
            base,
            nodes,
            extra_args: Vec::new(),
            corosync_pids: Vec::new(),
        }
    }

    fn node(&self, id: u32) -> &ClusterNode {
        &self.nodes[id as usize - 1]
    }

    fn node_mut(&mut self, id: u32) -> &mut ClusterNode {
        &mut self.nodes[id as usize - 1]
    }

    /// A command inside node `id`'s namespaces.
    pub fn command(&self, id: u32, program: &str) -> Command {
        let holder = self.holder_pid(id);
        let mut c = Command::new("nsenter");
        c.args(["-t", &holder.to_string(), "-m", "-u", "-n", "--", program]);
        c
    }

    /// The `sleep` inside the holder's shell (the shell `exec`s it).
    fn holder_pid(&self, id: u32) -> u32 {
        self.node(id).holder.id()
    }

    /// The pid of node `id`'s corosync (nsenter executes it in place).
    pub fn corosync_pid(&self, id: u32) -> Option<u32> {
        self.node(id).corosync.as_ref().map(Child::id)
    }

    /// Wait at most `limit` for node `id`'s pmxcfs to exit on its own;
    /// how long it took, or `None` (it is then killed).
    pub fn wait_pmxcfs_exit(&mut self, id: u32, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut c = self.node_mut(id).pmxcfs.take()?;
        while started.elapsed() < limit {
            if c.try_wait().unwrap().is_some() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// The pid of node `id`'s pmxcfs (nsenter executes it in place).
    pub fn pmxcfs_pid(&self, id: u32) -> Option<u32> {
        self.node(id).pmxcfs.as_ref().map(Child::id)
    }

    /// Node `id`'s /etc/pve seen from outside its namespaces (through its
    /// holder's root): file operations from this process, without a
    /// process started per operation.
    pub fn etc_pve(&self, id: u32) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/etc/pve", self.holder_pid(id)))
    }

    /// Run a shell command on a node.
    pub fn sh(&self, id: u32, script: &str) -> Output {
        self.command(id, "sh")
            .args(["-c", script])
            .output()
            .unwrap()
    }

    pub fn start_corosync(&mut self, id: u32) {
        let child = self
            .command(id, "corosync")
            .arg("-f")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.corosync_pids.push(child.id());
        self.node_mut(id).corosync = Some(child);
    }

    pub fn start_pmxcfs(&mut self, id: u32) {
        let (cmd, extra) = match std::env::var(format!("PMXCFS_NODE{id}_CMD")) {
            Ok(cmd) => (cmd, Vec::new()),
            Err(_) => (
                option_env!("CARGO_BIN_EXE_pmxcfs")
                    .expect("this project's pmxcfs binary (tests of the root package)")
                    .to_string(),
                self.extra_args.clone(),
            ),
        };
        // One log per node; a restarted daemon's lines follow the earlier
        // ones.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node(id).dir.join("pmxcfs.log"))
            .unwrap();
        let child = self
            .command(id, &cmd)
            .env("PMXCFS_METRICS_FILE", self.metrics_file(id))
            .arg("-f")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.node_mut(id).pmxcfs = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.sh(id, "test -e /etc/pve/.version").status.success() {
            assert!(
                Instant::now() < deadline,
                "pmxcfs on node {id} did not mount: {}",
                self.log(id)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where node `id`'s daemon writes its metrics (every 5 s).
    pub fn metrics_file(&self, id: u32) -> PathBuf {
        self.node(id).dir.join("metrics.prom")
    }

    /// Wait until node `id`'s metrics satisfy `ok` (a sample's value by
    /// its series, e.g. `pmxcfs_quorate` or `x_total{group="dcdb"}`).
    pub fn wait_metrics(&self, id: u32, what: &str, ok: impl Fn(&dyn Fn(&str) -> f64) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = fs::read_to_string(self.metrics_file(id)).unwrap_or_default();
            let sample = |series: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN)
            };
            if ok(&sample) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id}'s metrics: {what}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn log(&self, id: u32) -> String {
        fs::read_to_string(self.node(id).dir.join("pmxcfs.log")).unwrap_or_default()
    }

    /// SIGTERM the node's pmxcfs and wait.
    pub fn stop_pmxcfs(&mut self, id: u32) {
        if let Some(mut c) = self.node_mut(id).pmxcfs.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.wait();
        }
    }

    /// SIGKILL the node's pmxcfs (no clean-up), and clear its dead mount.
    pub fn kill_pmxcfs(&mut self, id: u32) {
        if let Some(mut c) = self.node_mut(id).pmxcfs.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.sh(id, "umount -l /etc/pve");
    }

    pub fn stop_corosync(&mut self, id: u32) {
        if let Some(mut c) = self.node_mut(id).corosync.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL the node's corosync: the node fails without a goodbye.
    pub fn kill_corosync(&mut self, id: u32) {
        if let Some(mut c) = self.node_mut(id).corosync.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A command in the bridge's network namespace (for packet captures).
    pub fn bridge_command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}br", self.prefix), program]);
        c
    }

    /// Cut node `id` off the network (its link on the bridge goes down).
    pub fn cut(&self, id: u32) {
        ip(&[
            "-n",
            &format!("{}br", self.prefix),
            "link",
            "set",
            &format!("v{id}"),
            "down",
        ]);
    }

    pub fn heal(&self, id: u32) {
        ip(&[
            "-n",
            &format!("{}br", self.prefix),
            "link",
            "set",
            &format!("v{id}"),
            "up",
        ]);
    }

    /// Wait until `cond` holds on node `id` (a shell test), or fail.
    pub fn wait_for(&self, id: u32, what: &str, script: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.sh(id, script).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id}: {what} not reached in {secs} s\n{}",
                self.log(id)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Start corosync everywhere, wait for quorum, then pmxcfs everywhere.
    pub fn start_all(&mut self) {
        self.start_corosync_all();
        for id in 1..=self.nodes.len() as u32 {
            self.start_pmxcfs(id);
        }
    }

    /// Start every node's corosync and wait until each is quorate.
    pub fn start_corosync_all(&mut self) {
        let n = self.nodes.len() as u32;
        for id in 1..=n {
            self.start_corosync(id);
        }
        for id in 1..=n {
            self.wait_quorate(id);
        }
    }

    /// Wait until node `id`'s corosync is part of a quorate cluster.
    pub fn wait_quorate(&self, id: u32) {
        self.wait_for(
            id,
            "corosync quorate",
            "corosync-quorumtool -s >/dev/null 2>&1",
            60,
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u32> = self.nodes.iter().map(|n| n.id).collect();
        for id in &ids {
            self.stop_pmxcfs(*id);
        }
        for node in &mut self.nodes {
            if let Some(mut c) = node.corosync.take() {
                unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(10);
                while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = node.holder.kill();
            let _ = node.holder.wait();
        }
        for id in &ids {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{}n{id}", self.prefix)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &format!("{}br", self.prefix)])
            .status();
        let _ = fs::remove_dir_all(&self.base);
        // libqb names its files qb-<server pid>-... and
        // qb-corosync-<pid>-...: only those of our corosyncs go.
        if let Ok(entries) = fs::read_dir("/dev/shm") {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = self.corosync_pids.iter().any(|pid| {
                    name.starts_with(&format!("qb-{pid}-"))
                        || name.starts_with(&format!("qb-corosync-{pid}-"))
                });
                if ours {
                    // Newer libqb keeps a connection's files in a folder.
                    let _ = fs::remove_file(entry.path());
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
    }
}

pub fn read(c: &Cluster, id: u32, path: &str) -> Option<String> {
    let out = c.sh(id, &format!("cat '/etc/pve/{path}'"));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn write(c: &Cluster, id: u32, path: &str, content: &str) -> Result<(), String> {
    let out = c
        .command(id, "sh")
        .args(["-c", &format!("cat > '/etc/pve/{path}'")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(content.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub fn base_of(c: &Cluster) -> &Path {
    &c.base
}

/// Collect a scenario folder in the capture format from a cluster whose
/// daemons ran with `--record /run/pmxcfs.pcap` and have stopped:
/// `nodeN.pcap`, the initial `corosync.conf`, `expected/nodeN.config.sql`.
pub fn collect_scenario(c: &Cluster, dir: &Path) {
    fs::create_dir_all(dir.join("expected")).unwrap();
    let n = c.nodes.len() as u32;
    fs::write(dir.join("corosync.conf"), corosync_conf(n, &c.prefix)).unwrap();
    for id in 1..=n {
        let pcap = c.sh(id, "cat /run/pmxcfs.pcap");
        assert!(
            pcap.status.success() && !pcap.stdout.is_empty(),
            "node {id} recorded nothing"
        );
        fs::write(dir.join(format!("node{id}.pcap")), pcap.stdout).unwrap();
        let dump = c.sh(id, "sqlite3 /var/lib/pve-cluster/config.db .dump");
        assert!(dump.status.success());
        fs::write(
            dir.join(format!("expected/node{id}.config.sql")),
            dump.stdout,
        )
        .unwrap();
    }
}
