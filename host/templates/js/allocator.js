// __NAME__: a Syncline allocator plugin in JavaScript.
//
// Build: npm run build       Test: syncline test __NAME__.wasm --cases cases

export const allocate = {
  /** The messages that result from the batch; say which rule shaped each. */
  allocate(batch) {
    for (const msg of batch) msg.headers.push({ key: 'allocated-by', value: '__TYPE__' });
    return batch;
  },
};
