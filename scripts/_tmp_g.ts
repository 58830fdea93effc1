import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend';
import { createModel, MicroscopicMamba } from '../lib/models';
import { Rng } from '../lib/util/random';
(async () => {
  if (process.argv[4]) await initBackend(process.argv[4], { quiet: true });
  await initBackend(process.argv[2], { quiet: true });
  const model = createModel('microscopic-mamba-t', { depths: [1, 1, 1, 1], dims: [32, 64, 128, 256], numClasses: 2, seed: 4, scanImpl: (process.argv[3] ?? 'auto') as any }) as MicroscopicMamba;
  const x = tf.tensor4d(new Rng(8).fillNormal(2 * 64 * 64 * 3), [2, 64, 64, 3]);
  const y = tf.oneHot(tf.tensor1d([1, 0], 'int32'), 2);
  const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, model.forward(x, { training: true, rng: new Rng(3) })) as tf.Scalar, model.trainableVariables());
  const byParam = new Map(model.namedParameters().map(([k, p]) => [p.variable.name, k]));
  console.log('loss', value.dataSync()[0]);
  for (const [name, g] of Object.entries(grads)) { const m = tf.max(tf.abs(g)).dataSync()[0]; console.log(byParam.get(name), m.toExponential(2)); }
})();
