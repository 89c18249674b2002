// js-tagger: the benchmarks' JavaScript transformer (a 12 MB component):
// tags each message and passes it on, like the Rust `tagger` fixture.
export const transform = {
  transform(msg) {
    msg.headers.push({ key: 'tagged-by', value: 'js-tagger' });
    return [msg];
  },
};
