//! Endpoint strings and the gRPC channels behind them. Accepts what etcdctl
//! users type (`127.0.0.1:2379`, `http://127.0.0.1:2379`, comma-separated
//! lists) and normalizes it to `http://host:port`. Channels are created lazily:
//! nothing connects until the first request. TLS (`https://`) is not supported
//! yet and is rejected up front rather than failing at connect time.

use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{ClientError, Result};
use crate::options::ConnectOptions;

/// Normalizes one endpoint to `http://host:port`.
///
/// A port is required: etcd has no well-known default that `http://` would
/// imply (it would silently mean port 80).
pub fn parse_endpoint(input: &str) -> Result<String> {
    let s = input.trim();
    let invalid = |why: &str| ClientError::InvalidEndpoint(format!("{input:?}: {why}"));
    if s.is_empty() {
        return Err(invalid("empty"));
    }
    let with_scheme = if let Some((scheme, _)) = s.split_once("://") {
        match scheme.to_ascii_lowercase().as_str() {
            "http" => s.to_string(),
            "https" => return Err(invalid("TLS (https) is not supported")),
            _ => return Err(invalid("scheme must be http")),
        }
    } else {
        format!("http://{s}")
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|e| invalid(&format!("not a URI ({e})")))?;
    let authority = uri.authority().ok_or_else(|| invalid("missing host"))?;
    if authority.host().is_empty() {
        return Err(invalid("missing host"));
    }
    if authority.as_str().contains('@') {
        return Err(invalid("user info is not supported"));
    }
    if authority.port_u16().is_none() {
        return Err(invalid("missing port"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid("must not have a path or query"));
    }
    Ok(format!("http://{authority}"))
}

/// Parses a list of endpoints; each item may itself be a comma-separated list
/// (as in etcdctl's `--endpoints`). Fails on the first bad one, and with
/// [`ClientError::NoEndpoints`] if none remain.
pub fn parse_endpoints<S: AsRef<str>>(inputs: &[S]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in inputs {
        for part in item.as_ref().split(',') {
            if part.trim().is_empty() {
                continue;
            }
            out.push(parse_endpoint(part)?);
        }
    }
    if out.is_empty() {
        return Err(ClientError::NoEndpoints);
    }
    Ok(out)
}

/// A lazily connected channel to one normalized endpoint. Must be called
/// inside a Tokio runtime (the channel spawns its worker task).
pub(crate) fn lazy_channel(uri: &str, options: &ConnectOptions) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(uri.to_string())
        .map_err(|e| ClientError::InvalidEndpoint(format!("{uri:?}: {e}")))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(options.keepalive_interval)
        .keep_alive_timeout(options.keepalive_timeout)
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_port_gets_http() {
        assert_eq!(
            parse_endpoint("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            parse_endpoint(" localhost:32379 ").unwrap(),
            "http://localhost:32379"
        );
    }

    #[test]
    fn http_url_is_normalized() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            parse_endpoint("http://127.0.0.1:2379/").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            parse_endpoint("HTTP://node1:2379").unwrap(),
            "http://node1:2379"
        );
    }

    #[test]
    fn ipv6_literal() {
        assert_eq!(parse_endpoint("[::1]:2379").unwrap(), "http://[::1]:2379");
        assert_eq!(
            parse_endpoint("http://[::1]:2379").unwrap(),
            "http://[::1]:2379"
        );
    }

    #[test]
    fn rejects_bad_endpoints() {
        for bad in [
            "",
            "   ",
            "127.0.0.1",
            "http://127.0.0.1",
            "https://127.0.0.1:2379",
            "unix:///tmp/etcd.sock",
            "http://127.0.0.1:2379/v3/kv",
            "http://127.0.0.1:2379?x=1",
            "http://user@127.0.0.1:2379",
            "127.0.0.1:notaport",
            "127.0.0.1:99999",
        ] {
            match parse_endpoint(bad) {
                Err(ClientError::InvalidEndpoint(msg)) => {
                    assert!(msg.contains(&format!("{bad:?}")), "{msg}")
                }
                other => panic!("{bad:?} should be invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn lists_split_on_commas() {
        let eps = parse_endpoints(&["127.0.0.1:2379,127.0.0.1:22379", "http://h:32379"]).unwrap();
        assert_eq!(
            eps,
            vec![
                "http://127.0.0.1:2379",
                "http://127.0.0.1:22379",
                "http://h:32379"
            ]
        );
    }

    #[test]
    fn empty_list_is_no_endpoints() {
        let none: [&str; 0] = [];
        assert!(matches!(
            parse_endpoints(&none),
            Err(ClientError::NoEndpoints)
        ));
        assert!(matches!(
            parse_endpoints(&[" , "]),
            Err(ClientError::NoEndpoints)
        ));
    }

    #[test]
    fn one_bad_item_fails_the_list() {
        assert!(matches!(
            parse_endpoints(&["127.0.0.1:2379", "nope"]),
            Err(ClientError::InvalidEndpoint(_))
        ));
    }
}
