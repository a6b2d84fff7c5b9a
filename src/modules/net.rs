//! The deny-by-default HTTP client for module `http` tools: the network policy
//! (issue 5, item 4) and the one place a module's request leaves the server.
//!
//! A request may reach only a host its module declares ([`Policy`]): exact host
//! (case-insensitive) and port (a rule without a port means the scheme's default,
//! 443 or 80). It goes over https; plain http only when the policy allows loopback
//! http (test and development profiles) and every address the host resolves to is
//! loopback. Names are resolved through the injectable [`Resolver`], every address
//! is checked ([`classify`]: private, shared, link-local, loopback, reserved and
//! the IPv4-mapped/embedded forms of those are refused unless the host's rule says
//! `allow_private`; unspecified, multicast and broadcast always), and the
//! connection is pinned to exactly the checked addresses: each hop gets a reqwest
//! client whose only name override is that host and whose DNS resolver refuses
//! every other name, without proxies. Redirects are followed by hand, at most
//! `max_redirects`, each hop checked again; a redirect that leaves the declared
//! hosts is refused, and one that changes origin drops the credential headers.
//! The body is read under a hard byte cap and the whole exchange (resolution,
//! every hop, the last byte) under the request's timeout.
//!
//! Errors ([`NetError`]) name the host or the limit and never carry a header
//! value; every string in them, and the response's body and header values, are
//! scrubbed of the request's `secrets` (an upstream echoing a key cannot make a
//! tool return it). This module
//! never logs a URL, a header value or a body, never retries, and knows nothing of
//! manifests, credentials or metering.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use serde::{Deserialize, Serialize};

/// The redirect limit a policy gets when the module does not choose one.
pub const DEFAULT_MAX_REDIRECTS: u8 = 5;

/// One host a module may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRule {
    /// A DNS name or an IP literal (IPv6 with or without brackets); matched
    /// exactly, case-insensitively, never as a suffix or pattern.
    pub host: String,
    /// The only port allowed; `None` allows the scheme's default (443, or 80 for
    /// loopback http).
    #[serde(default)]
    pub port: Option<u16>,
    /// Lets the host resolve to a private, shared, link-local, loopback or
    /// reserved address (an internal API the operator declared on purpose).
    #[serde(default)]
    pub allow_private: bool,
}

/// What one module's requests may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub hosts: Vec<HostRule>,
    /// Plain http to a loopback address, and a literal loopback host without
    /// `allow_private`; the caller sets this only in test or development profiles.
    pub allow_loopback_http: bool,
    pub max_redirects: u8,
}

impl Default for Policy {
    /// Nothing reachable: no hosts, https only, the default redirect limit.
    fn default() -> Self {
        Policy {
            hosts: Vec::new(),
            allow_loopback_http: false,
            max_redirects: DEFAULT_MAX_REDIRECTS,
        }
    }
}

/// Name resolution, injectable so that tests can make a name resolve to a
/// private address without a network.
pub trait Resolver: Send + Sync {
    /// The addresses `host` resolves to (the port is a hint for resolvers that
    /// want one; the answer's ports are ignored).
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'_, std::io::Result<Vec<IpAddr>>>;
}

/// The system's resolver (`getaddrinfo` through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'_, std::io::Result<Vec<IpAddr>>> {
        let host = host.to_string();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), port)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// A fixed table of names (case-insensitive) to addresses; any other name fails
/// to resolve. For tests and the test profile.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver(pub HashMap<String, Vec<IpAddr>>);

impl Resolver for StaticResolver {
    fn resolve(&self, host: &str, _port: u16) -> BoxFuture<'_, std::io::Result<Vec<IpAddr>>> {
        let found = self
            .0
            .iter()
            .find(|(name, _)| name.trim_end_matches('.').eq_ignore_ascii_case(host))
            .map(|(_, addrs)| addrs.clone());
        let host = host.to_string();
        Box::pin(async move {
            found.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host} is not in the static resolver's table"),
                )
            })
        })
    }
}

/// One request a module tool makes.
#[derive(Clone)]
pub struct Request {
    /// GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS (any case).
    pub method: String,
    pub url: String,
    /// May carry credentials; their values are sent marked sensitive and never
    /// printed. Framing and routing headers (Host, Content-Length, …) are refused.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Bounds the whole exchange: resolution, every redirect hop, the last byte.
    pub timeout: Duration,
    /// The largest response body read; a bigger one fails as `TooLarge`.
    pub max_bytes: usize,
    /// Values scrubbed (as `***`) from every error string: the credentials the
    /// request carries.
    pub secrets: Vec<String>,
}

impl fmt::Debug for Request {
    // Derived Debug would print the credentials: header values and secrets print as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, _)| (n.as_str(), "***"))
            .collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &scrub(&self.url, &self.secrets))
            .field("headers", &headers)
            .field("body_bytes", &self.body.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// The final answer (after redirects): any status, non-2xx included. The
/// request's secrets are scrubbed from its body and header values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names in lower case, in the order received; a value that is not UTF-8 is
    /// converted lossily.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The response with the request's secrets replaced by `***` in its body
    /// and header values: an upstream that echoes a credential cannot make a
    /// module tool return it.
    fn scrubbed(self, secrets: &[String]) -> Response {
        if !secrets.iter().any(|s| !s.is_empty()) {
            return self;
        }
        Response {
            status: self.status,
            headers: self
                .headers
                .into_iter()
                .map(|(n, v)| (n, scrub(&v, secrets)))
                .collect(),
            body: scrub_bytes(self.body, secrets),
        }
    }

    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request was refused or failed. The text is safe to show a client: it
/// names hosts and limits, never a header value, and has the request's secrets
/// scrubbed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error(
        "module network policy: host {host} is not among the hosts the module declares \
         (deny by default; a rule without a port allows only 443, or 80 for loopback http)"
    )]
    HostNotAllowed { host: String },
    #[error(
        "module network policy: {scheme}:// to {host} is refused; module calls use https \
         (plain http only to a loopback address, in a test or development profile)"
    )]
    SchemeNotAllowed { scheme: String, host: String },
    #[error(
        "module network policy: {host} resolves to {addr}, {}; refused{}",
        classify(*.addr).describe(),
        if classify(*.addr).never_allowed() { " always" } else { " unless the module declares the host with allow_private" }
    )]
    PrivateAddress { host: String, addr: IpAddr },
    #[error(
        "module network policy: redirect to {to} refused; that host is not among the hosts the module declares"
    )]
    RedirectRefused { to: String },
    #[error("more than {limit} redirects (the module's redirect limit)")]
    TooManyRedirects { limit: u8 },
    #[error("no complete response within the {ms} ms timeout")]
    Timeout { ms: u64 },
    #[error("the response body exceeds the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("could not resolve {host}: {detail}")]
    Resolve { host: String, detail: String },
    #[error("could not reach {host}: {detail}")]
    Connect { host: String, detail: String },
    #[error("bad URL: {reason}")]
    BadUrl { reason: String },
    #[error("bad request: {reason}")]
    BadRequest { reason: String },
}

impl NetError {
    /// True for a refusal by the network policy (a "policy violation"), as
    /// opposed to a failure of an allowed request.
    pub fn is_policy_violation(&self) -> bool {
        matches!(
            self,
            NetError::HostNotAllowed { .. }
                | NetError::SchemeNotAllowed { .. }
                | NetError::PrivateAddress { .. }
                | NetError::RedirectRefused { .. }
        )
    }

    /// The same error with every secret replaced by `***` in every string field.
    fn scrubbed(self, secrets: &[String]) -> NetError {
        let s = |t: String| scrub(&t, secrets);
        match self {
            NetError::HostNotAllowed { host } => NetError::HostNotAllowed { host: s(host) },
            NetError::SchemeNotAllowed { scheme, host } => NetError::SchemeNotAllowed {
                scheme: s(scheme),
                host: s(host),
            },
            NetError::PrivateAddress { host, addr } => NetError::PrivateAddress {
                host: s(host),
                addr,
            },
            NetError::RedirectRefused { to } => NetError::RedirectRefused { to: s(to) },
            NetError::Resolve { host, detail } => NetError::Resolve {
                host: s(host),
                detail: s(detail),
            },
            NetError::Connect { host, detail } => NetError::Connect {
                host: s(host),
                detail: s(detail),
            },
            NetError::BadUrl { reason } => NetError::BadUrl { reason: s(reason) },
            NetError::BadRequest { reason } => NetError::BadRequest { reason: s(reason) },
            e @ (NetError::TooManyRedirects { .. }
            | NetError::Timeout { .. }
            | NetError::TooLarge { .. }) => e,
        }
    }
}

/// Replaces every occurrence of each non-empty secret in `text` with `***`,
/// ignoring ASCII case (a URL's host comes back lower-cased).
pub fn scrub(text: &str, secrets: &[String]) -> String {
    if !secrets.iter().any(|s| !s.is_empty()) {
        return text.to_string();
    }
    // A match starts and ends on character boundaries (the secret is UTF-8
    // and its non-ASCII bytes match exactly), so the result is still UTF-8.
    String::from_utf8_lossy(&scrub_bytes(text.as_bytes().to_vec(), secrets)).into_owned()
}

/// [`scrub`] over bytes: a response body or header value.
pub fn scrub_bytes(mut bytes: Vec<u8>, secrets: &[String]) -> Vec<u8> {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let needle = secret.as_bytes();
        let hit =
            |at: &[u8]| at.len() >= needle.len() && at[..needle.len()].eq_ignore_ascii_case(needle);
        if !(0..bytes.len()).any(|i| hit(&bytes[i..])) {
            continue;
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if hit(&bytes[i..]) {
                out.extend_from_slice(b"***");
                i += needle.len();
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        bytes = out;
    }
    bytes
}

// ---- addresses ----

/// What kind of address an IP is, for the private-address refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    Public,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7 (and the deprecated fec0::/10).
    Private,
    /// 100.64/10, carrier-grade NAT.
    Shared,
    /// 127/8, ::1.
    Loopback,
    /// 169.254/16 (cloud metadata lives here), fe80::/10.
    LinkLocal,
    /// 0/8, ::. Connecting to 0.0.0.0 reaches the local host.
    Unspecified,
    Multicast,
    Broadcast,
    /// Special-purpose ranges that are no public API: 192.0.0/24, 198.18/15,
    /// 240/4, documentation, discard and Teredo prefixes.
    Reserved,
}

impl AddrClass {
    fn describe(self) -> &'static str {
        match self {
            AddrClass::Public => "a public address",
            AddrClass::Private => "a private address",
            AddrClass::Shared => "a shared (carrier-grade NAT) address",
            AddrClass::Loopback => "a loopback address",
            AddrClass::LinkLocal => "a link-local address",
            AddrClass::Unspecified => "the unspecified address",
            AddrClass::Multicast => "a multicast address",
            AddrClass::Broadcast => "the broadcast address",
            AddrClass::Reserved => "a reserved address",
        }
    }

    /// Classes no HTTP API lives at; `allow_private` does not open them.
    fn never_allowed(self) -> bool {
        matches!(
            self,
            AddrClass::Unspecified | AddrClass::Multicast | AddrClass::Broadcast
        )
    }
}

/// The class of an address; IPv6 forms that embed an IPv4 address (mapped,
/// compatible, NAT64, 6to4) take the embedded address's class.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(a: Ipv4Addr) -> AddrClass {
    let [o0, o1, o2, _] = a.octets();
    if o0 == 0 {
        AddrClass::Unspecified
    } else if a.is_loopback() {
        AddrClass::Loopback
    } else if a.is_private() {
        AddrClass::Private
    } else if o0 == 100 && (o1 & 0xc0) == 64 {
        AddrClass::Shared
    } else if a.is_link_local() {
        AddrClass::LinkLocal
    } else if a.is_broadcast() {
        AddrClass::Broadcast
    } else if a.is_multicast() {
        AddrClass::Multicast
    } else if o0 >= 240
        || (o0 == 192 && o1 == 0 && o2 == 0)
        || (o0 == 198 && (o1 & 0xfe) == 18)
        || a.is_documentation()
    {
        AddrClass::Reserved
    } else {
        AddrClass::Public
    }
}

fn classify_v6(a: Ipv6Addr) -> AddrClass {
    let seg = a.segments();
    if a.is_unspecified() {
        return AddrClass::Unspecified;
    }
    if a.is_loopback() {
        return AddrClass::Loopback;
    }
    if let Some(v4) = embedded_v4(a) {
        return classify_v4(v4);
    }
    match seg[0] {
        s if s & 0xfe00 == 0xfc00 => AddrClass::Private,
        s if s & 0xffc0 == 0xfec0 => AddrClass::Private,
        s if s & 0xffc0 == 0xfe80 => AddrClass::LinkLocal,
        s if s & 0xff00 == 0xff00 => AddrClass::Multicast,
        // 2001:db8::/32 documentation, 2001::/32 Teredo (the client address
        // inside is obfuscated, so it cannot be checked).
        0x2001 if seg[1] == 0x0db8 || seg[1] == 0 => AddrClass::Reserved,
        // 100::/64 discard.
        0x0100 if seg[1..4] == [0, 0, 0] => AddrClass::Reserved,
        _ => AddrClass::Public,
    }
}

/// The IPv4 address inside an IPv6 one: mapped (::ffff:a.b.c.d), compatible
/// (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d) or 6to4 (2002:aabb:ccdd::).
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = a.segments();
    let low = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if let Some(v4) = a.to_ipv4_mapped() {
        return Some(v4);
    }
    if seg[..6] == [0; 6] {
        return Some(low(seg[6], seg[7]));
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low(seg[6], seg[7]));
    }
    if seg[0] == 0x2002 {
        return Some(low(seg[1], seg[2]));
    }
    None
}

// ---- the policy, pure ----

/// The scheme's port when the URL names none.
fn default_port(scheme: &str) -> u16 {
    if scheme == "http" { 80 } else { 443 }
}

/// `host` or `host:port` when the port is not the scheme's default, as messages show it.
fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// A host rule's name in the form the URL parser gives a host (lower case,
/// punycode, IPv6 in brackets, IPv4 in dotted decimal), or `None` if it is no host.
fn normalised_rule_host(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.');
    let bracketed = if host.parse::<Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let url = Url::parse(&format!("https://{bracketed}/")).ok()?;
    url.host_str().map(str::to_string)
}

/// The first rule naming this URL's host and port.
fn rule_for<'p>(policy: &'p Policy, url: &Url) -> Option<&'p HostRule> {
    let host = url.host_str()?.trim_end_matches('.');
    let port = url.port_or_known_default()?;
    policy.hosts.iter().find(|rule| {
        rule.port.unwrap_or_else(|| default_port(url.scheme())) == port
            && normalised_rule_host(&rule.host).is_some_and(|h| h == host)
    })
}

/// The address of a host the URL parser gave as an IP literal (IPv4 is always
/// dotted decimal there, IPv6 in brackets).
fn literal_ip(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// `localhost` and its subdomains always mean this machine (RFC 6761); they are
/// pinned to loopback without asking any resolver.
fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    name == "localhost" || name.ends_with(".localhost")
}

/// The URL's origin without credentials or path, for messages.
fn origin(url: &Url) -> String {
    format!("{}://{}", url.scheme(), authority(url))
}

/// URLs a module may use at all: http(s) with a host and no user info.
fn check_shape(url: &Url) -> Result<(), NetError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NetError::SchemeNotAllowed {
            scheme: url.scheme().to_string(),
            host: authority(url),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(NetError::BadUrl {
            reason: "the URL has no host".into(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(NetError::BadUrl {
            reason: format!(
                "the URL for {} carries user info; credentials go in headers",
                authority(url)
            ),
        });
    }
    Ok(())
}

/// Whether an address the host resolved to may be connected to.
fn check_addr(
    policy: &Policy,
    rule: &HostRule,
    literal_loopback: bool,
    host: &str,
    addr: IpAddr,
) -> Result<(), NetError> {
    let class = classify(addr);
    let ok = match class {
        AddrClass::Public => true,
        c if c.never_allowed() => false,
        AddrClass::Loopback if literal_loopback && policy.allow_loopback_http => true,
        _ => rule.allow_private,
    };
    if ok {
        Ok(())
    } else {
        Err(NetError::PrivateAddress {
            host: host.to_string(),
            addr,
        })
    }
}

/// Where one hop may connect: the name to pin (none for an IP literal, which
/// needs no resolution) and the checked addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Pinned {
    name: Option<String>,
    addrs: Vec<SocketAddr>,
}

/// Interprets a redirect: the next method, and whether the body goes along.
fn redirected_method(status: u16, method: &reqwest::Method) -> (reqwest::Method, bool) {
    use reqwest::Method;
    match status {
        303 if *method != Method::HEAD => (Method::GET, false),
        301 | 302 if *method == Method::POST => (Method::GET, false),
        _ => (method.clone(), true),
    }
}

/// Header names the request may not set: framing and routing belong to the client.
const CLIENT_OWNED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

/// Headers dropped when a redirect changes origin: they carry credentials meant
/// for the first origin (plus any header whose value holds a secret).
const ORIGIN_BOUND_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

fn build_headers(pairs: &[(String, String)], secrets: &[String]) -> Result<HeaderMap, NetError> {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| NetError::BadRequest {
                reason: format!("header name {name:?} is not valid"),
            })?;
        if CLIENT_OWNED_HEADERS.contains(&name.as_str()) {
            return Err(NetError::BadRequest {
                reason: format!("header {name} is set by the client, not by a module"),
            });
        }
        let mut value = HeaderValue::from_str(value).map_err(|_| NetError::BadRequest {
            // Never echo the value: it may be the credential.
            reason: format!("the value of header {name} is not a valid header value"),
        })?;
        if is_sensitive(name.as_str(), value.as_bytes(), secrets) {
            value.set_sensitive(true);
        }
        headers.append(name, value);
    }
    Ok(headers)
}

fn is_sensitive(name: &str, value: &[u8], secrets: &[String]) -> bool {
    ORIGIN_BOUND_HEADERS.contains(&name)
        || secrets
            .iter()
            .filter(|s| !s.is_empty())
            .any(|s| value.windows(s.len()).any(|w| w == s.as_bytes()))
}

fn parse_method(method: &str) -> Result<reqwest::Method, NetError> {
    let upper = method.trim().to_ascii_uppercase();
    match upper.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => {
            reqwest::Method::from_bytes(upper.as_bytes()).map_err(|_| NetError::BadRequest {
                reason: format!("method {method:?} is not valid"),
            })
        }
        _ => Err(NetError::BadRequest {
            reason: format!(
                "method {method:?} is not allowed (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS)"
            ),
        }),
    }
}

// ---- the client ----

/// A reqwest DNS resolver that resolves nothing: a hop's client may reach only
/// its pinned name, so any other lookup is a bug and fails.
struct NoDns;

impl reqwest::dns::Resolve for NoDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_string();
        Box::pin(async move {
            Err(format!("{name} is not the host this request was checked for").into())
        })
    }
}

/// How many pinned reqwest clients a [`Client`] keeps; past this the cache
/// starts over. A client is keyed by its pinned name and addresses, so reusing
/// one (and its idle connections) never reaches an address that was not checked.
const CACHED_CLIENTS: usize = 64;

/// The module HTTP client. Cheap to clone (`Arc`s inside); hold one per server.
#[derive(Clone)]
pub struct Client {
    resolver: Arc<dyn Resolver>,
    /// Building a reqwest client loads the platform's TLS roots (tens of
    /// milliseconds), so hop clients are kept per pinned destination.
    clients: Arc<Mutex<HashMap<Pinned, reqwest::Client>>>,
    /// CA certificates trusted beside the platform's roots.
    extra_roots: Arc<Vec<reqwest::Certificate>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(resolver: Arc<dyn Resolver>) -> Client {
        Client {
            resolver,
            clients: Arc::new(Mutex::new(HashMap::new())),
            extra_roots: Arc::new(Vec::new()),
        }
    }

    /// The same client also trusting these CA certificates (DER) beside the
    /// platform's roots: an operator's private CA for internal APIs, or a test CA.
    /// Host names are verified against them as against any root.
    pub fn with_extra_roots(self, ders: &[Vec<u8>]) -> Result<Client, NetError> {
        let roots = ders
            .iter()
            .enumerate()
            .map(|(i, der)| {
                reqwest::Certificate::from_der(der).map_err(|_| NetError::BadRequest {
                    reason: format!("extra root certificate {i} is not a DER certificate"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The certificates are parsed when a client is built: fail here, once,
        // rather than on every call.
        reqwest::Client::builder()
            .tls_certs_merge(roots.iter().cloned())
            .build()
            .map_err(|e| NetError::BadRequest {
                reason: format!(
                    "the extra root certificates are not usable: {}",
                    innermost(&e)
                ),
            })?;
        Ok(Client {
            resolver: self.resolver,
            clients: Arc::new(Mutex::new(HashMap::new())),
            extra_roots: Arc::new(roots),
        })
    }

    /// The reqwest client pinned to `pinned`: cached, or built off the async
    /// workers (it reads certificate files).
    async fn client_for(&self, pinned: &Pinned, url: &Url) -> Result<reqwest::Client, NetError> {
        let cached = lock(&self.clients).get(pinned).cloned();
        if let Some(client) = cached {
            return Ok(client);
        }
        let key = pinned.clone();
        let roots = self.extra_roots.clone();
        let built = tokio::task::spawn_blocking(move || pinned_client(&key, &roots))
            .await
            .map_err(|_| "the client builder stopped".to_string())
            .and_then(|r| r.map_err(|e| innermost(&e)));
        let client = built.map_err(|detail| NetError::Connect {
            host: authority(url),
            detail: format!("could not set up the HTTP client: {detail}"),
        })?;
        let mut clients = lock(&self.clients);
        if clients.len() >= CACHED_CLIENTS {
            clients.clear();
        }
        clients.insert(pinned.clone(), client.clone());
        Ok(client)
    }

    /// Sends `req` under `policy`: checks, resolves, pins, follows allowed
    /// redirects and reads the body, all within `req.timeout`. A non-2xx status
    /// is a `Response`, not an error.
    pub async fn send(&self, policy: &Policy, req: Request) -> Result<Response, NetError> {
        let secrets = req.secrets.clone();
        let limit = req.timeout;
        let outcome = match tokio::time::timeout(limit, self.exchange(policy, req)).await {
            Ok(r) => r,
            Err(_) => Err(NetError::Timeout {
                ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            }),
        };
        match outcome {
            Ok(resp) => Ok(resp.scrubbed(&secrets)),
            Err(e) => Err(e.scrubbed(&secrets)),
        }
    }

    async fn exchange(&self, policy: &Policy, req: Request) -> Result<Response, NetError> {
        let mut method = parse_method(&req.method)?;
        let mut headers = build_headers(&req.headers, &req.secrets)?;
        let mut body = req.body;
        let mut url = Url::parse(req.url.trim()).map_err(|e| NetError::BadUrl {
            reason: format!("the URL does not parse: {e}"),
        })?;
        check_shape(&url)?;
        let mut redirects = 0u8;
        loop {
            let pinned = self.admit(policy, &url).await?;
            let client = self.client_for(&pinned, &url).await?;
            let resp = hop(&client, &url, &method, &headers, body.clone()).await?;
            let status = resp.status().as_u16();
            let location = match (status, resp.headers().get(LOCATION)) {
                (301 | 302 | 303 | 307 | 308, Some(loc)) => loc,
                _ => return read(resp, &url, req.max_bytes).await,
            };
            if redirects >= policy.max_redirects {
                return Err(NetError::TooManyRedirects {
                    limit: policy.max_redirects,
                });
            }
            redirects += 1;
            let next = location
                .to_str()
                .ok()
                .and_then(|l| url.join(l.trim()).ok())
                .ok_or_else(|| NetError::BadUrl {
                    reason: format!(
                        "{} answered {status} with a Location that is not a URL",
                        authority(&url)
                    ),
                })?;
            check_shape(&next)?;
            if rule_for(policy, &next).is_none() {
                return Err(NetError::RedirectRefused { to: origin(&next) });
            }
            let (next_method, keep_body) = redirected_method(status, &method);
            if !keep_body {
                body = None;
                headers.remove(reqwest::header::CONTENT_TYPE);
            }
            if next.origin() != url.origin() {
                headers = without_credentials(headers, &req.secrets);
            }
            method = next_method;
            url = next;
        }
    }

    /// Checks one hop's URL against the policy and resolves it to the addresses
    /// the connection will be pinned to.
    async fn admit(&self, policy: &Policy, url: &Url) -> Result<Pinned, NetError> {
        check_shape(url)?;
        let scheme = url.scheme();
        let shown = authority(url);
        let refuse_scheme = || NetError::SchemeNotAllowed {
            scheme: scheme.to_string(),
            host: shown.clone(),
        };
        let Some(rule) = rule_for(policy, url) else {
            return Err(NetError::HostNotAllowed { host: shown });
        };
        if scheme == "http" && !policy.allow_loopback_http {
            return Err(refuse_scheme());
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let host = url.host_str().unwrap_or_default();
        let (name, ips, literal_loopback) = match literal_ip(host) {
            Some(ip) => (None, vec![ip], classify(ip) == AddrClass::Loopback),
            None if is_localhost(host) => (
                Some(host.to_string()),
                vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()],
                true,
            ),
            None => {
                let ips =
                    self.resolver
                        .resolve(host, port)
                        .await
                        .map_err(|e| NetError::Resolve {
                            host: shown.clone(),
                            detail: e.to_string(),
                        })?;
                (Some(host.to_string()), ips, false)
            }
        };
        if ips.is_empty() {
            return Err(NetError::Resolve {
                host: shown,
                detail: "no addresses".into(),
            });
        }
        for ip in &ips {
            check_addr(policy, rule, literal_loopback, host, *ip)?;
        }
        if scheme == "http" && !ips.iter().all(|ip| classify(*ip) == AddrClass::Loopback) {
            return Err(refuse_scheme());
        }
        let mut addrs: Vec<SocketAddr> = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        // One order per address set (IPv4 first), so a round-robin answer
        // reuses its cached client.
        addrs.sort_by_key(|a| (a.is_ipv6(), *a));
        addrs.dedup();
        Ok(Pinned { name, addrs })
    }
}

/// Drops the headers that must not follow a redirect to another origin.
fn without_credentials(headers: HeaderMap, secrets: &[String]) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for (name, value) in &headers {
        if !is_sensitive(name.as_str(), value.as_bytes(), secrets) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// A reqwest client that can reach only `pinned`: its one name override is the
/// checked addresses, every other name fails to resolve, no proxy, no redirects.
fn pinned_client(
    pinned: &Pinned,
    extra_roots: &[reqwest::Certificate],
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .referer(false)
        .pool_max_idle_per_host(4)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("vaultline-module/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(NoDns));
    if !extra_roots.is_empty() {
        builder = builder.tls_certs_merge(extra_roots.iter().cloned());
    }
    if let Some(name) = &pinned.name {
        builder = builder.resolve_to_addrs(name, &pinned.addrs);
    }
    builder.build()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map is only ever inserted into or cleared whole; a panic elsewhere
    // cannot leave it inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One request to one pinned host, without following redirects.
async fn hop(
    client: &reqwest::Client,
    url: &Url,
    method: &reqwest::Method,
    headers: &HeaderMap,
    body: Option<Vec<u8>>,
) -> Result<reqwest::Response, NetError> {
    let mut request = client
        .request(method.clone(), url.clone())
        .headers(headers.clone());
    if let Some(body) = body {
        request = request.body(body);
    }
    request.send().await.map_err(|e| NetError::Connect {
        host: authority(url),
        detail: innermost(&e),
    })
}

/// Reads the final response's body under the byte cap.
async fn read(
    mut resp: reqwest::Response,
    url: &Url,
    max_bytes: usize,
) -> Result<Response, NetError> {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let too_large = || NetError::TooLarge { limit: max_bytes };
    if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| NetError::Connect {
        host: authority(url),
        detail: format!(
            "the connection broke while reading the response: {}",
            innermost(&e)
        ),
    })? {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// The innermost cause of a reqwest error (refused, reset, TLS), without the URL.
fn innermost(e: &reqwest::Error) -> String {
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        // reqwest's own text would name the URL, which may carry a secret.
        cause = "the request failed".to_string();
    }
    cause
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::{Path, Query};
    use axum::http::{HeaderMap as AxHeaders, Method, StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::{any, get};

    const TOKEN: &str = "sk-secret-9f8e7d6c5b4a";

    /// A small HTTP API on 127.0.0.1:0 with the behaviours the policy must handle.
    async fn server() -> u16 {
        let app = Router::new()
            .route(
                "/ok",
                get(|h: AxHeaders| async move { format!("ok host={}", host_of(&h)) }),
            )
            .route(
                "/redirect",
                any(|q: Query<HashMap<String, String>>| async move {
                    let code = q.get("code").and_then(|c| c.parse().ok()).unwrap_or(302);
                    (
                        StatusCode::from_u16(code).unwrap(),
                        [(header::LOCATION, q["to"].clone())],
                    )
                }),
            )
            .route(
                "/chain/{n}",
                get(|Path(n): Path<u32>| async move {
                    if n == 0 {
                        "end".into_response()
                    } else {
                        (
                            StatusCode::FOUND,
                            [(header::LOCATION, format!("/chain/{}", n - 1))],
                        )
                            .into_response()
                    }
                }),
            )
            .route(
                "/echo",
                any(|m: Method, h: AxHeaders, body: String| async move {
                    // Reversed, so the scrubbing of echoed secrets leaves it readable.
                    let auth: String = h
                        .get(header::AUTHORIZATION)
                        .map_or("enon", |v| v.to_str().unwrap_or("?"))
                        .chars()
                        .rev()
                        .collect();
                    format!("{m} auth={auth} body={body}")
                }),
            )
            .route(
                "/mirror",
                get(|h: AxHeaders| async move {
                    let auth = h.get(header::AUTHORIZATION).unwrap().clone();
                    let text = format!("{{\"seen\":\"{}\"}}", auth.to_str().unwrap());
                    ([("x-seen", auth)], text)
                }),
            )
            .route("/big", get(|| async { "x".repeat(1000) }))
            .route(
                "/big-chunked",
                get(|| async {
                    let chunks = (0..10).map(|_| {
                        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from("y".repeat(100)))
                    });
                    axum::body::Body::from_stream(futures::stream::iter(chunks))
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    "late"
                }),
            )
            .route(
                "/leak",
                get(|h: AxHeaders| async move {
                    // Echoes the credential into a redirect off the declared hosts.
                    let auth = h.get(header::AUTHORIZATION).unwrap().to_str().unwrap();
                    let token = auth.trim_start_matches("Bearer ");
                    (
                        StatusCode::FOUND,
                        [(header::LOCATION, format!("https://{token}.evil.test/x"))],
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        port
    }

    fn host_of(h: &AxHeaders) -> String {
        h.get(header::HOST)
            .map_or("", |v| v.to_str().unwrap_or(""))
            .to_string()
    }

    fn rule(host: &str, port: Option<u16>, allow_private: bool) -> HostRule {
        HostRule {
            host: host.into(),
            port,
            allow_private,
        }
    }

    fn policy(hosts: Vec<HostRule>) -> Policy {
        Policy {
            hosts,
            allow_loopback_http: true,
            max_redirects: 5,
        }
    }

    fn get_req(url: impl Into<String>) -> Request {
        Request {
            method: "GET".into(),
            url: url.into(),
            headers: vec![],
            body: None,
            timeout: Duration::from_secs(5),
            max_bytes: 64 * 1024,
            secrets: vec![],
        }
    }

    /// A resolver that counts its lookups, over a static table.
    struct Counting(StaticResolver, Arc<AtomicUsize>);

    impl Resolver for Counting {
        fn resolve(&self, host: &str, port: u16) -> BoxFuture<'_, std::io::Result<Vec<IpAddr>>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.resolve(host, port)
        }
    }

    fn table(pairs: &[(&str, &[&str])]) -> StaticResolver {
        StaticResolver(
            pairs
                .iter()
                .map(|(n, a)| {
                    (
                        n.to_string(),
                        a.iter().map(|a| a.parse().unwrap()).collect(),
                    )
                })
                .collect(),
        )
    }

    fn client(pairs: &[(&str, &[&str])]) -> (Client, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        (Client::new(Arc::new(Counting(table(pairs), n.clone()))), n)
    }

    fn text(r: &Response) -> String {
        String::from_utf8_lossy(&r.body).into_owned()
    }

    #[tokio::test]
    async fn an_allowed_host_is_reached() {
        let port = server().await;
        let (c, _) = client(&[]);
        let p = policy(vec![rule("127.0.0.1", Some(port), false)]);
        let r = c
            .send(&p, get_req(format!("http://127.0.0.1:{port}/ok")))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(text(&r), format!("ok host=127.0.0.1:{port}"));
        assert!(r.header("Content-Type").unwrap().starts_with("text/plain"));
        // A non-2xx status is a response, not an error.
        let r = c
            .send(&p, get_req(format!("http://127.0.0.1:{port}/nowhere")))
            .await
            .unwrap();
        assert_eq!(r.status, 404);
        // Both calls went through one pinned client (and its pooled connection).
        assert_eq!(lock(&c.clients).len(), 1);
    }

    #[tokio::test]
    async fn a_round_robin_answer_pins_one_address_set() {
        let (c, _) = client(&[("rr.test", &["::1", "127.0.0.2", "127.0.0.1", "127.0.0.2"])]);
        let p = policy(vec![rule("rr.test", Some(8080), true)]);
        let url = Url::parse("http://rr.test:8080/").unwrap();
        let pinned = c.admit(&p, &url).await.unwrap();
        let want: Vec<SocketAddr> = ["127.0.0.1:8080", "127.0.0.2:8080", "[::1]:8080"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(
            pinned,
            Pinned {
                name: Some("rr.test".into()),
                addrs: want
            }
        );
    }

    #[tokio::test]
    async fn an_undeclared_host_is_refused_without_resolving_or_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (c, lookups) = client(&[("other.test", &["127.0.0.1"])]);
        let p = policy(vec![rule("api.example.com", None, false)]);
        let cases = [
            (
                format!("http://127.0.0.1:{port}/"),
                format!("127.0.0.1:{port}"),
            ),
            (
                format!("http://other.test:{port}/"),
                format!("other.test:{port}"),
            ),
            (
                "https://API.example.com.evil.test/".into(),
                "api.example.com.evil.test".into(),
            ),
            (
                "https://api.example.com:8443/".into(),
                "api.example.com:8443".into(),
            ),
            ("https://example.com/".into(), "example.com".into()),
        ];
        for (url, host) in cases {
            let e = c.send(&p, get_req(&url)).await.unwrap_err();
            assert_eq!(e, NetError::HostNotAllowed { host: host.clone() }, "{url}");
            assert!(e.is_policy_violation());
            assert!(e.to_string().contains(&host), "{e}");
        }
        assert_eq!(lookups.load(Ordering::SeqCst), 0, "no name was resolved");
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(accepted.is_err(), "nothing connected to the listener");
    }

    #[tokio::test]
    async fn hosts_match_exactly_ignoring_case_and_ports_default_to_443() {
        let (c, lookups) = client(&[("api.example.com", &["10.1.2.3"])]);
        // The rule's case and the URL's case do not matter; the port does.
        let p = policy(vec![rule("API.Example.COM", None, false)]);
        let e = c
            .send(&p, get_req("https://Api.EXAMPLE.com/v1"))
            .await
            .unwrap_err();
        // Matched the rule (so it was resolved), then refused for the address.
        assert!(matches!(e, NetError::PrivateAddress { .. }), "{e}");
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
        let e = c
            .send(&p, get_req("https://api.example.com:444/"))
            .await
            .unwrap_err();
        assert!(matches!(e, NetError::HostNotAllowed { .. }), "{e}");
        let p = policy(vec![rule("api.example.com", Some(8443), false)]);
        let e = c
            .send(&p, get_req("https://api.example.com/"))
            .await
            .unwrap_err();
        assert!(matches!(e, NetError::HostNotAllowed { .. }), "{e}");
    }

    #[tokio::test]
    async fn https_is_required_except_for_loopback_in_a_test_profile() {
        let port = server().await;
        let (c, lookups) = client(&[("api.example.com", &["93.184.216.34"])]);
        let hosts = vec![
            rule("api.example.com", None, false),
            rule("127.0.0.1", Some(port), false),
        ];
        let mut p = policy(hosts);
        p.allow_loopback_http = false;
        let e = c
            .send(&p, get_req("http://api.example.com/"))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            NetError::SchemeNotAllowed {
                scheme: "http".into(),
                host: "api.example.com".into()
            }
        );
        assert!(e.to_string().contains("https"), "{e}");
        // Loopback http too, outside a test or development profile.
        let e = c
            .send(&p, get_req(format!("http://127.0.0.1:{port}/ok")))
            .await
            .unwrap_err();
        assert!(matches!(e, NetError::SchemeNotAllowed { .. }), "{e}");
        assert_eq!(lookups.load(Ordering::SeqCst), 0);
        // With loopback http allowed, a public name is still https only.
        p.allow_loopback_http = true;
        let e = c
            .send(&p, get_req("http://api.example.com/"))
            .await
            .unwrap_err();
        assert!(matches!(e, NetError::SchemeNotAllowed { .. }), "{e}");
        // Other schemes never.
        for url in [
            "ftp://api.example.com/",
            "file:///etc/passwd",
            "ws://api.example.com/",
        ] {
            let e = c.send(&p, get_req(url)).await.unwrap_err();
            assert!(matches!(e, NetError::SchemeNotAllowed { .. }), "{url}: {e}");
        }
    }

    #[tokio::test]
    async fn a_redirect_to_an_undeclared_host_is_refused() {
        let port = server().await;
        let (c, _) = client(&[]);
        let p = policy(vec![rule("127.0.0.1", Some(port), false)]);
        // `localhost` is the same server, but not a declared host.
        let to = format!("http://localhost:{port}/ok");
        let url = format!("http://127.0.0.1:{port}/redirect?to={to}");
        let e = c.send(&p, get_req(url)).await.unwrap_err();
        assert_eq!(
            e,
            NetError::RedirectRefused {
                to: format!("http://localhost:{port}")
            }
        );
        assert!(e.is_policy_violation());
        for code in [301, 303, 307, 308] {
            let url = format!("http://127.0.0.1:{port}/redirect?code={code}&to=https://evil.test/");
            let e = c.send(&p, get_req(url)).await.unwrap_err();
            assert_eq!(
                e.to_string(),
                "module network policy: redirect to https://evil.test refused; that host is not among the hosts the module declares"
            );
        }
        // Each hop is resolved and checked again: a declared name that resolves
        // to a private address is refused after a redirect too.
        let (c2, lookups) = client(&[("internal.test", &["10.0.0.5"])]);
        let mut p2 = p.clone();
        p2.hosts.push(rule("internal.test", Some(port), false));
        let url = format!("http://127.0.0.1:{port}/redirect?to=http://internal.test:{port}/ok");
        let e = c2.send(&p2, get_req(url)).await.unwrap_err();
        assert_eq!(
            e,
            NetError::PrivateAddress {
                host: "internal.test".into(),
                addr: "10.0.0.5".parse().unwrap()
            }
        );
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
        // A redirect to a declared host over a refused scheme.
        let url = format!("http://127.0.0.1:{port}/redirect?to=ftp://127.0.0.1:{port}/");
        let e = c.send(&p, get_req(url)).await.unwrap_err();
        assert!(matches!(e, NetError::SchemeNotAllowed { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_redirect_chain_within_the_declared_hosts_is_followed() {
        let port = server().await;
        let (c, _) = client(&[]);
        let p = policy(vec![
            rule("127.0.0.1", Some(port), false),
            rule("localhost", Some(port), false),
        ]);
        // 127.0.0.1 → localhost → /chain/2 → /chain/1 → /chain/0.
        let to = format!("http://localhost:{port}/chain/2");
        let r = c
            .send(
                &p,
                get_req(format!("http://127.0.0.1:{port}/redirect?to={to}")),
            )
            .await
            .unwrap();
        assert_eq!((r.status, text(&r)), (200, "end".to_string()));
    }

    #[tokio::test]
    async fn redirects_past_the_limit_fail() {
        let port = server().await;
        let (c, _) = client(&[]);
        let mut p = policy(vec![rule("127.0.0.1", Some(port), false)]);
        p.max_redirects = 3;
        let r = c
            .send(&p, get_req(format!("http://127.0.0.1:{port}/chain/3")))
            .await
            .unwrap();
        assert_eq!(text(&r), "end");
        let e = c
            .send(&p, get_req(format!("http://127.0.0.1:{port}/chain/4")))
            .await
            .unwrap_err();
        assert_eq!(e, NetError::TooManyRedirects { limit: 3 });
        assert!(e.to_string().contains("more than 3 redirects"), "{e}");
        p.max_redirects = 0;
        let e = c
            .send(&p, get_req(format!("http://127.0.0.1:{port}/chain/1")))
            .await
            .unwrap_err();
        assert_eq!(e, NetError::TooManyRedirects { limit: 0 });
    }

    #[tokio::test]
    async fn redirects_keep_or_drop_method_body_and_credentials() {
        let port = server().await;
        let (c, _) = client(&[]);
        let p = policy(vec![
            rule("127.0.0.1", Some(port), false),
            rule("localhost", Some(port), false),
        ]);
        let post = |url: String| Request {
            method: "post".into(),
            headers: vec![("Authorization".into(), format!("Bearer {TOKEN}"))],
            body: Some(b"payload".to_vec()),
            secrets: vec![TOKEN.into()],
            ..get_req(url)
        };
        let via =
            |code: u16, to: &str| format!("http://127.0.0.1:{port}/redirect?code={code}&to={to}");
        // The server saw exactly the credential (it answers it reversed).
        let sent: String = format!("Bearer {TOKEN}").chars().rev().collect();
        let same = format!("http://127.0.0.1:{port}/echo");
        let other = format!("http://localhost:{port}/echo");
        let cases = [
            (307, &same, format!("POST auth={sent} body=payload")),
            (308, &same, format!("POST auth={sent} body=payload")),
            (303, &same, format!("GET auth={sent} body=")),
            (302, &same, format!("GET auth={sent} body=")),
            // Another origin gets neither the credential nor (for 303) the body.
            (307, &other, "POST auth=none body=payload".to_string()),
            (303, &other, "GET auth=none body=".to_string()),
        ];
        for (code, to, want) in cases {
            let r = c.send(&p, post(via(code, to))).await.unwrap();
            assert_eq!(text(&r), want, "{code} to {to}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let (c, _) = client(&[
            ("internal.test", &["10.0.0.5"]),
            ("metadata.test", &["169.254.169.254"]),
            ("mapped.test", &["::ffff:127.0.0.1"]),
            ("loop.test", &["127.0.0.1"]),
            ("cgnat.test", &["100.64.0.1"]),
            ("ula.test", &["fd00::1"]),
            ("mixed.test", &["93.184.216.34", "192.168.1.1"]),
        ]);
        let cases = [
            ("internal.test", "10.0.0.5", "a private address"),
            ("metadata.test", "169.254.169.254", "a link-local address"),
            ("mapped.test", "::ffff:127.0.0.1", "a loopback address"),
            ("loop.test", "127.0.0.1", "a loopback address"),
            (
                "cgnat.test",
                "100.64.0.1",
                "a shared (carrier-grade NAT) address",
            ),
            ("ula.test", "fd00::1", "a private address"),
            ("mixed.test", "192.168.1.1", "a private address"),
        ];
        for (host, addr, class) in cases {
            let p = policy(vec![rule(host, None, false)]);
            let e = c
                .send(&p, get_req(format!("https://{host}/v1")))
                .await
                .unwrap_err();
            assert_eq!(
                e,
                NetError::PrivateAddress {
                    host: host.into(),
                    addr: addr.parse().unwrap()
                },
                "{host}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains(host) && msg.contains(addr) && msg.contains(class),
                "{msg}"
            );
            assert!(msg.contains("allow_private"), "{msg}");
        }
        // Literal private addresses in the URL are refused the same way.
        let p = policy(vec![
            rule("10.0.0.5", None, false),
            rule("::ffff:a9fe:a9fe", None, false),
        ]);
        for (url, addr) in [
            ("https://10.0.0.5/", "10.0.0.5"),
            (
                "https://[::ffff:169.254.169.254]/",
                "::ffff:169.254.169.254",
            ),
        ] {
            let e = c.send(&p, get_req(url)).await.unwrap_err();
            assert!(
                matches!(&e, NetError::PrivateAddress { addr: a, .. } if *a == addr.parse::<IpAddr>().unwrap()),
                "{url}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn allow_private_lets_a_declared_internal_host_through() {
        let port = server().await;
        let (c, _) = client(&[("api.internal.test", &["127.0.0.1"])]);
        let mut p = policy(vec![rule("api.internal.test", Some(port), true)]);
        let url = format!("http://api.internal.test:{port}/ok");
        let r = c.send(&p, get_req(&url)).await.unwrap();
        // It reached the pinned address under its own name.
        assert_eq!(text(&r), format!("ok host=api.internal.test:{port}"));
        // Without allow_private, the same name is refused.
        p.hosts[0].allow_private = false;
        let e = c.send(&p, get_req(&url)).await.unwrap_err();
        assert!(matches!(e, NetError::PrivateAddress { .. }), "{e}");
        // allow_private never opens the unspecified address (0.0.0.0 reaches this host).
        let (c, _) = client(&[("zero.test", &["0.0.0.0"])]);
        let p = policy(vec![rule("zero.test", Some(port), true)]);
        let e = c
            .send(&p, get_req(format!("http://zero.test:{port}/ok")))
            .await
            .unwrap_err();
        assert!(matches!(e, NetError::PrivateAddress { .. }), "{e}");
        assert!(e.to_string().contains("refused always"), "{e}");
    }

    #[tokio::test]
    async fn https_connects_to_exactly_the_checked_address() {
        // A bare listener stands in for the server: the client's TLS hello must
        // arrive here (the address the static resolver gave), naming the host.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hello = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap();
            buf.truncate(n);
            buf
        });
        let (c, _) = client(&[("pinned.test", &["127.0.0.1"])]);
        let p = policy(vec![rule("pinned.test", Some(port), true)]);
        let e = c
            .send(&p, get_req(format!("https://pinned.test:{port}/")))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, NetError::Connect { host, .. } if *host == format!("pinned.test:{port}")),
            "{e}"
        );
        let hello = hello.await.unwrap();
        assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
        assert!(
            hello.windows(11).any(|w| w == b"pinned.test"),
            "SNI names the host"
        );
    }

    /// A TLS server on 127.0.0.1:0 with the synthetic certificate for
    /// `api.tls.test` (fixtures/tls/), answering every request with `ok`.
    async fn tls_server() -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_rustls::rustls;
        let fixture = |name: &str| {
            std::fs::read(format!(
                "{}/fixtures/tls/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        let cert = rustls::pki_types::CertificateDer::from(fixture("leaf.der"));
        let key = rustls::pki_types::PrivateKeyDer::try_from(fixture("leaf.key.der")).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A failed handshake (the client refused the certificate) ends here.
                    let Ok(mut tls) = acceptor.accept(sock).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer =
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                    let _ = tls.write_all(answer).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }

    fn test_ca() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls/ca.der")).unwrap()
    }

    #[tokio::test]
    async fn https_to_a_pinned_address_verifies_the_host_name() {
        let port = tls_server().await;
        let names = [
            ("api.tls.test", &["127.0.0.1"][..]),
            ("other.tls.test", &["127.0.0.1"][..]),
        ];
        let (plain, _) = client(&names);
        let c = plain.clone().with_extra_roots(&[test_ca()]).unwrap();
        let p = policy(vec![
            rule("api.tls.test", Some(port), true),
            rule("other.tls.test", Some(port), true),
        ]);
        // The connection goes to the checked 127.0.0.1; the certificate is
        // verified for the name, as without pinning.
        let r = c
            .send(&p, get_req(format!("https://api.tls.test:{port}/v1")))
            .await
            .unwrap();
        assert_eq!((r.status, text(&r)), (200, "ok".to_string()));
        // Same address, a name the certificate does not cover: refused by TLS.
        let e = c
            .send(&p, get_req(format!("https://other.tls.test:{port}/v1")))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, NetError::Connect { host, .. } if *host == format!("other.tls.test:{port}")),
            "{e}"
        );
        assert!(e.to_string().contains("not valid for name"), "{e}");
        // Without the test CA, the platform's roots do not know the issuer.
        let e = plain
            .send(&p, get_req(format!("https://api.tls.test:{port}/v1")))
            .await
            .unwrap_err();
        assert!(matches!(e, NetError::Connect { .. }), "{e}");
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
        let e = plain
            .with_extra_roots(&[b"not a certificate".to_vec()])
            .unwrap_err();
        assert!(matches!(e, NetError::BadRequest { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_too_large() {
        let port = server().await;
        let (c, _) = client(&[]);
        let p = policy(vec![rule("127.0.0.1", Some(port), false)]);
        for path in ["big", "big-chunked"] {
            let req = Request {
                max_bytes: 999,
                ..get_req(format!("http://127.0.0.1:{port}/{path}"))
            };
            let e = c.send(&p, req).await.unwrap_err();
            assert_eq!(e, NetError::TooLarge { limit: 999 }, "{path}");
            assert!(e.to_string().contains("999-byte limit"), "{e}");
            let req = Request {
                max_bytes: 1000,
                ..get_req(format!("http://127.0.0.1:{port}/{path}"))
            };
            assert_eq!(c.send(&p, req).await.unwrap().body.len(), 1000, "{path}");
        }
    }

    #[tokio::test]
    async fn a_slow_server_times_out() {
        let port = server().await;
        let (c, _) = client(&[]);
        let p = policy(vec![rule("127.0.0.1", Some(port), false)]);
        let req = Request {
            timeout: Duration::from_millis(300),
            ..get_req(format!("http://127.0.0.1:{port}/slow"))
        };
        let started = std::time::Instant::now();
        let e = c.send(&p, req).await.unwrap_err();
        assert_eq!(e, NetError::Timeout { ms: 300 });
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(e.to_string().contains("300 ms"), "{e}");
    }

    #[tokio::test]
    async fn a_secret_never_appears_in_an_error() {
        let port = server().await;
        let (c, _) = client(&[]);
        let p = policy(vec![rule("127.0.0.1", Some(port), false)]);
        let with_secret = |url: String| Request {
            headers: vec![("Authorization".into(), format!("Bearer {TOKEN}"))],
            secrets: vec![TOKEN.into()],
            ..get_req(url)
        };
        // The server echoes the credential into a redirect's host name.
        let e = c
            .send(&p, with_secret(format!("http://127.0.0.1:{port}/leak")))
            .await
            .unwrap_err();
        assert!(matches!(e, NetError::RedirectRefused { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            !msg.to_ascii_lowercase()
                .contains(&TOKEN.to_ascii_lowercase()),
            "{msg}"
        );
        assert!(msg.contains("https://***.evil.test"), "{msg}");
        // The credential in the URL of an undeclared host, and in a bad header value.
        let e = c
            .send(
                &p,
                with_secret(format!("https://{TOKEN}.example.com/?key={TOKEN}")),
            )
            .await
            .unwrap_err();
        assert!(!e.to_string().contains(TOKEN), "{e}");
        let bad = Request {
            headers: vec![("x-api-key".into(), format!("{TOKEN}\n"))],
            ..with_secret(format!("http://127.0.0.1:{port}/ok"))
        };
        let e = c.send(&p, bad).await.unwrap_err();
        assert!(
            matches!(e, NetError::BadRequest { .. }) && !e.to_string().contains(TOKEN),
            "{e}"
        );
        assert!(e.to_string().contains("x-api-key"), "{e}");
        // Nor in the request's Debug.
        let dbg = format!(
            "{:?}",
            with_secret(format!("http://127.0.0.1:{port}/?k={TOKEN}"))
        );
        assert!(!dbg.contains(TOKEN), "{dbg}");
    }

    #[tokio::test]
    async fn a_secret_echoed_by_the_upstream_is_scrubbed_from_the_response() {
        let port = server().await;
        let (c, _) = client(&[]);
        let p = policy(vec![rule("127.0.0.1", Some(port), false)]);
        let req = Request {
            headers: vec![("Authorization".into(), format!("Bearer {TOKEN}"))],
            secrets: vec![TOKEN.into()],
            ..get_req(format!("http://127.0.0.1:{port}/mirror"))
        };
        let r = c.send(&p, req).await.unwrap();
        assert_eq!(text(&r), r#"{"seen":"Bearer ***"}"#);
        assert_eq!(r.header("x-seen"), Some("Bearer ***"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["seen"], "Bearer ***", "still JSON");
    }

    #[tokio::test]
    async fn bad_requests_name_what_is_wrong() {
        let (c, _) = client(&[]);
        let p = policy(vec![rule("api.example.com", None, false)]);
        let cases = [
            (get_req("not a url"), "does not parse"),
            (get_req("https://user:pw@api.example.com/"), "user info"),
            (
                Request {
                    method: "TRACE".into(),
                    ..get_req("https://api.example.com/")
                },
                "TRACE",
            ),
            (
                Request {
                    headers: vec![("Host".into(), "internal".into())],
                    ..get_req("https://api.example.com/")
                },
                "header host",
            ),
            (
                Request {
                    headers: vec![("bad header".into(), "v".into())],
                    ..get_req("https://api.example.com/")
                },
                "bad header",
            ),
        ];
        for (req, want) in cases {
            let e = c.send(&p, req).await.unwrap_err();
            assert!(e.to_string().contains(want), "{e} should contain {want}");
            assert!(!e.is_policy_violation());
        }
        // A declared host nobody listens on: a connection failure naming the host.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let p2 = policy(vec![rule("127.0.0.1", Some(port), false)]);
        let e = c
            .send(&p2, get_req(format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, NetError::Connect { host, .. } if *host == format!("127.0.0.1:{port}")),
            "{e}"
        );
        assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
        assert!(!e.is_policy_violation());
        // A name that does not resolve.
        let e = c
            .send(&p, get_req("https://api.example.com/"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, NetError::Resolve { host, .. } if host == "api.example.com"),
            "{e}"
        );
    }

    #[test]
    fn address_classes() {
        use AddrClass::*;
        let cases = [
            ("93.184.216.34", Public),
            ("8.8.8.8", Public),
            ("10.0.0.5", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.1", Public),
            ("192.168.0.1", Private),
            ("100.64.0.1", Shared),
            ("100.127.255.255", Shared),
            ("100.128.0.1", Public),
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("169.254.169.254", LinkLocal),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("224.0.0.1", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.0.0.8", Reserved),
            ("198.18.0.1", Reserved),
            ("2606:2800:220:1::1", Public),
            ("::1", Loopback),
            ("::", Unspecified),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fec0::1", Private),
            ("fe80::1", LinkLocal),
            ("ff02::1", Multicast),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.0.0.5", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:0.0.0.0", Unspecified),
            ("::ffff:93.184.216.34", Public),
            ("::127.0.0.1", Loopback),
            ("64:ff9b::a00:5", Private),
            ("64:ff9b::5db8:d822", Public),
            ("2002:a9fe:a9fe::1", LinkLocal),
            ("2001:db8::1", Reserved),
            ("2001:0:4136:e378::1", Reserved),
        ];
        for (ip, class) in cases {
            assert_eq!(classify(ip.parse().unwrap()), class, "{ip}");
        }
    }

    #[test]
    fn scrubbing_ignores_ascii_case_and_empty_secrets() {
        let secrets = vec![String::new(), "Sk-AbC".to_string()];
        assert_eq!(scrub("a sk-abc b SK-ABC c", &secrets), "a *** b *** c");
        assert_eq!(scrub("nothing", &secrets), "nothing");
        assert_eq!(scrub("é sk-abc é", &secrets), "é *** é");
    }

    #[test]
    fn rule_hosts_are_normalised_like_urls() {
        let cases = [
            ("API.example.com", Some("api.example.com")),
            ("api.example.com.", Some("api.example.com")),
            ("::1", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("127.0.0.1", Some("127.0.0.1")),
            ("", None),
        ];
        for (host, want) in cases {
            assert_eq!(normalised_rule_host(host).as_deref(), want, "{host:?}");
        }
    }
}
