import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend';
import '../lib/ops/selective-scan';
function bench(label: string, f: () => tf.Tensor | tf.Tensor[]) {
  for (let i = 0; i < 3; i++) tf.dispose(f());
  const t0 = performance.now();
  for (let i = 0; i < 20; i++) tf.dispose(f());
  console.log(label.padEnd(50), ((performance.now() - t0) / 20).toFixed(3), 'ms');
}
(async () => {
  await initBackend('wasm', { quiet: true });
  const a = tf.randomNormal([32, 16, 16, 3]), b = tf.randomNormal([32, 16, 16, 9]);
  bench('concat psffn [8192,3]+[8192,9]', () => tf.concat([a, b], 3));
  bench('pad+add psffn', () => tf.tidy(() => tf.add(tf.pad(a, [[0, 0], [0, 0], [0, 0], [0, 9]]), tf.pad(b, [[0, 0], [0, 0], [0, 0], [3, 0]]))));
  const c = tf.randomNormal([8, 16, 16, 48]);
  bench('concat mifa [2048,48]x2', () => tf.concat([c, c], 3));
  bench('stack mifa axis 4 -> [..,2,48]', () => tf.stack([c, c], 3));
  const t = tf.randomNormal([32, 16, 16, 12]);
  bench('split psffn [8192,12] -> 3,9', () => tf.split(t, [3, 9], 3));
  bench('slice psffn first 3', () => tf.slice(t, [0, 0, 0, 0], [-1, -1, -1, 3]));
  const xz = tf.randomNormal([32, 16, 16, 48]);
  bench('split in_proj [8192,48] -> 2', () => tf.split(xz, 2, 3));
  const x = tf.randomNormal([8192, 12]); const w = tf.randomNormal([12, 48]);
  bench('matmul in_proj [8192,12]@[12,48]', () => tf.matMul(x, w));
  bench('2 matmul halves', () => tf.tidy(() => [tf.matMul(x, w.slice([0, 0], [12, 24])), tf.matMul(x, w.slice([0, 24], [12, 24]))]));
  const blk = tf.randomNormal([8, 16, 16, 96]);
  bench('split block halves [2048,96]', () => tf.split(blk, 2, 3));
  bench('reverse [32,256,24] axis1', () => tf.reverse(tf.randomNormal([32, 256, 24]), 1));
  bench('shuffle [8192,6,2] transpose', () => tf.transpose(t.reshape([8192, 6, 2]), [0, 2, 1]));
  bench('gather channels [8192,12] axis1', () => tf.gather(t.reshape([8192, 12]), tf.tensor1d([0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11], 'int32'), 1));
  bench('dwconv full 12 ch', () => tf.depthwiseConv2d(t as tf.Tensor4D, tf.randomNormal([3, 3, 12, 1]) as tf.Tensor4D, 1, 'same'));
  bench('dwconv 3 ch', () => tf.depthwiseConv2d(a as tf.Tensor4D, tf.randomNormal([3, 3, 3, 1]) as tf.Tensor4D, 1, 'same'));
  bench('where', () => tf.where(tf.randomUniform([12]).greater(0.5), t, xz.slice([0,0,0,0],[-1,-1,-1,12])));
})();
