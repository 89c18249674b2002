// __NAME__: a Syncline sink plugin in JavaScript; posts each message as JSON
// with `fetch` (wasi:http: the host lets it through only to `allowed-hosts`).
//
// Config: `url` (required), `token` (a secret, sent as a bearer token).
// Build: npm run build       Test: syncline test __NAME__.wasm --cases cases
import { get } from 'syncline:plugin/config@__PLUGIN_API__';

/** The downstream's document for one message (shape it here). */
function document(msg) {
  return JSON.stringify({ id: msg.id, kind: msg.body.tag, body: msg.body.val });
}

export const deliver = {
  /** Exactly one outcome per message, in order. */
  async deliver(messages) {
    const url = get('url');
    const token = get('token');
    const outcomes = [];
    for (const msg of messages) {
      const headers = { 'content-type': 'application/json', 'idempotency-key': msg.idempotencyKey ?? msg.id };
      if (token) headers.authorization = `Bearer ${token}`;
      let body;
      try {
        body = document(msg);
      } catch (e) {
        // A bug, shown with this message (dead-lettered, replayable after a fix).
        outcomes.push({ tag: 'permanent', val: `cannot make the document: ${e}` });
        continue;
      }
      let resp;
      try {
        resp = await fetch(url, { method: 'POST', headers, body });
      } catch (e) {
        outcomes.push({ tag: 'retryable', val: { reason: `unreachable: ${e}` } });
        continue;
      }
      const text = await resp.text();
      if (resp.ok) {
        let ref = msg.id;
        try { ref = JSON.parse(text).id ?? ref; } catch { /* not JSON: keep the message id */ }
        outcomes.push({ tag: 'delivered', val: String(ref) });
      } else if (resp.status === 408 || resp.status === 429 || resp.status >= 500) {
        const after = Number(resp.headers.get('retry-after'));
        outcomes.push({ tag: 'retryable', val: { reason: `HTTP ${resp.status}`, afterMs: after > 0 ? BigInt(after * 1000) : undefined } });
      } else {
        outcomes.push({ tag: 'permanent', val: `HTTP ${resp.status}: ${text.slice(0, 200)}` });
      }
    }
    return outcomes;
  },
};
