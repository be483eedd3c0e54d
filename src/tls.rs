//! TLS: turning the device's `ssl`/`ssl_params` (and CPython's `ssl` names, or an `ssl.SSLContext`)
//! into a rustls `ClientConfig` with the ring provider, and explaining handshake failures.
//!
//! Unlike the device, the server's certificate is verified by default, against the system's roots
//! (honouring `SSL_CERT_FILE`/`SSL_CERT_DIR`) plus any CA given; `cert_reqs=ssl.CERT_NONE` opts out.

use std::sync::{Arc, Once, OnceLock};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};

use crate::arguments;

/// Every `ssl_params` key understood, device keys first.
const KNOWN_KEYS: [&str; 11] = [
    "cert",
    "key",
    "server_hostname",
    "server_side",
    "do_handshake",
    "certfile",
    "keyfile",
    "ca_certs",
    "cadata",
    "cert_reqs",
    "alpn_protocols",
];
/// `ssl.CERT_NONE`, `ssl.CERT_OPTIONAL`, `ssl.CERT_REQUIRED`.
const CERT_NONE: i64 = 0;
const HOW_TO_TRUST: &str = "pass ca_certs=... or cadata=... in ssl_params, or \
     cert_reqs=ssl.CERT_NONE to connect without verification";

/// What the user asked for, gathered from `ssl_params` or an `ssl.SSLContext`.
#[derive(Default)]
struct TlsRequest {
    client_chain: Vec<CertificateDer<'static>>,
    client_key: Option<PrivateKeyDer<'static>>,
    extra_roots: Vec<CertificateDer<'static>>,
    server_hostname: Option<String>,
    verify: bool,
    check_hostname: bool,
    /// Offered in the handshake, in order of preference (`alpn_protocols`).
    alpn_protocols: Vec<Vec<u8>>,
}

/// A connection's TLS: the rustls configuration, and the name to send as SNI and verify when it
/// is not the server address (`server_hostname`).
#[derive(Clone)]
pub struct TlsSettings {
    pub config: Arc<ClientConfig>,
    pub server_name: Option<String>,
}

/// Builds the TLS settings for `ssl`/`ssl_params`, or None when TLS is off.
pub fn from_python(
    ssl: Option<&Bound<'_, PyAny>>,
    ssl_params: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<TlsSettings>> {
    let Some(ssl) = ssl.filter(|s| !s.is_none()) else {
        return Ok(None);
    };
    let request = if ssl.hasattr("get_ca_certs")? && ssl.hasattr("verify_mode")? {
        from_context(ssl)?
    } else if ssl.is_truthy()? {
        from_params(ssl_params)?
    } else {
        return Ok(None);
    };
    build(request).map(Some)
}

fn from_params(params: Option<&Bound<'_, PyAny>>) -> PyResult<TlsRequest> {
    let Some(params) = params.filter(|p| !p.is_none()) else {
        return Err(PyTypeError::new_err(
            "ssl=True needs ssl_params to be a dict, not None: pass ssl_params={} to verify the \
             server against the system's CA certificates",
        ));
    };
    let params = params.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err("ssl_params must be a dict of TLS options such as {'ca_certs': path}")
    })?;
    let mut request = TlsRequest {
        verify: true,
        check_hostname: true,
        ..TlsRequest::default()
    };
    for (key, value) in params.iter() {
        let key: String = key
            .extract()
            .map_err(|_| PyTypeError::new_err("ssl_params keys must be str"))?;
        if value.is_none() {
            continue; // scripts pass certfile=None, keyfile=None: "not given"
        }
        apply_param(&mut request, &key, &value)?;
    }
    if !request.client_chain.is_empty() && request.client_key.is_none() {
        return Err(PyValueError::new_err(
            "ssl_params has a client certificate but no key: pass key=... (PEM) or keyfile=...",
        ));
    }
    Ok(request)
}

fn apply_param(request: &mut TlsRequest, key: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
    match key {
        "cert" => request.client_chain = certificates(&pem_bytes(value, key)?, key)?,
        "certfile" => request.client_chain = certificates(&read_file(value, key)?, key)?,
        "key" => request.client_key = Some(private_key(&pem_bytes(value, key)?, key)?),
        "keyfile" => request.client_key = Some(private_key(&read_file(value, key)?, key)?),
        "ca_certs" => request
            .extra_roots
            .extend(certificates(&read_file(value, key)?, key)?),
        "cadata" => request.extra_roots.extend(ca_data(value)?),
        "server_hostname" => request.server_hostname = Some(arguments::text(value, key)?),
        "alpn_protocols" => request.alpn_protocols = alpn_protocols(value)?,
        "cert_reqs" => {
            let mode = arguments::bounded_int(value, "ssl_params['cert_reqs']", 0..=2)?;
            request.verify = mode != CERT_NONE;
        }
        "server_side" if !value.is_truthy()? => {}
        "server_side" => {
            return Err(PyValueError::new_err(
                "ssl_params server_side=True makes no sense for a client",
            ))
        }
        "do_handshake" if value.is_truthy()? => {}
        "do_handshake" => {
            return Err(PyValueError::new_err(
                "ssl_params do_handshake=False is not supported: the handshake runs on connect()",
            ))
        }
        unknown => {
            return Err(PyValueError::new_err(format!(
                "unknown ssl_params key {unknown:?}; known keys: {}",
                KNOWN_KEYS.join(", ")
            )))
        }
    }
    Ok(())
}

/// `alpn_protocols`: a list of protocol names (str), as `SSLContext.set_alpn_protocols` takes.
fn alpn_protocols(value: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    const WHAT: &str = "ssl_params['alpn_protocols']";
    if value.is_instance_of::<PyString>() || value.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(format!(
            "{WHAT} must be a list of protocol names, such as ['x-amzn-mqtt-ca'], not a single name"
        )));
    }
    let mut protocols = Vec::new();
    for name in value
        .try_iter()
        .map_err(|_| PyTypeError::new_err(format!("{WHAT} must be a list of str")))?
    {
        let name = arguments::text(&name?, WHAT)?;
        if name.is_empty() || name.len() > 255 {
            return Err(PyValueError::new_err(format!(
                "{WHAT}: each protocol name must be 1 to 255 bytes long, not {name:?}"
            )));
        }
        protocols.push(name.into_bytes());
    }
    Ok(protocols)
}

/// What can be read back from an `ssl.SSLContext`: its CA certificates and verify settings.
/// A client certificate loaded into it cannot be read back; pass it in `ssl_params` instead.
fn from_context(context: &Bound<'_, PyAny>) -> PyResult<TlsRequest> {
    let der_list = context.call_method1("get_ca_certs", (true,))?;
    let mut extra_roots = Vec::new();
    for der in der_list.cast::<PyList>()?.iter() {
        extra_roots.push(CertificateDer::from(
            der.cast::<PyBytes>()?.as_bytes().to_vec(),
        ));
    }
    let verify = context.getattr("verify_mode")?.extract::<i64>()? != CERT_NONE;
    Ok(TlsRequest {
        extra_roots,
        verify,
        check_hostname: verify && context.getattr("check_hostname")?.is_truthy()?,
        ..TlsRequest::default()
    })
}

fn pem_bytes(value: &Bound<'_, PyAny>, key: &str) -> PyResult<Vec<u8>> {
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(text.to_cow()?.as_bytes().to_vec());
    }
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(bytes.as_bytes().to_vec());
    }
    Err(PyTypeError::new_err(format!(
        "ssl_params[{key:?}] must be PEM text (str or bytes)"
    )))
}

fn read_file(value: &Bound<'_, PyAny>, key: &str) -> PyResult<Vec<u8>> {
    let path: std::path::PathBuf = value
        .extract()
        .map_err(|_| PyTypeError::new_err(format!("ssl_params[{key:?}] must be a file path")))?;
    // Never echo what might be a key: PEM text passed where a path belongs is named, not shown.
    let shown = path.to_string_lossy();
    if shown.contains("-----BEGIN") || shown.contains('\n') {
        return Err(PyValueError::new_err(format!(
            "ssl_params[{key:?}] must be a file path, but holds PEM text: pass PEM text as \
             'cert', 'key' or 'cadata' instead"
        )));
    }
    std::fs::read(&path).map_err(|e| {
        let shown = if shown.len() > 200 {
            "the path given".to_owned()
        } else {
            format!("{shown:?}")
        };
        PyValueError::new_err(format!("ssl_params[{key:?}]: cannot read {shown}: {e}"))
    })
}

/// A PEM parse failure in words (the library's own text prints markers as byte lists).
fn describe_pem(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match error {
        E::MissingSectionEnd { .. } => "a PEM section has no END line (truncated?)".into(),
        E::IllegalSectionStart { .. } => "a PEM section has a malformed BEGIN line".into(),
        E::Base64Decode(_) => "a PEM section is not valid base64".into(),
        E::NoItemsFound => "no PEM section found".into(),
        other => other.to_string(),
    }
}

fn certificates(pem: &[u8], key: &str) -> PyResult<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            PyValueError::new_err(format!(
                "ssl_params[{key:?}]: bad PEM: {}",
                describe_pem(&e)
            ))
        })?;
    if certificates.is_empty() {
        return Err(PyValueError::new_err(format!(
            "ssl_params[{key:?}] holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(certificates)
}

fn private_key(pem: &[u8], key: &str) -> PyResult<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        PyValueError::new_err(format!(
            "ssl_params[{key:?}] holds no usable private key (PKCS#1, PKCS#8 or SEC1 PEM): {}",
            describe_pem(&e)
        ))
    })
}

/// `cadata` as CPython takes it: PEM text, or DER bytes.
fn ca_data(value: &Bound<'_, PyAny>) -> PyResult<Vec<CertificateDer<'static>>> {
    let data = pem_bytes(value, "cadata")?;
    if value.is_instance_of::<PyBytes>() && !data.starts_with(b"-----") {
        return Ok(vec![CertificateDer::from(data)]);
    }
    certificates(&data, "cadata")
}

/// The system's roots, loaded once per process, leniently: an unreadable file is skipped.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            log::debug!(target: "umqtt", "skipped part of the system certificate store: {error}");
        }
        loaded.certs
    })
}

fn build(request: TlsRequest) -> PyResult<TlsSettings> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    let (_, rejected) = roots.add_parsable_certificates(request.extra_roots);
    if rejected > 0 {
        return Err(PyValueError::new_err(format!(
            "{rejected} of the CA certificates given are not valid X.509 certificates"
        )));
    }
    if request.verify && roots.is_empty() {
        return Err(PyValueError::new_err(format!(
            "no CA certificates to verify the server with (the system store is empty): {HOW_TO_TRUST}"
        )));
    }
    if let Some(name) = &request.server_hostname {
        ServerName::try_from(name.as_str())
            .map_err(|_| PyValueError::new_err(format!("invalid server_hostname {name:?}")))?;
    }
    if !request.verify {
        warn_unverified_once();
    }
    // Without verification no verifier is built: it would refuse an empty root store.
    let inner = request
        .verify
        .then(|| {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()
        })
        .transpose()
        .map_err(|e| PyValueError::new_err(format!("cannot set up certificate checks: {e}")))?;
    let verifier = Verifier {
        inner,
        check_hostname: request.check_hostname,
        provider: provider.clone(),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PyValueError::new_err(format!("TLS setup failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match request.client_key {
        Some(key) => builder
            .with_client_auth_cert(request.client_chain, key)
            .map_err(|e| {
                PyValueError::new_err(format!("the client certificate and key do not fit: {e}"))
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = request.alpn_protocols;
    Ok(TlsSettings {
        config: Arc::new(config),
        server_name: request.server_hostname,
    })
}

fn warn_unverified_once() {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        log::warn!(target: "umqtt", "TLS without server certificate verification (cert_reqs=CERT_NONE): the connection can be intercepted");
    });
}

/// webpki verification (of the name sent as SNI: `server_hostname` or the server address), or
/// without the name check (an `SSLContext` with `check_hostname=False`), or none at all.
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    check_hostname: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_hostname => Ok(ServerCertVerified::assertion()),
            outcome => outcome,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A handshake failure in words, with how to fix it.
pub fn describe(error: &rustls::Error, target: &str) -> String {
    use CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
            "TLS: the certificate of {target} is not signed by a trusted CA: {HOW_TO_TRUST}"
        ),
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => {
            format!(
                "TLS: the certificate of {target} is not valid for that host name: connect by a \
                 name the certificate covers, or pass server_hostname=... in ssl_params"
            )
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            format!(
                "TLS: the certificate of {target} has expired: the broker needs a renewed \
                 certificate (or this machine's clock is wrong); cert_reqs=ssl.CERT_NONE skips \
                 verification"
            )
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            format!("TLS: the certificate of {target} is not valid yet (check the clock)")
        }
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::HandshakeFailure
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA,
        ) => format!(
            "TLS: {target} rejected the handshake ({error}): it probably requires a client \
             certificate it trusts: pass cert=/key= (PEM) or certfile=/keyfile= in ssl_params"
        ),
        other => format!("TLS handshake with {target} failed: {other}"),
    }
}
