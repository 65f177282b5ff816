//! Upstream resolver list: parsing `resolv.conf` and `--upstream` values.

use std::net::{IpAddr, SocketAddr};

/// Why an upstream list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "invalid upstream {0:?}: want an IP address or IP:port, e.g. 10.0.0.2 or 127.0.0.1:5353"
    )]
    Invalid(String),
}

/// Nameservers of a resolv.conf text, port 53. Link-local scope suffixes (`%eth0`) are dropped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            let ip = w.next()?.split('%').next()?;
            ip.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The nameservers of a resolv.conf file.
pub fn from_resolv_conf(path: &str) -> Result<Vec<SocketAddr>, UpstreamError> {
    let text = std::fs::read_to_string(path).map_err(|source| UpstreamError::Read {
        path: path.to_string(),
        source,
    })?;
    Ok(parse_resolv_conf(&text))
}

/// `IP`, `IP:port` or `[v6]:port`.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, UpstreamError> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| UpstreamError::Invalid(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver  fe80::1%eth0 \n\
                    nameserver bogus\noptions ndots:5\n  nameserver 1.1.1.1\n";
        let got: Vec<String> = parse_resolv_conf(text)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(got, ["10.0.0.2:53", "[fe80::1]:53", "1.1.1.1:53"]);
    }

    #[test]
    fn upstream_flag() {
        let cases = [
            ("10.0.0.2", Ok("10.0.0.2:53")),
            ("127.0.0.1:5353", Ok("127.0.0.1:5353")),
            ("[::1]:5353", Ok("[::1]:5353")),
            ("::1", Ok("[::1]:53")),
            (
                "dns.example",
                Err(
                    "invalid upstream \"dns.example\": want an IP address or IP:port, e.g. 10.0.0.2 or 127.0.0.1:5353",
                ),
            ),
        ];
        for (s, want) in cases {
            let got = parse_upstream(s)
                .map(|a| a.to_string())
                .map_err(|e| e.to_string());
            assert_eq!(got.as_deref().map_err(|e| e.as_str()), want, "{s}");
        }
    }
}
