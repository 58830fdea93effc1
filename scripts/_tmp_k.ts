import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend';
import { createModel, MicroscopicMamba } from '../lib/models';
import { Rng } from '../lib/util/random';
(async () => {
  await initBackend('wasm', { quiet: true });
  const model = createModel('microscopic-mamba-t', { numClasses: 2 }) as MicroscopicMamba;
  const x = tf.randomNormal([8, 64, 64, 3]);
  const labels = tf.oneHot(tf.tensor1d([0, 1, 0, 1, 0, 1, 0, 1], 'int32'), 2);
  const opt = tf.train.adam(1e-4);
  const train = () => {
    const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(labels, model.forward(x, { training: true, rng: new Rng(0) })) as tf.Scalar, model.trainableVariables());
    if (process.argv[2] !== 'noadam') opt.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
    value.dataSync(); tf.dispose([value, grads]);
  };
  train();
  let t0 = performance.now(); train(); console.log('step', performance.now() - t0);
  console.log('vars', model.trainableVariables().length);
  const prof = await tf.profile(() => { train(); });
  const by = new Map<string, { ms: number; n: number }>();
  for (const k of prof.kernels) {
    const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
    const e = by.get(key) ?? { ms: 0, n: 0 }; e.ms += Number(k.kernelTimeMs) || 0; e.n++; by.set(key, e);
  }
  for (const [k, v] of [...by].filter(([k]) => /^(Concat|GatherV2|Sum|Transpose|SplitV|Identity) /.test(k)).sort((a, b) => b[1].ms - a[1].ms).slice(0, 40)) console.log(v.ms.toFixed(1).padStart(8), String(v.n).padStart(5), k.slice(0, 150));
})();
