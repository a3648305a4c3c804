// SPDX-License-Identifier: GPL-2.0
//! NATS server addresses: `nats://[USER:PASS@|TOKEN@]HOST[:PORT]` or `HOST[:PORT]`.

use super::proto::Auth;

/// NATS' default client port.
pub const DEFAULT_PORT: u16 = 4222;

/// One NATS server to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    pub port: u16,
    /// Credentials from the URL.
    pub auth: Auth,
}

impl ServerUrl {
    /// Parses one address.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let rest = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("nats") => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "{s:?}: only nats:// is supported (no {scheme}://: this bridge speaks \
                     plain TCP)"
                ))
            }
            None => s,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed ["))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| format!("{s:?}: junk after ]"))?,
                    ),
                ),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(format!("{s:?}: no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{s:?}: bad port {p:?}"))?,
        };
        let auth = match userinfo {
            None => Auth::default(),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => Auth {
                    user: Some(user.to_string()),
                    pass: Some(pass.to_string()),
                    token: None,
                },
                None => Auth {
                    token: Some(u.to_string()),
                    ..Auth::default()
                },
            },
        };
        Ok(Self {
            host: host.to_string(),
            port,
            auth,
        })
    }

    /// What to hand to `ToSocketAddrs`.
    pub fn addr(&self) -> (&str, u16) {
        (&self.host, self.port)
    }
}

impl std::fmt::Display for ServerUrl {
    /// `nats://HOST:PORT`, without credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "nats://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "nats://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let u = ServerUrl::parse("nats://127.0.0.1:4223").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 4223));
        assert_eq!(u.auth, Auth::default());
        assert_eq!(u.to_string(), "nats://127.0.0.1:4223");
        let u = ServerUrl::parse("example.org").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("example.org", 4222));
        let u = ServerUrl::parse("localhost:5000").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("localhost", 5000));
        let u = ServerUrl::parse("NATS://[::1]:4300/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 4300));
        assert_eq!(u.to_string(), "nats://[::1]:4300");
        let u = ServerUrl::parse("nats://[::1]").unwrap();
        assert_eq!(u.port, 4222);
        let u = ServerUrl::parse("nats://bob:s3cr@t@h:1").unwrap();
        assert_eq!(u.auth.user.as_deref(), Some("bob"));
        assert_eq!(u.auth.pass.as_deref(), Some("s3cr@t"));
        assert_eq!(u.to_string(), "nats://h:1", "no credentials shown");
        let u = ServerUrl::parse("nats://tok@h").unwrap();
        assert_eq!(u.auth.token.as_deref(), Some("tok"));
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "tls://h:4222",
            "ws://h",
            "nats://",
            "nats://:4222",
            "h:0",
            "h:99999",
            "h:x",
            "[::1",
            "[::1]x",
            "nats://a/b:1",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
