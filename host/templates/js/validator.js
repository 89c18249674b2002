// __NAME__: a Syncline validator plugin in JavaScript.
//
// Build: npm run build       Test: syncline test __NAME__.wasm --cases cases

export const validate = {
  /** Every violation found; an empty list means the message is valid. */
  validate(msg) {
    const out = [];
    if (msg.body.tag === 'forecast' && msg.body.val.quantity < 0) {
      out.push({ field: 'body.quantity', code: 'negative-quantity', severity: 'error', text: 'quantity must not be negative' });
    }
    return out;
  },
};
