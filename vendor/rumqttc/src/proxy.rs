use crate::eventloop::{resolve, socket_connect};
use crate::framed::AsyncReadWrite;
use crate::NetworkOptions;
use tokio_socks::tcp::Socks5Stream;
use tokio_socks::IntoTargetAddr;

use std::io;

#[cfg(any(feature = "use-rustls-no-provider", feature = "use-native-tls"))]
use crate::{tls, TlsConfiguration};

#[derive(Clone, Debug)]
pub struct Proxy {
    pub ty: ProxyType,
    pub auth: ProxyAuth,
    pub addr: String,
    pub port: u16,
}

#[derive(Clone, Debug)]
pub enum ProxyType {
    Http,
    #[cfg(any(feature = "use-rustls-no-provider", feature = "use-native-tls"))]
    Https(TlsConfiguration),
    /// umqtt patch: a SOCKS5 proxy (RFC 1928) to which the client gives the broker's address,
    /// resolved by the client.
    Socks5,
    /// umqtt patch: a SOCKS5 proxy to which the client gives the broker's name, resolved by the
    /// proxy (`socks5h://`).
    Socks5h,
}

/// Credentials: HTTP Basic for HTTP proxies, user name and password (RFC 1929) for SOCKS5.
#[derive(Clone)]
pub enum ProxyAuth {
    None,
    Basic { username: String, password: String },
}

/// umqtt patch: never shows the password (options are debug-printed, and may be logged).
impl std::fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("Socket connect: {0}.")]
    Io(#[from] io::Error),
    #[error("Proxy connect: {0}.")]
    Proxy(#[from] async_http_proxy::HttpError),
    /// umqtt patch: a SOCKS5 proxy refused or failed.
    #[error("SOCKS5 proxy: {0}.")]
    Socks(#[from] tokio_socks::Error),

    #[cfg(any(feature = "use-rustls-no-provider", feature = "use-native-tls"))]
    #[error("Tls connect: {0}.")]
    Tls(#[from] tls::Error),
}

impl Proxy {
    pub(crate) async fn connect(
        self,
        broker_addr: &str,
        broker_port: u16,
        network_options: NetworkOptions,
    ) -> Result<Box<dyn AsyncReadWrite>, ProxyError> {
        // umqtt patch: every address of the proxy (`ipv6_only` is for the broker's).
        let tcp: Box<dyn AsyncReadWrite> =
            Box::new(socket_connect(&self.addr, self.port, false, &network_options).await?);
        let mut tcp = match self.ty {
            ProxyType::Http => tcp,
            #[cfg(any(feature = "use-rustls-no-provider", feature = "use-native-tls"))]
            ProxyType::Https(tls_config) => {
                tls::tls_connect(&self.addr, self.port, &tls_config, tcp).await?
            }
            ProxyType::Socks5 => {
                let ipv6_only = network_options.ipv6_only();
                let broker = resolve(broker_addr, broker_port, ipv6_only).await?[0];
                return self.auth.socks5(tcp, broker).await;
            }
            ProxyType::Socks5h => {
                return self.auth.socks5(tcp, (broker_addr, broker_port)).await;
            }
        };
        // umqtt patch: an IPv6 address in brackets, as the request line's authority needs.
        let host = match broker_addr.contains(':') {
            true => format!("[{broker_addr}]"),
            false => broker_addr.to_owned(),
        };
        self.auth.auth(&host, broker_port, &mut tcp).await?;
        Ok(tcp)
    }
}

impl ProxyAuth {
    /// umqtt patch: the SOCKS5 handshake to `target`, with these credentials if any.
    async fn socks5<'t>(
        self,
        tcp: Box<dyn AsyncReadWrite>,
        target: impl IntoTargetAddr<'t>,
    ) -> Result<Box<dyn AsyncReadWrite>, ProxyError> {
        let stream = match &self {
            Self::None => Socks5Stream::connect_with_socket(tcp, target).await?,
            Self::Basic { username, password } => {
                Socks5Stream::connect_with_password_and_socket(tcp, target, username, password)
                    .await?
            }
        };
        Ok(stream.into_inner())
    }

    async fn auth(
        self,
        host: &str,
        port: u16,
        tcp_stream: &mut Box<dyn AsyncReadWrite>,
    ) -> Result<(), ProxyError> {
        match self {
            Self::None => async_http_proxy::http_connect_tokio(tcp_stream, host, port).await?,
            Self::Basic { username, password } => {
                async_http_proxy::http_connect_tokio_with_basic_auth(
                    tcp_stream, host, port, &username, &password,
                )
                .await?
            }
        }
        Ok(())
    }
}
