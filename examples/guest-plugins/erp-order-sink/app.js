// erp-order-sink: a partner's ERP connector in JavaScript. It turns canonical
// purchase requisitions and transfer proposals into the ERP's order documents
// and posts them with `fetch` (wasi:http; the host lets it through only to the
// sink's `allowed-hosts`).
//
//   purchase requisition -> POST {url}/purchase-orders  {"orderType": "NB", "vendor": ...}
//   transfer proposal    -> POST {url}/transfer-orders  {"orderType": "UB", "supplyingPlant": ...}
//
// Every request carries the message's idempotency key (the ERP keeps one
// order per key, so a retry or replay never orders twice) and its correlation
// id. Answers: 2xx delivered (the ERP's order number is the reference), 408,
// 429 and 5xx retryable (Retry-After honoured), any other status permanent
// with the ERP's text; a refused connection is retryable.
//
// Config: `url` (required), `token` (a secret: a bearer token), `units` (a
// table of canonical unit -> ERP unit, e.g. {EA = "PCE"}).
// Build: npm run build       Test: syncline test erp-order-sink.wasm --cases cases
import { get, entries } from 'syncline:plugin/config@1.1.0';
import { log } from 'syncline:plugin/log@1.1.0';

/** The ERP's order document and path for one message, or a reason it has none. */
export function order(msg, units) {
  const unit = (u) => units[u] ?? u;
  const { tag, val } = msg.body;
  if (tag === 'purchase-requisition') {
    return {
      path: '/purchase-orders',
      doc: {
        orderType: 'NB', vendor: val.supplier, material: val.item, plant: val.location,
        quantity: val.quantity, unit: unit(val.uom), deliveryDate: val.needBy, orderBy: val.orderBy,
        reference: val.recommendation ?? val.id, rule: val.rule,
      },
    };
  }
  if (tag === 'transfer-proposal') {
    return {
      path: '/transfer-orders',
      doc: {
        orderType: 'UB', supplyingPlant: val.fromLocation, material: val.item, plant: val.toLocation,
        quantity: val.quantity, unit: unit(val.uom), deliveryDate: val.needBy, shipBy: val.shipBy,
        reference: val.recommendation ?? val.id, rule: val.rule,
      },
    };
  }
  return { reason: `the ERP takes purchase requisitions and transfer proposals, not ${tag}` };
}

/** `units.EA = PCE` config entries as {EA: 'PCE'}. */
function unitTable() {
  const table = {};
  for (const [key, value] of entries()) {
    if (key.startsWith('units.')) table[key.slice('units.'.length)] = value;
  }
  return table;
}

async function send(url, token, msg, o) {
  const headers = {
    'content-type': 'application/json',
    'idempotency-key': msg.idempotencyKey ?? msg.id,
    'x-correlation-id': msg.correlationId,
  };
  if (token) headers.authorization = `Bearer ${token}`;
  let resp;
  try {
    resp = await fetch(url + o.path, { method: 'POST', headers, body: JSON.stringify(o.doc) });
  } catch (e) {
    return { tag: 'retryable', val: { reason: `the ERP is unreachable: ${e}` } };
  }
  const text = await resp.text();
  if (resp.ok) {
    let ref;
    try { ref = JSON.parse(text).id; } catch { /* no JSON answer */ }
    return { tag: 'delivered', val: String(ref ?? msg.id) };
  }
  if (resp.status === 408 || resp.status === 429 || resp.status >= 500) {
    const after = Number(resp.headers.get('retry-after'));
    return { tag: 'retryable', val: { reason: `ERP answered ${resp.status}`, afterMs: after > 0 ? BigInt(after * 1000) : undefined } };
  }
  return { tag: 'permanent', val: `ERP answered ${resp.status}: ${text.slice(0, 200)}` };
}

export const deliver = {
  /** Exactly one outcome per message, in order. */
  async deliver(messages) {
    const url = (get('url') ?? '').replace(/\/$/, '');
    const token = get('token');
    const units = unitTable();
    const outcomes = [];
    for (const msg of messages) {
      try {
        const o = order(msg, units);
        outcomes.push(o.reason ? { tag: 'permanent', val: o.reason } : await send(url, token, msg, o));
      } catch (e) {
        // A bug shown with this message (dead-lettered, replayable after a
        // fix) rather than an abort that fails the whole batch without text.
        outcomes.push({ tag: 'permanent', val: `connector error: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}` });
      }
    }
    log('debug', `delivered ${messages.length} to ${url}`);
    return outcomes;
  },
};
