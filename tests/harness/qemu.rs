//! The QEMU command line for a kchat guest.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
};

/// Where the guest's serial ports go.
pub enum Serial {
    /// ttyS0 is the interactive console on the terminal (`make run`).
    Interactive,
    /// ttyS0 (console), ttyS1 (test output) and ttyS2 (the `/dev/kmsg` stream) go to files.
    Files {
        console: PathBuf,
        output: PathBuf,
        kmsg: PathBuf,
    },
}

/// One guest's settings.
pub struct Guest<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cpus: u32,
    pub memory_mib: u32,
    /// Extra kernel command line.
    pub append: String,
    pub serial: Serial,
    /// Host ports forwarded to guest ports: (host port on 127.0.0.1, guest port).
    pub forwards: Vec<(u16, u16)>,
}

impl Guest<'_> {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        let accel = std::env::var("KCHAT_ACCEL").unwrap_or_else(|_| "tcg".into());
        // Under TCG, "max" emulates every feature QEMU knows (fast string copies among them);
        // with a real KVM (KCHAT_ACCEL=kvm) the host CPU is passed through.
        let cpu = if accel == "kvm" { "host" } else { "max" };
        cmd.args(["-accel", &accel, "-cpu", cpu])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-m", &format!("{}M", self.memory_mib)])
            .args(["-nodefaults", "-display", "none", "-no-reboot"])
            .arg("-kernel")
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initrd);
        let mut append = String::from("console=ttyS0 panic=-1 ");
        match &self.serial {
            Serial::Interactive => {
                cmd.args(["-serial", "mon:stdio"]);
            }
            Serial::Files {
                console,
                output,
                kmsg,
            } => {
                for f in [console, output, kmsg] {
                    cmd.arg("-serial").arg(format!("file:{}", f.display()));
                }
                // Warnings and worse reach the console even if the guest dies; the whole log
                // is streamed from /dev/kmsg to ttyS2.
                append.push_str("loglevel=5 ");
            }
        }
        append.push_str(&self.append);
        cmd.arg("-append").arg(append);
        let mut netdev = String::from("user,id=n1");
        for (host, guest) in &self.forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        cmd.args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n1"]);
        cmd
    }
}

/// A listener on a free TCP port of the host's loopback, for a forward that must not collide
/// with a `make run` guest or another test run: while it is held, no other `free_listener`
/// gets the same port.
pub fn free_listener() -> std::io::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0")
}
