//! A proxy-wasm test host on Wasmtime: loads `finalite.wasm` with a plugin configuration and
//! drives one request at a time through it the way Envoy does, so that the module is shown to
//! work on a host other than Envoy's V8.
//!
//! The ABI itself (host functions, memory, contexts, WASI) is the `proxy-wasm-host` crate's;
//! this file plays the proxy around it:
//!
//! - the request headers, then (unless the module answered locally) the upstream's response
//!   headers, then its body in chunks, the last one marked end of stream;
//! - a body callback that answers `Pause` makes the proxy buffer: the next callback sees
//!   everything received so far (Envoy's `StopIterationAndBuffer`); `Continue` sends what the
//!   buffer then holds;
//! - response headers held when their callback answers `Pause` (what Envoy does with
//!   `allow_on_headers_stop_iteration: true`) and sent with the first body callback that
//!   continues; a local response while they are held replaces the upstream response;
//! - closing the response stream is a reset: the client keeps what was sent and sees the
//!   stream fail;
//! - properties: the route's name and metadata (`xds.route_name`,
//!   `xds.route_metadata.filter_metadata.finalite.policy`), jwt_authn's verified payload
//!   under `metadata.filter_metadata.envoy.filters.http.jwt_authn.<key>` in Envoy's
//!   encodings, `response.code` and `response.code_details`; `set_property` is filter state.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use proxy_wasm_host::abi::v0_2_1::types::{
    Action, BufferType, LogLevel, MapType, Status, StreamType,
};
use proxy_wasm_host::abi::v0_2_1::{
    Access, ContextId, Guest, GuestError, Host, Invocation, LocalResponse, LogContext, LogSink,
    PluginConfig, Started, StreamKind, StreamState, VmServices,
};
use proxy_wasm_host::{Buffer, Engine, HeaderMap, HeaderMapExt, Limits, Module, VecHeaderMap};

/// The module as `make build` writes it, relative to the repository root.
pub const MODULE: &str = "target/wasm32-wasip1/release/finalite.wasm";

/// The repository root (this crate lives in `tests/wasmtime-host`).
pub fn repository() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The plugin configuration (JSON) of the shipped `envoy/envoy.yaml`: the wasm filter's
/// `configuration.value`.
pub fn shipped_configuration() -> Result<String, String> {
    let path = repository().join("envoy/envoy.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    find_configuration(&yaml)
        .ok_or_else(|| format!("{}: no finalite configuration", path.display()))
}

fn find_configuration(value: &serde_yaml_ng::Value) -> Option<String> {
    use serde_yaml_ng::Value;
    match value {
        Value::Mapping(map) => {
            if map.get("root_id").and_then(Value::as_str) == Some("finalite") {
                return map
                    .get("configuration")?
                    .get("value")?
                    .as_str()
                    .map(str::to_owned);
            }
            map.values().find_map(find_configuration)
        }
        Value::Sequence(items) => items.iter().find_map(find_configuration),
        _ => None,
    }
}

/// A verified claim as Envoy's jwt_authn writes it into dynamic metadata.
#[derive(Debug, Clone)]
pub enum Claim {
    Str(String),
    List(Vec<String>),
    Number(f64),
}

impl Claim {
    /// The bytes `get_property` returns for this claim (measured on Envoy 1.40: a string raw,
    /// a number as a little-endian double, a list as the pair-map form with empty values).
    fn encode(&self) -> Vec<u8> {
        match self {
            Claim::Str(s) => s.as_bytes().to_vec(),
            Claim::Number(n) => n.to_le_bytes().to_vec(),
            Claim::List(items) => pair_map(
                &items
                    .iter()
                    .map(|i| (i.as_bytes().to_vec(), Vec::new()))
                    .collect::<Vec<_>>(),
            ),
        }
    }
}

/// Envoy's serialised pair map: a u32 count, a u32 key and value length per pair, then each
/// key and value followed by a NUL (all little-endian).
fn pair_map(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend((k.len() as u32).to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend(k);
        out.push(0);
        out.extend(v);
        out.push(0);
    }
    out
}

/// What the client sends, and what the proxy knows of the route it matched.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// `xds.route_name`.
    pub route_name: Option<String>,
    /// `xds.route_metadata.filter_metadata.finalite.policy`.
    pub route_policy: Option<String>,
    /// jwt_authn's verified payload (`None`: no token, or one jwt_authn refused).
    pub claims: Option<Vec<(String, Claim)>>,
    /// Play a host without filter state: `set_property` answers NOT_FOUND.
    pub no_filter_state: bool,
}

impl Request {
    pub fn get(path: &str) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            ..Request::default()
        }
    }

    /// The route as the shipped envoy.yaml names it, with its metadata naming the policy.
    pub fn route(mut self, name: &str, policy: &str) -> Request {
        self.route_name = Some(name.into());
        self.route_policy = Some(policy.into());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn claims(mut self, claims: Vec<(String, Claim)>) -> Request {
        self.claims = Some(claims);
        self
    }
}

/// The upstream's answer: its status, headers and body, delivered in chunks of `chunk` bytes.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunk: usize,
}

impl Upstream {
    pub fn json(body: &[u8]) -> Upstream {
        Upstream {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("content-length".into(), body.len().to_string()),
            ],
            body: body.to_vec(),
            chunk: 64 * 1024,
        }
    }

    pub fn chunked(mut self, chunk: usize) -> Upstream {
        self.chunk = chunk.max(1);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Upstream {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What the client and the upstream observed of one exchange.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// The status the client received (the upstream's, or the module's local response).
    pub status: u16,
    /// The response headers the client received (`:status` left out).
    pub headers: Vec<(String, String)>,
    /// The body bytes the client received.
    pub body: Vec<u8>,
    /// The stream was reset after its headers went out: the client saw it fail.
    pub reset: bool,
    /// The request headers the upstream received; `None` if the request never left.
    pub upstream_request: Option<Vec<(String, String)>>,
    /// The module answered `Pause` to the response headers (held until the body is done).
    pub held_headers: bool,
    /// What the module set with `set_property` (filter state for the access log).
    pub filter_state: BTreeMap<String, String>,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The log lines the module wrote, at their levels.
#[derive(Default)]
pub struct Lines(Mutex<Vec<(LogLevel, String)>>);

impl LogSink for Lines {
    fn log(&self, _: LogContext<'_>, level: LogLevel, message: &[u8]) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push((level, String::from_utf8_lossy(message).into_owned()));
        }
    }
}

/// One request's state, lent to the guest for the callbacks of its stream.
#[derive(Default)]
struct Stream {
    request_headers: VecHeaderMap,
    response_headers: VecHeaderMap,
    body: Vec<u8>,
    properties: Properties,
    filter_state: BTreeMap<String, String>,
    local: Option<LocalResponse<'static>>,
    closed: bool,
    no_filter_state: bool,
}

type Properties = HashMap<Vec<Vec<u8>>, Vec<u8>>;

/// Sets the property at `path` (its segments, as `proxy_get_property` receives them).
fn put_property(properties: &mut Properties, path: &[&str], value: Vec<u8>) {
    let key = path.iter().map(|s| s.as_bytes().to_vec()).collect();
    properties.insert(key, value);
}

impl StreamState for Stream {
    fn header_map(
        &mut self,
        _: Invocation,
        _: Access,
        map: MapType,
    ) -> Result<&mut dyn HeaderMap, Status> {
        match map {
            MapType::HttpRequestHeaders => Ok(&mut self.request_headers),
            MapType::HttpResponseHeaders => Ok(&mut self.response_headers),
            _ => Err(Status::NotFound),
        }
    }

    fn buffer(
        &mut self,
        _: Invocation,
        _: Access,
        buffer: BufferType,
    ) -> Result<&mut dyn Buffer, Status> {
        match buffer {
            BufferType::HttpResponseBody => Ok(&mut self.body),
            _ => Err(Status::NotFound),
        }
    }

    fn close_stream(&mut self, _: Invocation, stream: StreamType) -> Result<(), Status> {
        match stream {
            StreamType::HttpResponse | StreamType::HttpRequest => {
                self.closed = true;
                Ok(())
            }
            _ => Err(Status::BadArgument),
        }
    }

    fn send_local_response(
        &mut self,
        _: Invocation,
        response: LocalResponse<'_>,
    ) -> Result<(), Status> {
        self.local = Some(response.into_owned());
        Ok(())
    }

    fn property(&mut self, _: Invocation, path: &[&[u8]], out: &mut Vec<u8>) -> Result<(), Status> {
        let key: Vec<Vec<u8>> = path.iter().map(|s| s.to_vec()).collect();
        let value = self.properties.get(&key).ok_or(Status::NotFound)?;
        out.extend_from_slice(value);
        Ok(())
    }

    fn set_property(&mut self, _: Invocation, path: &[&[u8]], value: &[u8]) -> Result<(), Status> {
        if self.no_filter_state {
            return Err(Status::NotFound);
        }
        let name = path
            .iter()
            .map(|s| String::from_utf8_lossy(s))
            .collect::<Vec<_>>()
            .join(".");
        self.filter_state
            .insert(name, String::from_utf8_lossy(value).into_owned());
        Ok(())
    }
}

/// The module compiled once (Cranelift), to start as many VMs as the tests need.
pub struct Compiled {
    host: Host,
    module: Module,
}

impl Compiled {
    pub fn new(module: &[u8]) -> Result<Compiled, HostError> {
        let engine = Engine::new().map_err(runtime)?;
        let module = Module::new(&engine, module).map_err(runtime)?;
        let host = Host::new(&engine).map_err(runtime)?;
        Ok(Compiled { host, module })
    }

    /// The release module, `make build`'s.
    pub fn release() -> Result<Compiled, HostError> {
        let path = repository().join(MODULE);
        let module = std::fs::read(&path)
            .map_err(|e| HostError::Io(format!("{}: {e} (make build)", path.display())))?;
        Compiled::new(&module)
    }
}

fn runtime(e: proxy_wasm_host::Error) -> HostError {
    HostError::Guest(e.into())
}

/// finalite started and configured in one Wasmtime instance (one VM, one root context), as
/// a proxy worker holds it; requests go through it one at a time.
pub struct Plugin {
    guest: Guest,
    root: ContextId,
    lines: Arc<Lines>,
}

/// Why a plugin did not load or a request could not complete.
#[derive(Debug)]
pub enum HostError {
    /// The module or the runtime failed (a trap, a bad module, a refused start).
    Guest(GuestError),
    /// The module refused its configuration (`proxy_on_configure` answered false).
    Refused(Vec<String>),
    /// The exchange stalled as it would in a proxy: the module paused and never resumed.
    Stalled(&'static str),
    Io(String),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Guest(e) => write!(f, "the guest failed: {e}"),
            HostError::Refused(lines) => write!(f, "configuration refused: {}", lines.join(" | ")),
            HostError::Stalled(what) => write!(f, "the exchange stalled: {what}"),
            HostError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<GuestError> for HostError {
    fn from(e: GuestError) -> HostError {
        HostError::Guest(e)
    }
}

impl Plugin {
    /// Starts a VM of `compiled` with `environment` (the VM's environment variables, Envoy's
    /// `host_env_keys`) and configures its root with `configuration`.
    pub fn start(
        compiled: &Compiled,
        configuration: &str,
        environment: &[(&str, &str)],
    ) -> Result<Plugin, HostError> {
        let lines = Arc::new(Lines::default());
        let services = VmServices::new(lines.clone())
            .with_vm_id("finalite")
            .with_environment(
                environment
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect(),
            );
        let mut guest = Guest::new(
            &compiled.host,
            &compiled.module,
            services,
            &Limits::default(),
        )?;
        let plugin = PluginConfig::new()
            .with_name("finalite")
            .with_root_id("finalite")
            .with_configuration(configuration.as_bytes().to_vec());
        match guest.start(plugin)? {
            Started::Serving(root) => Ok(Plugin { guest, root, lines }),
            Started::Refused { .. } => Err(HostError::Refused(
                lines
                    .0
                    .lock()
                    .map(|l| l.iter().map(|(_, m)| m.clone()).collect())
                    .unwrap_or_default(),
            )),
        }
    }

    /// The lines the module logged since the last call.
    pub fn take_log(&self) -> Vec<(LogLevel, String)> {
        self.lines
            .0
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    /// One request through the module and, unless it answers itself, to `upstream` and back.
    pub fn exchange(
        &mut self,
        request: &Request,
        upstream: &Upstream,
    ) -> Result<Exchange, HostError> {
        let stream = Stream {
            request_headers: request_headers(request),
            properties: request_properties(request),
            no_filter_state: request.no_filter_state,
            ..Stream::default()
        };
        let root = self.root;
        let (result, stream) = self
            .guest
            .with(stream, |scope| -> Result<Exchange, HostError> {
                let ctx = scope.on_context_create(Some(root))?;
                scope.expect_stream_kind(ctx, StreamKind::Http)?;
                let exchange = drive(scope, ctx, upstream)?;
                put_property(
                    &mut scope.stream_mut().properties,
                    &["response", "code"],
                    i64::from(exchange.status).to_le_bytes().to_vec(),
                );
                scope.on_done(ctx)?;
                scope.on_log(ctx)?;
                scope.on_delete(ctx)?;
                Ok(exchange)
            });
        let mut exchange = result?;
        exchange.filter_state = stream.filter_state;
        Ok(exchange)
    }
}

type Scope<'a> = proxy_wasm_host::abi::v0_2_1::CallScope<'a, Stream>;

fn drive(
    scope: &mut Scope<'_>,
    ctx: ContextId,
    upstream: &Upstream,
) -> Result<Exchange, HostError> {
    let mut exchange = Exchange::default();
    let count = scope.stream().request_headers.len() as u32;
    let action = scope.on_request_headers(ctx, count, true)?;
    if let Some(local) = scope.stream_mut().local.take() {
        return Ok(local_exchange(exchange, local));
    }
    if action == Action::Pause {
        return Err(HostError::Stalled(
            "the request headers paused with no local response",
        ));
    }
    exchange.upstream_request = Some(pairs(&scope.stream().request_headers));

    let mut headers = vec![(
        b":status".to_vec(),
        upstream.status.to_string().into_bytes(),
    )];
    headers.extend(
        upstream
            .headers
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())),
    );
    let stream = scope.stream_mut();
    stream.response_headers = VecHeaderMap::from(headers);
    put_property(
        &mut stream.properties,
        &["response", "code"],
        i64::from(upstream.status).to_le_bytes().to_vec(),
    );
    put_property(
        &mut stream.properties,
        &["response", "code_details"],
        b"via_upstream".to_vec(),
    );
    let count = stream.response_headers.len() as u32;
    let action = scope.on_response_headers(ctx, count, upstream.body.is_empty())?;
    if let Some(local) = scope.stream_mut().local.take() {
        return Ok(local_exchange(exchange, local));
    }
    exchange.status = upstream.status;
    exchange.held_headers = action == Action::Pause;
    let mut headers_sent = !exchange.held_headers;
    if headers_sent {
        exchange.headers = response_headers(&scope.stream().response_headers);
    }

    // What the proxy buffers while the module pauses the body.
    let mut buffering = false;
    let chunks: Vec<&[u8]> = upstream.body.chunks(upstream.chunk).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let stream = scope.stream_mut();
        if !buffering {
            stream.body.clear();
        }
        stream.body.extend_from_slice(chunk);
        let size = stream.body.len() as u32;
        let action = scope.on_response_body(ctx, size, last)?;
        let stream = scope.stream_mut();
        if let Some(local) = stream.local.take() {
            if headers_sent {
                // Too late for another response: Envoy resets the stream.
                exchange.reset = true;
                return Ok(exchange);
            }
            return Ok(local_exchange(exchange, local));
        }
        if stream.closed {
            exchange.reset = true;
            return Ok(exchange);
        }
        if action == Action::Pause {
            buffering = true;
            continue;
        }
        buffering = false;
        if !headers_sent {
            exchange.headers = response_headers(&stream.response_headers);
            headers_sent = true;
        }
        exchange.body.extend_from_slice(&stream.body);
        stream.body.clear();
    }
    if upstream.body.is_empty() && !headers_sent {
        return Err(HostError::Stalled(
            "the response headers paused on an empty body",
        ));
    }
    if buffering || !headers_sent {
        return Err(HostError::Stalled("the module paused the last body chunk"));
    }
    Ok(exchange)
}

fn local_exchange(mut exchange: Exchange, local: LocalResponse<'static>) -> Exchange {
    exchange.status = local.status_code as u16;
    exchange.headers = local
        .headers
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    exchange.body = local.body.into_owned();
    exchange
}

fn pairs(map: &VecHeaderMap) -> Vec<(String, String)> {
    map.pairs()
        .into_iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(&n).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

fn response_headers(map: &VecHeaderMap) -> Vec<(String, String)> {
    pairs(map)
        .into_iter()
        .filter(|(n, _)| n != ":status")
        .collect()
}

fn request_headers(request: &Request) -> VecHeaderMap {
    let mut headers = vec![
        (b":method".to_vec(), request.method.as_bytes().to_vec()),
        (b":path".to_vec(), request.path.as_bytes().to_vec()),
        (b":authority".to_vec(), b"api.example".to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
    ];
    headers.extend(
        request
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase().into_bytes(), v.as_bytes().to_vec())),
    );
    VecHeaderMap::from(headers)
}

const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";
/// The shipped configuration's `token.jwt_authn.metadata_key` (jwt_authn's
/// `payload_in_metadata`).
const METADATA_KEY: &str = "idp";

fn request_properties(request: &Request) -> Properties {
    let mut properties = Properties::new();
    if let Some(name) = &request.route_name {
        put_property(
            &mut properties,
            &["xds", "route_name"],
            name.clone().into_bytes(),
        );
    }
    if let Some(policy) = &request.route_policy {
        put_property(
            &mut properties,
            &[
                "xds",
                "route_metadata",
                "filter_metadata",
                "finalite",
                "policy",
            ],
            policy.clone().into_bytes(),
        );
    }
    if let Some(claims) = &request.claims {
        let payload: Vec<(Vec<u8>, Vec<u8>)> = claims
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.encode()))
            .collect();
        put_property(
            &mut properties,
            &["metadata", "filter_metadata", JWT_AUTHN, METADATA_KEY],
            pair_map(&payload),
        );
        for (name, claim) in claims {
            put_property(
                &mut properties,
                &["metadata", "filter_metadata", JWT_AUTHN, METADATA_KEY, name],
                claim.encode(),
            );
        }
    }
    properties
}
