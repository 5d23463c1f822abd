//! The SSRF rule for customer-supplied URLs.
//!
//! A URL a customer gives us (a delivery-status webhook, later a Discord
//! webhook) must not let them make the daemon call into our own network. The
//! rule, checked when the URL is saved (admin API) **and** again right before
//! every request:
//!
//! 1. `https` only (`http` only when the policy allows it, for tests); no
//!    user-info (`user:pass@`); a host is required.
//! 2. The host is resolved (`tokio::net::lookup_host`) and **every** address
//!    it resolves to must be a public unicast address: loopback
//!    (127/8, ::1), private (10/8, 172.16/12, 192.168/16), CGNAT
//!    (100.64/10), link-local (169.254/16, which holds the cloud metadata
//!    address 169.254.169.254, and fe80::/10), unique-local (fc00::/7),
//!    unspecified (0.0.0.0/8, ::), multicast (224/4, ff00::/8), broadcast
//!    and the other reserved ranges (240/4), and IPv4 addresses embedded in
//!    IPv6 (`::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`) by their IPv4 rule. An
//!    address in one of the policy's `allowed_cidrs` (or any address when
//!    `allow_private_targets`) passes.
//! 3. The request is then **pinned** to the vetted addresses (reqwest's
//!    `ClientBuilder::resolve_to_addrs`), so a DNS answer that changes
//!    between the check and the connection (DNS rebinding) cannot reach
//!    another address; redirects are not followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The longest a host name may take to resolve (the admin request and the
/// sender's batch wait for it).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// One CIDR block (`10.0.0.0/8`, `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let bits = u32::from(net) ^ u32::from(ip);
                self.prefix == 0 || bits >> (32 - u32::from(self.prefix.min(32))) == 0
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let bits = u128::from(net) ^ u128::from(ip);
                self.prefix == 0 || bits >> (128 - u32::from(self.prefix.min(128))) == 0
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// What a customer URL may point at (from `[customer_webhooks]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboundPolicy {
    /// Plain `http://` is accepted (tests only).
    pub allow_http: bool,
    /// Any address is accepted (tests only).
    pub allow_private_targets: bool,
    /// Blocks accepted although the rule refuses them.
    pub allowed: Vec<Cidr>,
}

/// Why a URL is refused. The text names the rule, never the URL's path or
/// query (which may carry a credential).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a valid absolute URL")]
    Invalid,
    #[error("the scheme must be https")]
    Scheme,
    #[error("credentials in the URL are not allowed")]
    UserInfo,
    #[error("the URL has no host")]
    NoHost,
    #[error("the host does not resolve: {0}")]
    Unresolvable(String),
    #[error("the host resolves to a {kind} address ({ip}), which is not allowed")]
    Forbidden { ip: IpAddr, kind: &'static str },
}

/// A URL that passed the rule, with the addresses the request must use.
#[derive(Debug, Clone)]
pub struct Vetted {
    pub url: url::Url,
    /// The host name as written (what TLS and `Host` use).
    pub host: String,
    pub addrs: Vec<SocketAddr>,
}

impl OutboundPolicy {
    /// Step 1 of the rule (no DNS).
    pub fn check_syntax(&self, raw: &str) -> Result<url::Url, Refusal> {
        let url = url::Url::parse(raw.trim()).map_err(|_| Refusal::Invalid)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(Refusal::Scheme),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::UserInfo);
        }
        match url.host() {
            None => Err(Refusal::NoHost),
            Some(url::Host::Domain("")) => Err(Refusal::NoHost),
            Some(_) => Ok(url),
        }
    }

    /// Whether the policy lets a request reach `ip`: `Err(kind)` names the
    /// range that refuses it.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), &'static str> {
        if self.allow_private_targets || self.allowed.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        match forbidden_kind(ip) {
            Some(kind) => Err(kind),
            None => Ok(()),
        }
    }

    /// The whole rule: syntax, resolution, every address allowed.
    pub async fn vet(&self, raw: &str) -> Result<Vetted, Refusal> {
        let url = self.check_syntax(raw)?;
        let port = url.port_or_known_default().ok_or(Refusal::Invalid)?;
        let (host, addrs): (String, Vec<SocketAddr>) = match url.host() {
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
            Some(url::Host::Ipv6(ip)) => {
                (format!("[{ip}]"), vec![SocketAddr::new(ip.into(), port)])
            }
            Some(url::Host::Domain(d)) => {
                let lookup = tokio::net::lookup_host((d, port));
                let found: Vec<SocketAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
                    .await
                    .map_err(|_| Refusal::Unresolvable("timed out".into()))?
                    .map_err(|e| Refusal::Unresolvable(e.kind().to_string()))?
                    .collect();
                if found.is_empty() {
                    return Err(Refusal::Unresolvable("no addresses".into()));
                }
                (d.to_string(), found)
            }
            None => return Err(Refusal::NoHost),
        };
        for a in &addrs {
            self.check_ip(a.ip())
                .map_err(|kind| Refusal::Forbidden { ip: a.ip(), kind })?;
        }
        Ok(Vetted { url, host, addrs })
    }
}

/// The range that makes `ip` unfit as a customer's target, if any.
pub fn forbidden_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_private() {
        Some("private")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared (CGNAT)")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if o[0] >= 240 {
        Some("reserved")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignment")
    } else if (o[0] == 192 && o[1] == 0 && o[2] == 2)
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
    {
        Some("documentation")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking")
    } else {
        None
    }
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_kind(v4);
    }
    let s = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("unique-local")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        Some("site-local")
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64: the IPv4 address in the last 32 bits decides.
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        v4_kind(v4)
    } else if s[0..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated): judged by the IPv4 rule.
        v4_kind(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ))
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        Some("documentation")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> bool {
        forbidden_kind(ip.parse().unwrap()).is_some()
    }

    #[test]
    fn private_and_special_ranges_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(!refused(ip), "{ip} is public");
        }
    }

    #[test]
    fn cidrs_allow_what_the_rule_refuses() {
        let p = OutboundPolicy {
            allowed: vec!["127.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        assert!(p.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert_eq!(p.check_ip("10.0.0.1".parse().unwrap()), Err("private"));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        let c: Cidr = "::1".parse().unwrap();
        assert!(c.contains("::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn syntax() {
        let p = OutboundPolicy::default();
        assert_eq!(
            p.check_syntax("http://example.com/x").unwrap_err(),
            Refusal::Scheme
        );
        assert_eq!(
            p.check_syntax("ftp://example.com/x").unwrap_err(),
            Refusal::Scheme
        );
        assert_eq!(
            p.check_syntax("https://u:p@example.com/x").unwrap_err(),
            Refusal::UserInfo
        );
        assert_eq!(p.check_syntax("not a url").unwrap_err(), Refusal::Invalid);
        assert!(p.check_syntax("https://example.com/hook?x=1").is_ok());
        let t = OutboundPolicy {
            allow_http: true,
            ..Default::default()
        };
        assert!(t.check_syntax("http://example.com/x").is_ok());
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let p = OutboundPolicy::default();
        let e = p.vet("https://localhost:9/x").await.unwrap_err();
        assert!(
            matches!(
                e,
                Refusal::Forbidden {
                    kind: "loopback",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = p.vet("https://169.254.169.254/latest").await.unwrap_err();
        assert!(
            matches!(
                e,
                Refusal::Forbidden {
                    kind: "link-local",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = p.vet("https://[::1]/").await.unwrap_err();
        assert!(
            matches!(
                e,
                Refusal::Forbidden {
                    kind: "loopback",
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
