//! How a connection reaches the broker: the transport (`tcp`, `websockets`, `unix`), the proxy
//! (`http://`, `socks5://`, `socks5h://`) and the address family (`ipvtype`), validated from the
//! constructor's arguments and turned into rumqttc's options.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rumqttc::{NetworkOptions, Proxy, ProxyAuth, ProxyType, TlsConfiguration};

use crate::arguments;
use crate::protocol::ConnectOptions;

pub const DEFAULT_WS_PATH: &str = "/mqtt";

/// The transport under MQTT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    /// MQTT over WebSocket (`ws://`, or `wss://` with TLS), upgraded at this path.
    WebSockets {
        path: String,
    },
    /// A Unix domain socket: the server is its path.
    Unix,
}

/// A proxy to tunnel through, from `proxy="scheme://[user:password@]host:port"`.
#[derive(Clone)]
pub struct ProxySettings {
    kind: ProxyType,
    scheme: &'static str,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

impl ProxySettings {
    /// Parses a proxy URL; the error never repeats it (it may hold a password).
    fn parse(url: &str) -> PyResult<Self> {
        let bad = |why: &str| {
            PyValueError::new_err(format!(
                "proxy must be 'http://[user:password@]host:port', 'socks5://...' or \
                 'socks5h://...': {why}"
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (kind, scheme) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (ProxyType::Http, "http"),
            "socks5" => (ProxyType::Socks5, "socks5"),
            "socks5h" => (ProxyType::Socks5h, "socks5h"),
            _ => return Err(bad("the scheme is not http, socks5 or socks5h")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(bad("a proxy URL has no path"));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let credentials = userinfo
            .map(|userinfo| {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                Ok::<_, PyErr>((percent_decode(user, &bad)?, percent_decode(password, &bad)?))
            })
            .transpose()?;
        let (host, port) = split_host_port(hostport).ok_or_else(|| bad("no host:port"))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
        Ok(ProxySettings {
            kind,
            scheme,
            host: host.to_owned(),
            port,
            credentials,
        })
    }

    /// The proxy as messages name it: scheme, user, host and port, never the password.
    pub fn shown(&self) -> String {
        let user = match &self.credentials {
            Some((user, _)) => format!("{user}@"),
            None => String::new(),
        };
        let host = arguments::host_port(&self.host, self.port);
        format!("{}://{user}{host}", self.scheme)
    }

    fn rumqttc_proxy(&self) -> Proxy {
        Proxy {
            ty: self.kind.clone(),
            auth: match &self.credentials {
                Some((username, password)) => ProxyAuth::Basic {
                    username: username.clone(),
                    password: password.clone(),
                },
                None => ProxyAuth::None,
            },
            addr: self.host.clone(),
            port: self.port,
        }
    }
}

/// `host:port`, the host possibly an IPv6 address in brackets.
fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        return Some((host, port));
    }
    let (host, port) = hostport.rsplit_once(':')?;
    (!host.is_empty() && !host.contains(':')).then_some((host, port))
}

/// `%XX` escapes in a URL's user name or password (how a password with `@` or `:` is written).
fn percent_decode(text: &str, bad: &impl Fn(&str) -> PyErr) -> PyResult<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| {
                    bad("a % in the user or password is not followed by two hex digits")
                })?;
            decoded.push(hex);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| bad("the user or password is not UTF-8"))
}

/// Everything about the way to the broker but TLS.
#[derive(Clone)]
pub struct Route {
    pub kind: Kind,
    pub proxy: Option<ProxySettings>,
    /// `ipvtype=1`: the broker's IPv6 addresses only.
    pub ipv6_only: bool,
}

/// The constructor's transport arguments, as Python passed them.
pub struct RouteArguments<'a, 'py> {
    pub transport: Option<&'a Bound<'py, PyAny>>,
    pub ws_path: Option<&'a Bound<'py, PyAny>>,
    pub proxy: Option<&'a Bound<'py, PyAny>>,
    pub ipvtype: Option<&'a Bound<'py, PyAny>>,
}

impl Route {
    /// Validates the transport arguments; `tls` says whether `ssl` asked for TLS, and
    /// `ws_headers` whether upgrade headers were given.
    pub fn from_python(
        given: RouteArguments<'_, '_>,
        tls: bool,
        ws_headers: bool,
    ) -> PyResult<Self> {
        let transport = arguments::optional_text(given.transport, "transport")?;
        let ws_path = arguments::optional_text(given.ws_path, "ws_path")?;
        let kind = match transport.as_deref().unwrap_or("tcp") {
            "tcp" => Kind::Tcp,
            "websockets" => {
                let path = ws_path
                    .clone()
                    .unwrap_or_else(|| DEFAULT_WS_PATH.to_owned());
                if !path.starts_with('/') || path.contains(char::is_whitespace) {
                    return Err(PyValueError::new_err(format!(
                        "ws_path must start with '/' and hold no spaces, not {path:?}"
                    )));
                }
                Kind::WebSockets { path }
            }
            "unix" => Kind::Unix,
            other => {
                return Err(PyValueError::new_err(format!(
                    "transport must be 'tcp', 'websockets' or 'unix', not {other:?}"
                )))
            }
        };
        if !matches!(kind, Kind::WebSockets { .. }) && (ws_path.is_some() || ws_headers) {
            return Err(PyValueError::new_err(
                "ws_path and ws_headers apply to transport='websockets' only",
            ));
        }
        let proxy = arguments::optional_text(given.proxy, "proxy")?
            .filter(|url| !url.is_empty())
            .map(|url| ProxySettings::parse(&url))
            .transpose()?;
        if kind == Kind::Unix && (tls || proxy.is_some()) {
            return Err(PyValueError::new_err(
                "transport='unix' takes neither ssl nor proxy: the socket is local",
            ));
        }
        let ipv6_only = match given.ipvtype {
            Some(value) if !value.is_none() => {
                arguments::bounded_int(value, "ipvtype (0: IPv4 and IPv6, 1: IPv6 only)", 0..=1)?
                    == 1
            }
            _ => false,
        };
        Ok(Route {
            kind,
            proxy,
            ipv6_only,
        })
    }

    /// The port that `port=0` stands for.
    pub fn default_port(&self, tls: bool) -> u16 {
        match (&self.kind, tls) {
            (Kind::WebSockets { .. }, false) => 80,
            (Kind::WebSockets { .. }, true) => 443,
            (_, false) => 1883,
            (_, true) => 8883,
        }
    }

    /// The broker as messages name it: `host:port` (`[::1]:1883`), the path of a Unix socket, or
    /// the WebSocket URL without its query (a pre-signed URL's query holds a token); and the
    /// proxy it is reached through.
    pub fn target(&self, host: &str, port: u16, tls: bool) -> String {
        let broker = match &self.kind {
            Kind::Unix => host.to_owned(),
            Kind::Tcp => arguments::host_port(host, port),
            Kind::WebSockets { .. } => {
                let url = self.broker_address(host, port, tls);
                match url.split_once('?') {
                    Some((shown, _)) => format!("{shown}?..."),
                    None => url,
                }
            }
        };
        match &self.proxy {
            Some(proxy) => format!("{broker} (through the proxy {})", proxy.shown()),
            None => broker,
        }
    }

    /// The address rumqttc is given: the host, the socket's path, or the WebSocket URL.
    pub fn broker_address(&self, host: &str, port: u16, tls: bool) -> String {
        match &self.kind {
            Kind::WebSockets { path } => {
                let scheme = if tls { "wss" } else { "ws" };
                format!("{scheme}://{}{path}", arguments::host_port(host, port))
            }
            Kind::Tcp | Kind::Unix => host.to_owned(),
        }
    }

    /// Sets the transport (with TLS when given) and the proxy on rumqttc's options.
    pub fn apply(&self, options: &mut dyn ConnectOptions, tls: Option<TlsConfiguration>) {
        let transport = match (&self.kind, tls) {
            (Kind::Tcp, None) => rumqttc::Transport::Tcp,
            (Kind::Tcp, Some(tls)) => rumqttc::Transport::tls_with_config(tls),
            (Kind::WebSockets { .. }, None) => rumqttc::Transport::Ws,
            (Kind::WebSockets { .. }, Some(tls)) => rumqttc::Transport::wss_with_config(tls),
            (Kind::Unix, _) => rumqttc::Transport::Unix,
        };
        let proxy = self.proxy.as_ref().map(ProxySettings::rumqttc_proxy);
        options.set_route(transport, proxy);
    }

    pub fn apply_network(&self, network: &mut NetworkOptions) {
        network.set_ipv6_only(self.ipv6_only);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> ProxySettings {
        match ProxySettings::parse(url) {
            Ok(proxy) => proxy,
            Err(_) => panic!("{url} did not parse"),
        }
    }

    #[test]
    fn proxy_urls_parse_and_show_no_password() {
        let proxy = parsed("socks5h://me:p%40ss%3Aword@[::1]:1080");
        assert_eq!(proxy.host, "::1");
        assert_eq!(proxy.port, 1080);
        assert_eq!(
            proxy.credentials,
            Some(("me".to_owned(), "p@ss:word".to_owned()))
        );
        assert_eq!(proxy.shown(), "socks5h://me@[::1]:1080");
        let proxy = parsed("HTTP://proxy.corp:3128/");
        assert_eq!(proxy.shown(), "http://proxy.corp:3128");
        assert!(proxy.credentials.is_none());
    }

    #[test]
    fn a_websocket_target_shows_no_query() {
        let route = |path: &str| Route {
            kind: Kind::WebSockets { path: path.into() },
            proxy: None,
            ipv6_only: false,
        };
        let signed = route("/mqtt?X-Amz-Security-Token=t0ken&X-Amz-Signature=abc");
        assert_eq!(signed.target("h", 443, true), "wss://h:443/mqtt?...");
        assert_eq!(
            signed.broker_address("h", 443, true),
            "wss://h:443/mqtt?X-Amz-Security-Token=t0ken&X-Amz-Signature=abc"
        );
        assert_eq!(route("/mqtt").target("h", 80, false), "ws://h:80/mqtt");
    }

    #[test]
    fn bad_proxy_urls_are_refused() {
        for url in [
            "proxy:3128",
            "ftp://h:1",
            "http://h",
            "http://h:0",
            "http://h:99999",
            "http://::1:80",
            "http://h:1/path",
            "http://u:%zz@h:1",
        ] {
            assert!(ProxySettings::parse(url).is_err(), "{url}");
        }
    }
}
