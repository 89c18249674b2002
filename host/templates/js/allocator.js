// __NAME__: a Syncline allocator plugin in JavaScript.
//
// Build: npm run build       Test: syncline test __NAME__.wasm --cases cases

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

export const allocate = {
  /** The messages that result from the batch; say which rule shaped each. */
  allocate(batch) {
    return guard(() => {
      for (const msg of batch) msg.headers.push({ key: 'allocated-by', value: '__TYPE__' });
      return batch;
    });
  },
};
