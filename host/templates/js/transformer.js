// __NAME__: a Syncline transformer plugin in JavaScript.
//
// Build: npm run build       Test: syncline test __NAME__.wasm --cases cases
// The type mapping (camelCase fields, variants as {tag, val}), errors, config,
// tables, state and logging are in the plugin guide (docs/PLUGINS.md of Syncline).
import { get } from 'syncline:plugin/config@__PLUGIN_API__';
import { log } from 'syncline:plugin/log@__PLUGIN_API__';

/** A refusal the host records with its code (dead letter, trace). */
function pluginError(code, message, retryable = false) {
  return { code, message, retryable };
}

/**
 * Runs a plugin function: a plugin error passes as it is; any other exception
 * (a bug, a TypeError) becomes an `uncaught` plugin error carrying its name,
 * message and stack. (Thrown as it is, it would abort the call with no text.)
 */
function guard(body) {
  try {
    return body();
  } catch (e) {
    if (e && typeof e.code === 'string' && typeof e.message === 'string' && !(e instanceof Error)) throw e;
    throw pluginError('uncaught', e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e));
  }
}

export const transform = {
  /** The messages that replace `msg`: [] drops it, several split it. */
  transform(msg) {
    return guard(() => {
      if (msg.body.tag === 'raw' && msg.body.val.data.length === 0) {
        throw pluginError('empty-payload', 'the raw payload is empty');
      }
      log('debug', `mapping ${msg.id}`);
      msg.headers.push({ key: 'mapped-by', value: get('mapped-by') ?? '__TYPE__' });
      return [msg];
    });
  },
};
