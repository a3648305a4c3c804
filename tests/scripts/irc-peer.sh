#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Starts or stops a real IRC server as a benchmark peer of kchat, with the repository's
# configuration (tests/config/irc/), in a directory of its own. POSIX sh (busybox too).
#
#   irc-peer.sh start ngircd|inspircd [PORT]   # returns once it listens on 127.0.0.1:PORT
#   irc-peer.sh stop  ngircd|inspircd [PORT]   # stops it and removes its directory
#
# PORT defaults to 6667. The directory (configuration, server log, pid) is
# $KCHAT_IRC_PEER_DIR, or ${TMPDIR:-/tmp}/kchat-irc-SERVER-PORT. The open-file limit is
# raised to its hard limit first (every client is a file descriptor). Run as root, ngircd
# drops to uid 65534 and InspIRCd stays root (--runasroot).
#
# Environment: KCHAT_IRC_CONFIG, the configuration directory (default: tests/config/irc
# beside this script); NGIRCD and INSPIRCD, the binaries (default: from PATH or /usr/sbin).
set -eu

usage() {
	echo "usage: $0 start|stop ngircd|inspircd [PORT]" >&2
	exit 2
}

[ $# -ge 2 ] && [ $# -le 3 ] || usage
action=$1 server=$2 port=${3:-6667}
case $action in start | stop) ;; *) usage ;; esac
case $server in ngircd | inspircd) ;; *) usage ;; esac
case $port in '' | *[!0-9]*) usage ;; esac

here=$(cd "$(dirname "$0")" && pwd)
config=${KCHAT_IRC_CONFIG:-$here/../config/irc}
dir=${KCHAT_IRC_PEER_DIR:-${TMPDIR:-/tmp}/kchat-irc-$server-$port}

die() {
	echo "irc-peer: $*" >&2
	exit 1
}

# The server's binary: $NGIRCD / $INSPIRCD, else from PATH or /usr/sbin.
binary() {
	case $server in
	ngircd) b=${NGIRCD:-} ;;
	inspircd) b=${INSPIRCD:-} ;;
	esac
	[ -n "$b" ] || b=$(PATH=$PATH:/usr/sbin:/sbin command -v "$server" || true)
	[ -n "$b" ] && [ -x "$b" ] || die "$server not found (install Debian's $server)"
	echo "$b"
}

# True while process $1 runs (a zombie waiting for its parent to reap it does not).
alive() {
	[ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# True once something listens on 127.0.0.1:$port (from /proc: no netstat or ss needed).
listening() {
	hex=$(printf '%04X' "$port")
	grep -q "^ *[0-9]*: 0100007F:$hex 00000000:0000 0A" /proc/net/tcp
}

start() {
	bin=$(binary)
	if [ -f "$dir/pid" ] && alive "$(cat "$dir/pid")"; then
		die "$server already running from $dir (pid $(cat "$dir/pid"))"
	fi
	listening && die "127.0.0.1:$port is already in use"
	rm -rf "$dir"
	mkdir -p "$dir"
	case $server in
	ngircd)
		sed "s/^\([[:space:]]*Ports[[:space:]]*=\).*/\1 $port/" "$config/ngircd.conf" >"$dir/ngircd.conf"
		# ngircd drops to uid 65534, which must still reach its configuration on a rehash.
		chmod 755 "$dir"
		chmod 644 "$dir/ngircd.conf"
		set -- "$bin" --nodaemon --config "$dir/ngircd.conf"
		;;
	inspircd)
		sed -e "s/port=\"6667\"/port=\"$port\"/" \
			-e "s|motd=\"inspircd.motd\"|motd=\"$dir/inspircd.motd\"|" \
			"$config/inspircd.conf" >"$dir/inspircd.conf"
		cp "$config/inspircd.motd" "$dir/"
		set -- "$bin" --config "$dir/inspircd.conf" --nofork --nopid --runasroot
		;;
	esac
	ulimit -n "$(ulimit -H -n)"
	# InspIRCd writes its log to the directory it starts in.
	cd "$dir"
	"$@" </dev/null >"$dir/server.log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/pid"
	tries=0
	until listening; do
		if ! alive "$pid" || [ "$tries" -ge 100 ]; then
			cat "$dir/server.log" >&2
			alive "$pid" && kill "$pid"
			die "$server did not start listening on 127.0.0.1:$port"
		fi
		tries=$((tries + 1))
		sleep 0.1
	done
	echo "irc-peer: $server listening on 127.0.0.1:$port (pid $pid, directory $dir)"
}

stop() {
	[ -f "$dir/pid" ] || die "$server on port $port is not running (no $dir/pid)"
	pid=$(cat "$dir/pid")
	if alive "$pid"; then
		kill "$pid"
		tries=0
		while alive "$pid" && [ "$tries" -lt 50 ]; do
			tries=$((tries + 1))
			sleep 0.1
		done
		alive "$pid" && kill -9 "$pid"
	fi
	rm -rf "$dir"
}

$action
