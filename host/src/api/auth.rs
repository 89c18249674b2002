//! Who calls the API and what they may do. Every endpoint is listed in
//! [`ENDPOINTS`] with the role it needs and whether it reaches one tenant's
//! data or the whole host; the router is built from that table, and a
//! guard on each route checks the bearer token against the running
//! config's tokens (so a reload adds or revokes tokens). Refusals are
//! answered 401/403 with bodies that name no tenant and are kept in the
//! audit log, a few per second (the count of the others rides along).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::{ApiError, App};
use crate::config::{hash_token, Role, TenantScope, Token};
use crate::store::records::{AuditEntry, AuditEvent};

/// How far an endpoint reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// One tenant's data: the tenant in the path, or the tenant of the
    /// record asked for (answered 404 outside the caller's tenants, as if
    /// it did not exist), or a listing cut to the caller's tenants.
    Tenant,
    /// The whole host (sinks, reloads, plugins, metrics): only tokens for
    /// every tenant (`tenants = ["*"]`).
    Host,
}

/// An endpoint: method, path (as routed), the role it needs, its reach.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The route, with `{param}` placeholders.
    pub path: &'static str,
    /// The least role that may call it.
    pub role: Role,
    /// One tenant or the host.
    pub reach: Reach,
}

const fn ep(method: &'static str, path: &'static str, role: Role, reach: Reach) -> Endpoint {
    Endpoint { method, path, role, reach }
}

/// Every guarded endpoint (`/healthz` and `/readyz` are open).
pub const ENDPOINTS: &[Endpoint] = &[
    ep("POST", "/v1/tenants/{tenant}/pipelines/{pipeline}/messages", Role::Publisher, Reach::Tenant),
    ep("POST", "/v1/tenants/{tenant}/pipelines/{pipeline}/messages:batch", Role::Publisher, Reach::Tenant),
    ep("GET", "/v1/messages/{id}", Role::Reader, Reach::Tenant),
    ep("GET", "/v1/correlations/{id}", Role::Reader, Reach::Tenant),
    ep("GET", "/v1/loops", Role::Reader, Reach::Tenant),
    ep("GET", "/v1/pipelines", Role::Reader, Reach::Tenant),
    ep("GET", "/v1/tenants/{tenant}/baselines/{pipeline}", Role::Reader, Reach::Tenant),
    ep("POST", "/v1/tenants/{tenant}/baselines/{pipeline}/release", Role::Operator, Reach::Tenant),
    ep("POST", "/v1/tenants/{tenant}/pipelines/{pipeline}/stages/{stage}/capture", Role::Operator, Reach::Tenant),
    ep("GET", "/v1/tenants/{tenant}/pipelines/{pipeline}/stages/{stage}/capture", Role::Operator, Reach::Tenant),
    ep("GET", "/v1/exceptions", Role::Reader, Reach::Tenant),
    ep("GET", "/v1/exceptions/{id}", Role::Reader, Reach::Tenant),
    ep("POST", "/v1/exceptions/{id}/{action}", Role::Operator, Reach::Tenant),
    ep("GET", "/v1/dead-letters", Role::Reader, Reach::Tenant),
    ep("POST", "/v1/dead-letters:replay", Role::Operator, Reach::Tenant),
    ep("GET", "/v1/dead-letters/{id}", Role::Reader, Reach::Tenant),
    ep("POST", "/v1/dead-letters/{id}/replay", Role::Operator, Reach::Tenant),
    ep("POST", "/v1/dead-letters/{id}/purge", Role::Operator, Reach::Tenant),
    ep("GET", "/v1/audit", Role::Operator, Reach::Tenant),
    ep("GET", "/v1/sinks", Role::Reader, Reach::Host),
    ep("GET", "/v1/cluster", Role::Reader, Reach::Host),
    ep("POST", "/v1/sinks/{name}/pause", Role::Operator, Reach::Host),
    ep("POST", "/v1/sinks/{name}/resume", Role::Operator, Reach::Host),
    ep("GET", "/v1/reloads", Role::Reader, Reach::Host),
    ep("POST", "/v1/reload", Role::Admin, Reach::Host),
    ep("POST", "/v1/plugins/{name}/rollback", Role::Admin, Reach::Host),
    ep("GET", "/v1/plugins/approvals", Role::Reader, Reach::Host),
    ep("POST", "/v1/plugins/{name}/approve", Role::Admin, Reach::Host),
    ep("POST", "/v1/plugins/{name}/revoke", Role::Admin, Reach::Host),
    ep("GET", "/metrics", Role::Reader, Reach::Host),
];

/// The table's entry for `method` and `path`.
///
/// # Panics
///
/// When the route is not in the table (a router built with an unlisted
/// route would be unguarded; this stops it at start).
pub fn endpoint(method: &str, path: &str) -> Endpoint {
    *ENDPOINTS.iter().find(|e| e.method == method && e.path == path).unwrap_or_else(|| panic!("{method} {path} is not in api::auth::ENDPOINTS"))
}

/// The caller of a request, as the guard let it in.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `token:ID`, or `open` when no tokens are configured.
    pub actor: String,
    /// Its token (none when the API is open).
    pub token: Option<Arc<Token>>,
}

static EVERY_TENANT: TenantScope = TenantScope::All;

impl Caller {
    fn open() -> Caller {
        Caller { actor: "open".into(), token: None }
    }

    /// Its tenants.
    pub fn scope(&self) -> &TenantScope {
        self.token.as_ref().map_or(&EVERY_TENANT, |t| &t.scope)
    }

    /// Whether the caller may see `tenant`'s data.
    pub fn sees(&self, tenant: &str) -> bool {
        self.scope().covers(tenant)
    }

    /// Ok when `tenant` (named in the path) is the caller's; 403 otherwise,
    /// the same whether the tenant exists or not.
    ///
    /// # Errors
    ///
    /// 403 `forbidden`.
    pub fn tenant(&self, tenant: &str) -> Result<(), ApiError> {
        if self.sees(tenant) {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("{} may not act for this tenant", self.who())))
        }
    }

    /// The tenants a listing is cut to (none: every tenant).
    pub fn limit(&self) -> Option<Vec<String>> {
        self.scope().limit()
    }

    /// An audit entry of something this caller did about `tenant`.
    pub fn entry(&self, tenant: Option<&str>, event: AuditEvent) -> AuditEntry {
        AuditEntry { actor: self.actor.clone(), tenant: tenant.map(str::to_string), event }
    }

    fn who(&self) -> String {
        match &self.token {
            Some(t) => format!("token `{}`", t.id),
            None => "this caller".into(),
        }
    }
}

/// Keeps refusals in the audit log without letting a flood of them fill it.
pub struct Denials {
    limiter: DefaultDirectRateLimiter,
    suppressed: AtomicU64,
}

impl Default for Denials {
    fn default() -> Self {
        let quota = Quota::per_second(NonZeroU32::new(5).unwrap()).allow_burst(NonZeroU32::new(20).unwrap());
        Denials { limiter: RateLimiter::direct(quota), suppressed: AtomicU64::new(0) }
    }
}

impl Denials {
    /// Audits a refusal, or counts it when too many come at once.
    fn record(&self, app: &App, actor: &str, method: &Method, path: &str, error: &ApiError) {
        if self.limiter.check().is_err() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        let path: String = path.chars().take(256).collect();
        let event = AuditEvent::Denied { method: method.to_string(), path, status: error.status.as_u16(), reason: error.message.clone(), suppressed };
        let entry = AuditEntry { actor: actor.to_string(), tenant: None, event };
        let store = app.store.clone();
        // Off the request's path: the refusal is answered at once.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.audit(&entry) {
                tracing::warn!(error = %e, "a refused call could not be audited");
            }
        });
    }
}

/// The route guard: authenticates the bearer token, checks the role and
/// reach `endpoint` needs, and hands the [`Caller`] to the handler.
pub async fn guard(State((app, endpoint)): State<(App, Endpoint)>, mut req: Request, next: Next) -> Response {
    match admit(&app, endpoint, &req) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err((actor, error)) => {
            app.denials.record(&app, &actor, req.method(), req.uri().path(), &error);
            let unauthenticated = error.status == StatusCode::UNAUTHORIZED;
            let mut response = error.into_response();
            if unauthenticated {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"syncline\""));
            }
            response
        }
    }
}

/// The caller, or who was refused (`anonymous` or `token:ID`) and why.
fn admit(app: &App, endpoint: Endpoint, req: &Request) -> Result<Caller, (String, ApiError)> {
    let topology = app.topology.current();
    let tokens = &topology.config.tokens;
    if tokens.is_empty() {
        return Ok(Caller::open());
    }
    let unauthenticated = |message: &str| ("anonymous".to_string(), ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message));
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthenticated("this endpoint needs a token: send `Authorization: Bearer <token>`"))?
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| unauthenticated("the Authorization header is not `Bearer <token>`"))?;
    let hash = hash_token(presented);
    let token = tokens
        .iter()
        .find(|t| t.hash == hash)
        .ok_or_else(|| unauthenticated("the token is not known to this host (mistyped, revoked or for another host)"))?;
    let caller = Caller { actor: format!("token:{}", token.id), token: Some(token.clone()) };
    let forbidden = |message: String| (caller.actor.clone(), ApiError::new(StatusCode::FORBIDDEN, "forbidden", message));
    if !token.grants(endpoint.role) {
        return Err(forbidden(format!("token `{}` may not do this: it needs the `{}` role", token.id, endpoint.role.as_str())));
    }
    if endpoint.reach == Reach::Host && token.scope != TenantScope::All {
        return Err(forbidden(format!("token `{}` may not do this: it concerns the whole host and needs a token for every tenant (`tenants = [\"*\"]`)", token.id)));
    }
    Ok(caller)
}
