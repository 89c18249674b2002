// __NAME__: a Syncline source plugin in JavaScript; polls a JSON feed with
// `fetch`. Each poll is `GET {url}?since={cursor}`; the feed answers
// `{"records": [...], "cursor": "...", "more": false}` and each record becomes
// a raw JSON message for the pipeline's mapping stage.
//
// Build: npm run build       Test: syncline test __NAME__.wasm --cases cases
import { get } from 'syncline:plugin/config@__PLUGIN_API__';

/** A raw JSON message; the host gives it an id and correlation id. */
function raw(record) {
  return {
    id: '', correlationId: '', causationId: undefined, tenant: '', sourceSystem: '__NAME__',
    schemaVersion: '__SCHEMA_VERSION__', occurredAt: '', priority: 'normal', idempotencyKey: undefined, headers: [],
    body: { tag: 'raw', val: { contentType: 'application/json', data: new TextEncoder().encode(JSON.stringify(record)) } },
  };
}

/** A plugin error as it is; any other exception (a bug, bad JSON) as an
 * `uncaught` plugin error naming it (thrown as it is, it would abort the call
 * with no text). */
function asPluginError(e) {
  if (e && typeof e.code === 'string' && typeof e.message === 'string' && !(e instanceof Error)) return e;
  return { code: 'uncaught', message: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e), retryable: false };
}

async function readPage(cursor) {
  let url = get('url');
  if (cursor !== undefined) url += (url.includes('?') ? '&' : '?') + 'since=' + encodeURIComponent(cursor);
  let resp;
  try {
    resp = await fetch(url);
  } catch (e) {
    throw { code: 'feed-unreachable', message: String(e), retryable: true };
  }
  if (resp.status !== 200) {
    throw { code: 'feed-unavailable', message: `HTTP ${resp.status}`, retryable: resp.status >= 500 };
  }
  const page = await resp.json();
  return { messages: (page.records ?? []).map(raw), cursor: page.cursor ?? undefined, more: Boolean(page.more) };
}

export const poll = {
  async poll(cursor) {
    try {
      return await readPage(cursor);
    } catch (e) {
      throw asPluginError(e);
    }
  },
};
