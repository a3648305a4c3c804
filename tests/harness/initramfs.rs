//! The guest's root filesystem: a busybox initramfs with kchat.ko, the guest binaries and the
//! shared libraries they link, plus an `/init` that mounts the usual filesystems and runs the
//! mode's script.

use std::{
    collections::BTreeSet,
    fs,
    io::{self, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// Where busybox-static installs its binary on Debian.
const BUSYBOX: &str = "/bin/busybox";

/// Everything one guest image holds.
pub struct Image<'a> {
    /// kchat.ko, installed as /lib/modules/kchat.ko.
    pub module: &'a Path,
    /// Binaries copied to /bin, with the libraries they need.
    pub binaries: Vec<PathBuf>,
    /// The mode's script, run by /init as /run.sh.
    pub run_script: String,
}

/// A file an image holds besides its binaries: a plugin, a configuration, a script.
pub struct File {
    /// On the host.
    pub from: PathBuf,
    /// Where it goes in the guest (absolute).
    pub to: PathBuf,
    /// Install the shared libraries it loads too (a plugin's).
    pub libraries: bool,
}

/// The /init of every image. It runs /run.sh, then powers the guest off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /root
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs -o size=256m tmpfs /tmp
export PATH=/bin:/sbin HOME=/root
ip link set lo up
# The NIC for the host's forwarded port (QEMU user networking).
for d in /sys/class/net/*; do
    dev=${d##*/}
    [ "$dev" = lo ] && continue
    ip addr add 10.0.2.15/24 dev "$dev" && ip link set "$dev" up
    ip route add default via 10.0.2.2 2>/dev/null
    break
done
ulimit -n 1048576 2>/dev/null || ulimit -n 65536
echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse
# Bounded TIME_WAIT memory: the leak checks compare slab usage before and after churn.
echo 1024 > /proc/sys/net/ipv4/tcp_max_tw_buckets
echo "1024 65000" > /proc/sys/net/ipv4/ip_local_port_range
sh /run.sh
sync
poweroff -f
"#;

/// Builds the image as an uncompressed newc cpio archive at `out`.
pub fn build(image: &Image<'_>, staging: &Path, out: &Path) -> io::Result<()> {
    build_with_files(image, &[], staging, out)
}

/// Builds the image with `files` besides, as [`build`] does.
pub fn build_with_files(
    image: &Image<'_>,
    files: &[File],
    staging: &Path,
    out: &Path,
) -> io::Result<()> {
    if staging.exists() {
        fs::remove_dir_all(staging)?;
    }
    for d in ["bin", "lib/modules", "etc"] {
        fs::create_dir_all(staging.join(d))?;
    }
    copy(Path::new(BUSYBOX), &staging.join("bin/busybox"))?;
    copy(image.module, &staging.join("lib/modules/kchat.ko"))?;

    let mut libs = BTreeSet::new();
    for bin in &image.binaries {
        let name = bin
            .file_name()
            .ok_or_else(|| other(format!("bad path {}", bin.display())))?;
        copy(bin, &staging.join("bin").join(name))?;
        libs.extend(shared_libraries(bin)?);
    }
    for f in files {
        let rel = f.to.strip_prefix("/").unwrap_or(&f.to);
        copy(&f.from, &staging.join(rel))?;
        if f.libraries {
            libs.extend(shared_libraries(&f.from)?);
        }
    }
    for lib in &libs {
        let rel = lib.strip_prefix("/").unwrap_or(lib);
        copy(lib, &staging.join(rel))?;
    }

    write_exec(&staging.join("init"), INIT)?;
    write_exec(&staging.join("run.sh"), &image.run_script)?;
    fs::write(
        staging.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )?;
    fs::write(staging.join("etc/group"), "root:x:0:\n")?;
    fs::write(staging.join("etc/hosts"), "127.0.0.1 localhost\n")?;
    // /init is a plain shell, not an init that handles poweroff's signal: power off directly.
    fs::write(
        staging.join("etc/profile"),
        "alias poweroff='poweroff -f'\nalias reboot='poweroff -f'\n",
    )?;
    cpio(staging, out)
}

/// The shared libraries (and the dynamic loader) that `bin` loads, as `ldd` reports them.
fn shared_libraries(bin: &Path) -> io::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(bin).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() && !text.contains("not a dynamic executable") {
        return Err(other(format!("ldd {} failed", bin.display())));
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
            // Debian's paths go through the /lib -> /usr/lib symlink; the guest has no such
            // link, so also install the library under its canonical path.
            if let Ok(real) = fs::canonicalize(p) {
                libs.push(real);
            }
        }
    }
    Ok(libs)
}

fn copy(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(from, to)
        .map(drop)
        .map_err(|e| other(format!("copying {}: {e}", from.display())))
}

fn write_exec(path: &Path, text: &str) -> io::Result<()> {
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// Packs `dir` with `cpio -o -H newc`, owned by root.
fn cpio(dir: &Path, out: &Path) -> io::Result<()> {
    let mut files = Vec::new();
    list(dir, dir, &mut files)?;
    let mut child = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet", "-R", "0:0"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(fs::File::create(out)?)
        .spawn()?;
    {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        for f in &files {
            writeln!(stdin, "{}", f.display())?;
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(other(format!("cpio failed: {status}")));
    }
    Ok(())
}

fn list(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        out.push(path.strip_prefix(root).expect("under root").to_path_buf());
        if path.is_dir() && !path.is_symlink() {
            list(root, &path, out)?;
        }
    }
    Ok(())
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}
