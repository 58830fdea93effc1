import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend';
import { createModel, MicroscopicMamba } from '../lib/models';
import { Rng } from '../lib/util/random';
(async () => {
  await initBackend('cpu', { quiet: true });
  const model = createModel('microscopic-mamba-t', { depths: [1, 1, 1, 1], dims: [32, 64, 128, 256], numClasses: 2, seed: 4 }) as MicroscopicMamba;
  const x = tf.tensor4d(new Rng(8).fillNormal(2 * 64 * 64 * 3), [2, 64, 64, 3]);
  const y = tf.oneHot(tf.tensor1d([1, 0], 'int32'), 2);
  const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, model.forward(x, { training: true, rng: new Rng(3) })) as tf.Scalar, model.trainableVariables());
  const byParam = new Map(model.namedParameters().map(([k, p]) => [p.variable.name, k]));
  const refs = new Map<string, [Float32Array, Float32Array]>();
  for (const [name, g] of Object.entries(grads)) { const a = g.dataSync() as Float32Array; refs.set(byParam.get(name)!, [a, Float32Array.from(a)]); }
  tf.dispose([value, grads]);
  if (process.argv[2] === 'switch') {
    await initBackend('wasm', { quiet: true });
    const m2 = createModel('microscopic-mamba-t', { depths: [1, 1, 1, 1], dims: [32, 64, 128, 256], numClasses: 2, seed: 4 }) as MicroscopicMamba;
    const x2 = tf.tensor4d(new Rng(8).fillNormal(2 * 64 * 64 * 3), [2, 64, 64, 3]);
    const g2 = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d([1, 0], 'int32'), 2), m2.forward(x2, { training: true, rng: new Rng(3) })) as tf.Scalar, m2.trainableVariables());
    void g2;
    let bad = 0;
    for (const [k, [a, c]] of refs) { let d = 0; for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - c[i])); if (d > 0 || a.length !== c.length) { bad++; if (bad < 10) console.log('after switch changed', k, d, a.length, c.length, a.buffer.byteLength); } }
    console.log('after switch: changed arrays', bad, 'of', refs.size);
    return;
  }
  // Another pass.
  const again = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, model.forward(x, { training: true, rng: new Rng(3) })) as tf.Scalar, model.trainableVariables());
  let bad = 0;
  for (const [k, [a, c]] of refs) { let d = 0; for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - c[i])); if (d > 0) { bad++; if (bad < 10) console.log('changed', k, d, a.length); } }
  console.log('changed arrays', bad, 'of', refs.size);
  // Is a *live* tensor affected? Keep one tensor alive and compare.
  const live = again.grads;
  const snap = new Map(Object.entries(live).map(([n, g]) => [n, Float32Array.from(g.dataSync())]));
  const third = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, model.forward(x, { training: true, rng: new Rng(3) })) as tf.Scalar, model.trainableVariables());
  let badLive = 0;
  for (const [n, g] of Object.entries(live)) { const a = g.dataSync(); const s = snap.get(n)!; for (let i = 0; i < a.length; i++) if (a[i] !== s[i]) { badLive++; break; } }
  console.log('live tensors changed', badLive);
  void third;
})();
