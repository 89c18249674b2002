//! Who may call the API: `[[token]]` entries (a hash, a tenant scope, roles,
//! an ingest quota) and a tenant's ingest quota, as written and as checked.
//! Tokens are random; the config holds only their SHA-256, given inline,
//! from the environment or from a file. With no token declared the API is
//! open, which the checker allows only on a loopback address.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::values::{Name, Size};
use super::{suggestion, Checker, RateLimit};

// ---------------------------------------------------------------- file shape

/// `[[token]]`. Example:
/// `id = "acme-erp", hash = "sha256:…", tenants = ["acme"], roles = ["publisher"]`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TokenFile {
    /// Names the token in the audit log. Example: `id = "acme-erp"`
    pub id: Spanned<Name>,
    /// The token's SHA-256 as `sha256:<hex>`, or where to read it:
    /// `{ env = "VAR" }`, `{ file = "secrets/acme-erp.sha256" }`.
    pub hash: Spanned<HashSource>,
    /// Tenants it may act for; `["*"]` for every tenant (and the host-wide
    /// endpoints: sinks, reloads, plugins, metrics).
    pub tenants: Spanned<Vec<String>>,
    /// `admin`, `operator`, `publisher`, `reader`.
    pub roles: Spanned<Vec<String>>,
    /// Its ingest quota (the tenant's applies as well).
    #[serde(default)]
    pub ingest: Option<Spanned<IngestQuotaFile>>,
}

/// Where a token's hash is.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a hash `sha256:<64 hex digits>`, `{ env = \"VAR\" }` or `{ file = \"path\" }`")]
pub enum HashSource {
    /// Inline.
    Text(String),
    /// In an environment variable.
    Env {
        /// The variable.
        env: String,
    },
    /// In a file (relative to the config file).
    File {
        /// The file.
        file: PathBuf,
    },
}

/// An ingest quota. Example:
/// `ingest = { requests = "50/s", messages = "5000/s", max-batch = 1000, max-body = "4MiB" }`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IngestQuotaFile {
    /// Ingest requests per time: `50/s`, `300/m`.
    pub requests: Option<String>,
    /// Requests at once (default: one second's worth).
    pub request_burst: Option<u32>,
    /// Messages per time.
    pub messages: Option<String>,
    /// Messages at once (default: one second's worth); also the largest batch.
    pub message_burst: Option<u32>,
    /// Messages in one batch request.
    pub max_batch: Option<usize>,
    /// Largest ingest body (instead of `server.max-body`).
    pub max_body: Option<Size>,
}

// ------------------------------------------------------------- checked model

/// A role: what a token may do within its tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads traces, pipelines, sinks, exceptions, dead letters, baselines, metrics.
    Reader,
    /// A reader who also replays, purges, pauses, resumes and settles.
    Operator,
    /// An operator who also reloads, rolls plugins back and approves them.
    Admin,
    /// Ingests messages; nothing else.
    Publisher,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Reader, Role::Operator, Role::Admin, Role::Publisher];

    /// As written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Publisher => "publisher",
        }
    }

    /// The role named `text`.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether holding `self` allows what `needed` allows: admin ⊃ operator ⊃
    /// reader; publisher stands alone (an admin who must ingest holds both).
    pub fn grants(self, needed: Role) -> bool {
        match (self, needed) {
            (a, b) if a == b => true,
            (Role::Admin, Role::Operator | Role::Reader) | (Role::Operator, Role::Reader) => true,
            _ => false,
        }
    }
}

/// The tenants a token may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant, and the host-wide endpoints.
    All,
    /// These tenants only.
    Only(BTreeSet<String>),
}

impl TenantScope {
    /// Whether `tenant` is in scope.
    pub fn covers(&self, tenant: &str) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::Only(t) => t.contains(tenant),
        }
    }

    /// The tenants a listing is limited to: none for every tenant.
    pub fn limit(&self) -> Option<Vec<String>> {
        match self {
            TenantScope::All => None,
            TenantScope::Only(t) => Some(t.iter().cloned().collect()),
        }
    }
}

/// Ingest limits of a tenant or a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestQuota {
    /// Requests per time.
    pub requests: Option<RateLimit>,
    /// Messages per time.
    pub messages: Option<RateLimit>,
    /// Messages per batch.
    pub max_batch: Option<usize>,
    /// Body bytes per request.
    pub max_body: Option<usize>,
}

/// A checked `[[token]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Its name.
    pub id: Name,
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// Its tenants.
    pub scope: TenantScope,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Its ingest quota.
    pub ingest: IngestQuota,
}

impl Token {
    /// Whether one of its roles allows what `needed` allows.
    pub fn grants(&self, needed: Role) -> bool {
        self.roles.iter().any(|r| r.grants(needed))
    }
}

/// Prefix of every token `syncline token new` makes.
pub const TOKEN_PREFIX: &str = "snl_";

/// A new random token and its hash as config writes it.
///
/// # Errors
///
/// The system's random source failed.
pub fn new_token() -> Result<(String, String), String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random bytes: {e}"))?;
    let token = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash = format!("sha256:{}", hex::encode(hash_token(&token)));
    Ok((token, hash))
}

/// SHA-256 of a presented token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `listen` is a loopback address (where an open API is allowed).
pub fn is_loopback(listen: &str) -> bool {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => listen.rsplit_once(':').is_some_and(|(host, _)| host == "localhost"),
    }
}

// ------------------------------------------------------------------ checking

impl Checker<'_> {
    /// The checked tokens.
    pub(super) fn tokens(&mut self, files: &[TokenFile], tenants: &BTreeSet<Name>, listen: &str) -> Vec<Token> {
        if files.is_empty() && !is_loopback(listen) {
            self.err(None, format!("the server listens on `{listen}` and no `[[token]]` is declared: anyone who reaches it could ingest, read and reload"))
                .help = Some("declare tokens (`syncline token new --id NAME --tenant T --role R` prints one), or listen on a loopback address".into());
        }
        let mut out: Vec<Token> = Vec::new();
        for f in files {
            let id = f.id.get_ref().clone();
            if out.iter().any(|t| t.id == id) {
                self.err(Some(f.id.span()), format!("token `{id}` is declared twice"));
            }
            let hash = self.token_hash(&id, &f.hash);
            if hash.is_some_and(|h| out.iter().any(|t| t.hash == h)) {
                self.err(Some(f.hash.span()), format!("token `{id}` has the same hash as another token")).help =
                    Some("make a token per caller with `syncline token new`".into());
            }
            let scope = self.scope(&id, &f.tenants, tenants);
            let roles = self.roles(&id, &f.roles);
            let ingest = f.ingest.as_ref().map(|q| self.ingest_quota(&format!("token `{id}`"), q)).unwrap_or_default();
            out.push(Token { id, hash: hash.unwrap_or_default(), scope, roles, ingest });
        }
        out
    }

    fn token_hash(&mut self, id: &Name, source: &Spanned<HashSource>) -> Option<[u8; 32]> {
        let span = Some(source.span());
        let text = match source.get_ref() {
            HashSource::Text(t) => t.clone(),
            HashSource::Env { env } => match std::env::var(env) {
                Ok(v) => v,
                Err(_) => {
                    self.err(span, format!("token `{id}`: environment variable `{env}` is not set")).help =
                        Some(format!("export {env}=sha256:... before starting syncline"));
                    return None;
                }
            },
            HashSource::File { file } => {
                let path = self.base().join(file);
                // A hash line is short: read at most 1 KiB (a path such as
                // /dev/zero must not hang the check).
                let read = std::fs::File::open(&path).and_then(|f| {
                    use std::io::Read;
                    let mut text = String::new();
                    f.take(1024).read_to_string(&mut text).map(|_| text)
                });
                match read {
                    Ok(v) => v,
                    Err(e) => {
                        self.err(span, format!("token `{id}`: cannot read {}: {e}", path.display()));
                        return None;
                    }
                }
            }
        };
        let text = text.trim();
        let parsed = text.strip_prefix("sha256:").and_then(|h| hex::decode(h).ok()).and_then(|b| <[u8; 32]>::try_from(b).ok());
        if parsed.is_none() {
            // Never echo the value: it may be the token itself.
            let help = if text.starts_with(TOKEN_PREFIX) {
                "this looks like a token, not its hash: config keeps only `sha256:<hex>` (the line `syncline token new` printed); make a new token, this one has been written down"
            } else {
                "write `sha256:` and 64 hex digits, as `syncline token new` prints"
            };
            self.err(span, format!("token `{id}`: the hash is not `sha256:<64 hex digits>`")).help = Some(help.into());
        }
        parsed
    }

    fn scope(&mut self, id: &Name, tenants: &Spanned<Vec<String>>, known: &BTreeSet<Name>) -> TenantScope {
        let span = Some(tenants.span());
        let list = tenants.get_ref();
        if list.iter().any(|t| t == "*") {
            if list.len() > 1 {
                self.err(span, format!("token `{id}`: `*` already means every tenant")).help = Some("write `tenants = [\"*\"]` alone".into());
            }
            return TenantScope::All;
        }
        if list.is_empty() {
            self.err(span.clone(), format!("token `{id}` has no tenants")).help = Some("name its tenants, or `[\"*\"]` for every tenant".into());
        }
        for t in list.iter().filter(|t| !known.contains(t.as_str())) {
            let help = suggestion("tenant", t, known.iter().map(Name::as_str));
            self.err(span.clone(), format!("token `{id}`: unknown tenant `{t}`")).help = Some(help);
        }
        TenantScope::Only(list.iter().cloned().collect())
    }

    fn roles(&mut self, id: &Name, roles: &Spanned<Vec<String>>) -> Vec<Role> {
        let mut out = Vec::new();
        for r in roles.get_ref() {
            match Role::parse(r) {
                Some(role) => out.push(role),
                None => {
                    let help = suggestion("role", r, Role::ALL.iter().map(|r| r.as_str()));
                    self.err(Some(roles.span()), format!("token `{id}`: unknown role `{r}`")).help = Some(help);
                }
            }
        }
        if roles.get_ref().is_empty() {
            self.err(Some(roles.span()), format!("token `{id}` has no roles")).help = Some("give it `admin`, `operator`, `publisher` or `reader`".into());
        }
        out
    }

    /// A checked quota (`who` names its owner in errors).
    pub(super) fn ingest_quota(&mut self, who: &str, file: &Spanned<IngestQuotaFile>) -> IngestQuota {
        let f = file.get_ref();
        let span = Some(file.span());
        let rate = |this: &mut Self, text: &Option<String>, burst: Option<u32>, what: &str| match text {
            None => None,
            Some(t) => match RateLimit::parse(t, burst) {
                Ok(r) => Some(r),
                Err(e) => {
                    this.err(span.clone(), format!("{who}: ingest {what} `{t}`: {e}"));
                    None
                }
            },
        };
        let requests = rate(self, &f.requests, f.request_burst, "requests");
        let messages = rate(self, &f.messages, f.message_burst, "messages");
        if f.max_batch == Some(0) {
            self.err(span.clone(), format!("{who}: `max-batch = 0` would refuse every batch")).help = Some("leave it out for no limit".into());
        }
        if f.max_body.is_some_and(|b| b.0 == 0) {
            self.err(span, format!("{who}: `max-body = 0` would refuse every message"));
        }
        IngestQuota { requests, messages, max_batch: f.max_batch, max_body: f.max_body.map(|b| b.0) }
    }

    /// Every tenant's ingest quota (tenants without one are left out).
    pub(super) fn tenant_quotas(&mut self, files: &[super::TenantFile]) -> BTreeMap<Name, IngestQuota> {
        let mut out = BTreeMap::new();
        for t in files {
            if let Some(q) = &t.ingest {
                let quota = self.ingest_quota(&format!("tenant `{}`", t.id.get_ref()), q);
                out.insert(t.id.get_ref().clone(), quota);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_except_publisher() {
        assert!(Role::Admin.grants(Role::Operator) && Role::Admin.grants(Role::Reader) && Role::Operator.grants(Role::Reader));
        assert!(!Role::Reader.grants(Role::Operator) && !Role::Operator.grants(Role::Admin));
        assert!(!Role::Admin.grants(Role::Publisher) && !Role::Publisher.grants(Role::Reader));
    }

    #[test]
    fn a_new_token_hashes_to_its_line() {
        let (token, hash) = new_token().unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 43);
        assert_eq!(hash, format!("sha256:{}", hex::encode(hash_token(&token))));
        assert_ne!(new_token().unwrap().0, token);
    }

    #[test]
    fn loopback_addresses() {
        assert!(is_loopback("127.0.0.1:8080") && is_loopback("[::1]:80") && is_loopback("localhost:8080"));
        assert!(!is_loopback("0.0.0.0:8080") && !is_loopback("10.1.2.3:80") && !is_loopback("example.com:80"));
    }
}
