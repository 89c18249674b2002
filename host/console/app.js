// The Syncline operator console: a single page over the /v1 API, with the
// caller's own token (kept in this tab's sessionStorage only). Preact + htm,
// vendored (no build step, no CDN). Views by hash: #/pipelines,
// #/pipelines/TENANT/ID, #/flow/ID, #/dead-letters, #/exceptions, #/sinks,
// #/kpis.
import { html, render, useState, useEffect, useCallback, useRef } from "/console/vendor.js";

const TOKEN_KEY = "syncline-token";
const getToken = () => sessionStorage.getItem(TOKEN_KEY);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

// One API call; JSON in and out; errors carry the API's code and message.
async function api(method, path, body) {
  const headers = {};
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* metrics are text */ }
  if (!r.ok) throw new ApiError(r.status, json?.error?.code, json?.error?.message || text.slice(0, 200));
  return json ?? text;
}

// OpenMetrics text to [{name, labels, value}].
function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

const sum = (series, name, match = () => true) =>
  series.filter((s) => s.name === name && match(s.labels)).reduce((a, s) => a + s.value, 0);

const ago = (ms) => {
  if (ms == null) return "—";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s}s`;
  if (s < 5400) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
};
const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "—");
const short = (digest) => (digest || "").replace("sha256:", "").slice(0, 12);

// Polls `load` every `every` ms while mounted; returns [data, error, reload].
function usePoll(load, every, deps = []) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const reload = useCallback(async () => {
    try { setData(await load()); setError(null); } catch (e) { setError(e); }
  }, deps);
  useEffect(() => {
    reload();
    if (!every) return undefined;
    const t = setInterval(reload, every);
    return () => clearInterval(t);
  }, [reload]);
  return [data, error, reload];
}

// The metrics, polled, with a short history of each watched value.
const history = new Map();
function useMetrics(every = 2000) {
  return usePoll(async () => {
    try {
      const series = parseMetrics(await api("GET", "/metrics"));
      const now = Date.now();
      return { series, now };
    } catch (e) {
      if (e.status === 403) return { forbidden: true, series: [] };
      throw e;
    }
  }, every);
}
function remember(key, value) {
  const h = history.get(key) || [];
  if (h.length === 0 || h[h.length - 1] !== value) h.push(value);
  while (h.length > 40) h.shift();
  history.set(key, h);
  return h;
}

// Messages per second of a counter between its last two polls.
const lastSeen = new Map();
function rateOf(key, value) {
  const now = Date.now();
  const before = lastSeen.get(key);
  if (!before || now - before.at > 500) lastSeen.set(key, { at: now, value, rate: before ? (value - before.value) / ((now - before.at) / 1000) : 0 });
  return lastSeen.get(key).rate;
}

function Spark({ points, width = 160, height = 32 }) {
  if (!points || points.length < 2) return html`<svg class="spark" width=${width} height=${height}></svg>`;
  const lo = Math.min(...points), hi = Math.max(...points);
  const span = hi - lo || 1;
  const step = width / (points.length - 1);
  const coords = points.map((p, i) => `${(i * step).toFixed(1)},${(height - 2 - ((p - lo) / span) * (height - 4)).toFixed(1)}`).join(" ");
  return html`<svg class="spark" width=${width} height=${height} role="img"><polyline points=${coords} /></svg>`;
}

const Err = ({ error }) => (error ? html`<p class="error" data-test="error">${error.code ? html`<code>${error.code}</code> ` : ""}${error.message}</p>` : null);
const Badge = ({ text }) => html`<span class=${`badge ${text}`}>${text}</span>`;

function SignIn({ onDone }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, token.trim());
    try {
      await api("GET", "/v1/pipelines");
      onDone();
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      setError(err);
    }
  };
  return html`<div class="panel signin">
    <h2>Sign in</h2>
    <p class="muted">Paste an API token (<code>syncline token new</code>). It stays in this tab only. An open host (no tokens configured) takes an empty one.</p>
    <form class="inline" onSubmit=${submit}>
      <input type="password" name="token" data-test="token" placeholder="snl_…" value=${token} onInput=${(e) => setToken(e.target.value)} />
      <button type="submit" data-test="sign-in">Sign in</button>
    </form>
    <${Err} error=${error} />
  </div>`;
}

function Pipelines() {
  const [data, error] = usePoll(() => api("GET", "/v1/pipelines"), 10000);
  const [metrics] = useMetrics();
  const rate = (tenant, id) => {
    if (!metrics || metrics.forbidden) return null;
    const total = sum(metrics.series, "syncline_messages_accepted_total", (l) => l.tenant === tenant && l.pipeline === id);
    return remember(`accepted/${tenant}/${id}`, total);
  };
  return html`<h2>Pipelines</h2><${Err} error=${error} />
    ${data && html`<table data-test="pipelines">
      <thead><tr><th>Tenant</th><th>Pipeline</th><th>Source</th><th>Stages</th><th>Accepted</th></tr></thead>
      <tbody>${data.pipelines.map((p) => {
        const h = rate(p.tenant, p.id);
        return html`<tr>
          <td>${p.tenant}</td>
          <td><a href=${`#/pipelines/${encodeURIComponent(p.tenant)}/${encodeURIComponent(p.id)}`} data-test=${`pipeline-${p.id}`}>${p.id}</a></td>
          <td>${typeof p.source === "string" ? p.source : p.source.name}</td>
          <td>${p.stages.map((s) => s.name).join(" → ") || html`<span class="muted">routes only</span>`}</td>
          <td>${h ? html`${h[h.length - 1]} <${Spark} points=${h} width=${100} height=${20} />` : html`<span class="muted">—</span>`}</td>
        </tr>`;
      })}</tbody></table>`}
    ${metrics?.forbidden && html`<p class="muted">Throughput needs a token for every tenant (it reads /metrics).</p>`}`;
}

function Pipeline({ tenant, id }) {
  const [data, error] = usePoll(() => api("GET", "/v1/pipelines"), 5000);
  const [metrics] = useMetrics();
  const p = data?.pipelines.find((x) => x.tenant === tenant && x.id === id);
  const perSecond = (() => {
    if (!metrics || metrics.forbidden) return null;
    const h = remember(`accepted/${tenant}/${id}`, sum(metrics.series, "syncline_messages_accepted_total", (l) => l.tenant === tenant && l.pipeline === id));
    return h;
  })();
  const stageCount = (no, outcome) =>
    metrics && !metrics.forbidden ? sum(metrics.series, "syncline_stage_messages_total", (l) => l.tenant === tenant && l.pipeline === id && l.stage === String(no) && l.outcome === outcome) : null;
  return html`<h2>Pipeline <code>${tenant}/${id}</code></h2><${Err} error=${error} />
    ${data && !p && html`<p class="error">No such pipeline.</p>`}
    ${p && html`<div class="panel">
      <p>Source: <b>${typeof p.source === "string" ? p.source : `${p.source.name} ${short(p.source.digest)}`}</b> · tier <b>${p.tier}</b>
        ${perSecond && html` · accepted <b data-test="accepted">${perSecond[perSecond.length - 1]}</b>
          (<span data-test="rate">${rateOf(`${tenant}/${id}`, perSecond[perSecond.length - 1]).toFixed(1)}</span> msg/s) <${Spark} points=${perSecond} />`}</p>
      <table data-test="stages"><thead><tr><th>#</th><th>Plugin</th><th>World</th><th>Digest</th><th>Breaker</th><th>Passed</th><th>Failed</th></tr></thead>
      <tbody>${p.stages.map((s, i) => html`<tr>
        <td>${i + 1}</td><td data-test="stage-plugin">${s.name}</td><td>${s.world}</td>
        <td><code title=${s.digest} data-test="stage-digest">${short(s.digest)}</code></td>
        <td>${s.breaker ? html`<${Badge} text=${s.breaker.state} />` : html`<span class="muted">—</span>`}</td>
        <td>${stageCount(i + 1, "passed") ?? "—"}</td><td>${stageCount(i + 1, "failed") ?? "—"}</td>
      </tr>`)}</tbody></table>
      <h3>Routes</h3>
      <ul>${p.routes.map((r) => html`<li>${r.when ? html`when <code>${r.when}</code>: ` : "always: "}${r.to.join(", ")}</li>`)}</ul>
    </div>`}`;
}

function Flow({ id }) {
  const [value, setValue] = useState(id || "");
  const [data, error] = usePoll(() => (id ? api("GET", `/v1/correlations/${encodeURIComponent(id)}`) : Promise.resolve(null)), 0, [id]);
  const go = (e) => { e.preventDefault(); location.hash = `#/flow/${encodeURIComponent(value.trim())}`; };
  return html`<h2>Follow a flow</h2>
    <form class="inline" onSubmit=${go}>
      <input type="text" data-test="correlation" placeholder="correlation id (X-Correlation-Id, traceparent trace id, or a message id)" value=${value} onInput=${(e) => setValue(e.target.value)} />
      <button type="submit" data-test="follow">Follow</button>
    </form>
    <${Err} error=${error} />
    ${data && html`<div class="panel">
      <p>${data.messages.length} message(s)${data.truncated ? " (the first 500)" : ""} in <code>${data.correlation}</code></p>
      <ul class="timeline" data-test="timeline">${data.timeline.map((e) => html`<li class=${e.event}>
        <span class="mono">${when(e.at)}</span> <${Badge} text=${e.event} /> <b>${e.kind || ""}</b>${" "}
        <a href=${`#/flow/${encodeURIComponent(e.message)}`} class="mono" title="this message's own flow">${e.message}</a>
        ${e.detail ? html` <span class="muted">${typeof e.detail === "string" ? e.detail : JSON.stringify(e.detail)}</span>` : ""}
      </li>`)}</ul></div>`}`;
}

function DeadLetters() {
  const [data, error, reload] = usePoll(() => api("GET", "/v1/dead-letters"), 5000);
  const [notice, setNotice] = useState(null);
  const [failure, setFailure] = useState(null);
  const replay = async (d) => {
    try {
      await api("POST", `/v1/dead-letters/${d.id}/replay`);
      setNotice(`Dead letter ${d.id} replayed.`); setFailure(null);
    } catch (e) { setFailure(e); }
    reload();
  };
  const now = Date.now();
  return html`<h2>Dead letters</h2><${Err} error=${error || failure} />
    ${notice && html`<p class="notice" data-test="notice">${notice}</p>`}
    ${data && (data["dead-letters"].length === 0 ? html`<p class="muted" data-test="no-dead-letters">No open dead letters.</p>` : html`<table data-test="dead-letters">
      <thead><tr><th>#</th><th>Tenant / pipeline</th><th>Where</th><th>Reason</th><th>Age</th><th></th></tr></thead>
      <tbody>${data["dead-letters"].map((d) => html`<tr data-test=${`dead-letter-${d.id}`}>
        <td>${d.id}</td><td>${d.tenant} / ${d.pipeline}</td><td>${d.place}</td>
        <td>${d.reason}${d.outcome === "unknown" ? html` <${Badge} text="warn" /> may have been delivered` : ""}</td>
        <td>${ago(now - d.at)}</td>
        <td><button data-test=${`replay-${d.id}`} onClick=${() => replay(d)}>Replay</button></td>
      </tr>`)}</tbody></table>`)}`;
}

function ExceptionRow({ e, reload, setNotice, setFailure }) {
  const [comment, setComment] = useState("");
  const settle = async (action) => {
    try {
      await api("POST", `/v1/exceptions/${e.id}/${action}`, action === "discard" ? { reason: comment } : { comment });
      setNotice(`Exception ${e.id}: ${action} done.`); setFailure(null);
    } catch (err) { setFailure(err); }
    reload();
  };
  const late = e["sla-ms"] != null && e["age-ms"] > e["sla-ms"];
  return html`<tr data-test=${`exception-${e.id}`}>
    <td>${e.id}</td><td>${e.queue}<br /><span class="muted">${e.owner || ""}</span></td>
    <td><code>${e.detail?.code || ""}</code> ${e.detail?.text || ""}</td>
    <td>${ago(e["age-ms"])}${late ? html` <${Badge} text="bad" />` : ""}</td>
    <td><form class="inline" onSubmit=${(ev) => { ev.preventDefault(); settle("resolve"); }}>
      <input type="text" data-test=${`comment-${e.id}`} placeholder="what was done" value=${comment} onInput=${(ev) => setComment(ev.target.value)} />
      <button type="submit" data-test=${`resolve-${e.id}`}>Resolve</button>
      <button type="button" class="quiet" data-test=${`retry-${e.id}`} onClick=${() => settle("retry")}>Retry</button>
    </form></td>
  </tr>`;
}

function Exceptions() {
  const [data, error, reload] = usePoll(() => api("GET", "/v1/exceptions"), 5000);
  const [notice, setNotice] = useState(null);
  const [failure, setFailure] = useState(null);
  const queues = {};
  for (const e of data?.exceptions || []) queues[e.queue] = (queues[e.queue] || 0) + 1;
  return html`<h2>Exceptions</h2><${Err} error=${error || failure} />
    ${notice && html`<p class="notice" data-test="notice">${notice}</p>`}
    ${data && html`<p class="muted">${Object.entries(queues).map(([q, n]) => `${q}: ${n} open`).join(" · ") || "No open exceptions."}</p>`}
    ${data && data.exceptions.length > 0 && html`<table data-test="exceptions">
      <thead><tr><th>#</th><th>Queue / owner</th><th>What</th><th>Age</th><th></th></tr></thead>
      <tbody>${data.exceptions.map((e) => html`<${ExceptionRow} key=${e.id} e=${e} reload=${reload} setNotice=${setNotice} setFailure=${setFailure} />`)}</tbody></table>`}`;
}

function Sinks() {
  const [data, error, reload] = usePoll(() => api("GET", "/v1/sinks"), 3000);
  const [reason, setReason] = useState("");
  const [failure, setFailure] = useState(null);
  const act = async (name, action) => {
    try {
      await api("POST", `/v1/sinks/${encodeURIComponent(name)}/${action}`, action === "pause" ? { reason: reason || "paused from the console" } : undefined);
      setFailure(null);
    } catch (e) { setFailure(e); }
    reload();
  };
  return html`<h2>Sinks</h2><${Err} error=${error || failure} />
    <p class="muted">Sinks are shared by tenants: this needs a token for every tenant.</p>
    <form class="inline"><input type="text" data-test="pause-reason" placeholder="reason for a pause" value=${reason} onInput=${(e) => setReason(e.target.value)} /></form>
    ${data && html`<table data-test="sinks">
      <thead><tr><th>Sink</th><th>Plugin</th><th>Pending</th><th>Oldest</th><th>Breaker</th><th>State</th><th></th></tr></thead>
      <tbody>${data.sinks.map((s) => html`<tr data-test=${`sink-${s.name}`}>
        <td>${s.name}</td><td>${s.plugin} <code>${short(s.digest)}</code></td><td>${s.pending}</td><td>${ago(s["oldest-pending-ms"])}</td>
        <td>${s.control.breaker ? html`<${Badge} text=${s.control.breaker.state} />` : "—"}</td>
        <td>${s.control.paused ? html`<${Badge} text="paused" /> ${s.control.paused.reason}` : s.control.maintenance ? html`<${Badge} text="warn" /> maintenance` : html`<${Badge} text="ok" />`}</td>
        <td>${s.control.paused
          ? html`<button data-test=${`resume-${s.name}`} onClick=${() => act(s.name, "resume")}>Resume</button>`
          : html`<button class="quiet" data-test=${`pause-${s.name}`} onClick=${() => act(s.name, "pause")}>Pause</button>`}</td>
      </tr>`)}</tbody></table>`}`;
}

function Kpis() {
  const [metrics, error] = useMetrics(3000);
  if (metrics?.forbidden) return html`<h2>KPIs</h2><p class="error">The KPIs need a reader token for every tenant (they read /metrics).</p>`;
  const s = metrics?.series || [];
  const tenants = [...new Set(s.filter((x) => x.name === "syncline_messages_accepted_total").map((x) => x.labels.tenant))];
  const card = (key, label, value, fmt = (v) => v) => {
    const h = remember(`kpi/${key}`, Number.isFinite(value) ? value : 0);
    return html`<div class="panel kpi" data-test=${`kpi-${key}`}><div class="value">${Number.isFinite(value) ? fmt(value) : "—"}</div><div class="label">${label}</div><${Spark} points=${h} /></div>`;
  };
  return html`<h2>Business KPIs</h2><${Err} error=${error} />
    ${metrics && tenants.concat(tenants.length ? [] : [""]).map((t) => {
      const m = (l) => !t || l.tenant === t;
      const ordered = sum(s, "syncline_recommendations_total", (l) => m(l) && l.outcome === "ordered");
      const deferred = sum(s, "syncline_recommendations_total", (l) => m(l) && l.outcome === "deferred");
      const invCount = sum(s, "syncline_inventory_event_latency_seconds_count", m);
      const invSum = sum(s, "syncline_inventory_event_latency_seconds_sum", m);
      return html`<h3>${t || "All tenants"}</h3><div class="grid">
        ${card(`${t}-acceptance`, "Forecast acceptance (recommendations ordered)", ordered + deferred ? ordered / (ordered + deferred) : NaN, (v) => `${(v * 100).toFixed(1)}%`)}
        ${card(`${t}-delayed`, "Replenishment delivered late", sum(s, "syncline_replenishment_delayed_total", m))}
        ${card(`${t}-inventory`, "Inventory event latency (mean)", invCount ? invSum / invCount : NaN, (v) => ago(v * 1000))}
        ${card(`${t}-loops`, "Orders waiting for a status (overdue)", sum(s, "syncline_loops", (l) => m(l) && l.state === "overdue"))}
        ${card(`${t}-dead`, "Dead letters open", sum(s, "syncline_dead_letters_open", m))}
        ${card(`${t}-accepted`, "Messages accepted", sum(s, "syncline_messages_accepted_total", m))}
      </div>`;
    })}
    ${metrics && html`<h3>Exception queues</h3>${s.some((x) => x.name === "syncline_exceptions_open")
      ? html`<div class="grid">${s.filter((x) => x.name === "syncline_exceptions_open").map((x) =>
          card(`queue-${x.labels.queue}`, `${x.labels.queue}: open (oldest ${ago(1000 * sum(s, "syncline_exception_oldest_age_seconds", (l) => l.queue === x.labels.queue))})`, x.value))}</div>`
      : html`<p class="muted">No open exceptions.</p>`}`}`;
}

const VIEWS = [
  ["pipelines", "Pipelines"], ["flow", "Flow"], ["dead-letters", "Dead letters"],
  ["exceptions", "Exceptions"], ["sinks", "Sinks"], ["kpis", "KPIs"],
];

function useHash() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function App() {
  const [signedIn, setSignedIn] = useState(getToken() !== null);
  const hash = useHash();
  const parts = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const view = parts[0] || "pipelines";
  const mainRef = useRef(null);
  if (!signedIn) return html`<${SignIn} onDone=${() => { setSignedIn(true); if (!location.hash) location.hash = "#/pipelines"; }} />`;
  const signOut = () => { sessionStorage.removeItem(TOKEN_KEY); setSignedIn(false); };
  let body;
  if (view === "pipelines" && parts[1]) body = html`<${Pipeline} tenant=${parts[1]} id=${parts[2]} />`;
  else if (view === "pipelines") body = html`<${Pipelines} />`;
  else if (view === "flow") body = html`<${Flow} id=${parts[1]} />`;
  else if (view === "dead-letters") body = html`<${DeadLetters} />`;
  else if (view === "exceptions") body = html`<${Exceptions} />`;
  else if (view === "sinks") body = html`<${Sinks} />`;
  else if (view === "kpis") body = html`<${Kpis} />`;
  else body = html`<p class="error">Nothing at ${hash}.</p>`;
  return html`<header><h1>Syncline</h1>
      <nav>${VIEWS.map(([k, label]) => html`<a href=${`#/${k}`} class=${view === k ? "on" : ""} data-test=${`nav-${k}`}>${label}</a>`)}</nav>
      <span class="who">${getToken() ? "token set" : "open API"}<button class="quiet" data-test="sign-out" onClick=${signOut}>Sign out</button></span>
    </header><main ref=${mainRef}>${body}</main>`;
}

const root = document.getElementById("app");
root.textContent = "";
render(html`<${App} />`, root);
