/**
 * Small stand-ins for the training tests: a tiny classifier built from lib/nn layers (Linear, BatchNorm,
 * DropPath, so BatchNorm buffers and the DropPath generator are exercised) and an in-memory, seeded,
 * resumable batch source over a separable toy problem.
 */
import * as tf from '@tensorflow/tfjs';
import { BatchNorm2d, DropPath, type ForwardContext, Linear } from '../../lib/nn/index';
import type { ClassifierModel } from '../../lib/models/index';
import type { TrainBatch } from '../../lib/train/trainer';
import type { EpochSource } from '../../lib/train/fit';
import { Module } from '../../lib/nn/index';
import { Rng } from '../../lib/util/random';

/** x [b, s, s, 3] → flatten → Linear → BatchNorm → ReLU → (+ DropPath(Linear)) → Linear → logits [b, k]. */
export class TinyNet extends Module implements ClassifierModel {
  readonly stageNames = ['fc1'];
  readonly fc1: Linear;
  readonly bn: BatchNorm2d;
  readonly branch: Linear;
  readonly drop: DropPath;
  readonly head: Linear;
  constructor(
    readonly size: number,
    readonly numClasses: number,
    seed = 0,
  ) {
    super();
    const rng = new Rng(seed);
    this.fc1 = this.addModule('fc1', new Linear(size * size * 3, 16, { rng }));
    this.bn = this.addModule('bn', new BatchNorm2d(16));
    this.branch = this.addModule('branch', new Linear(16, 16, { rng }));
    this.drop = this.addModule('drop', new DropPath(0.3));
    this.head = this.addModule('head', new Linear(16, numClasses, { rng }));
  }
  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x, ctx), ctx));
  }
  /** x [b, s, s, 3] → [b, 16] (a flat 'map': the net has no spatial stage). */
  forwardFeatures(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    this.checkInput(x.shape);
    return tf.tidy(() => tf.relu(this.bn.forward(this.fc1.forward(x.reshape([x.shape[0], -1])), ctx)));
  }
  forwardHead(h: tf.Tensor, ctx?: ForwardContext): tf.Tensor2D {
    return tf.tidy(() => {
      const g = this.drop.forward(this.branch.forward(h), ctx); // [b, 16]
      return this.head.forward(tf.add(h, g)) as tf.Tensor2D; // [b, k]
    });
  }
  checkInput(shape: number[]): void {
    if (shape.length !== 4 || shape[1] !== this.size || shape[2] !== this.size || shape[3] !== 3) {
      throw new Error(`TinyNet: expected [b, ${this.size}, ${this.size}, 3], got [${shape}]`);
    }
  }
}

/** n images of class c: noise around a class-specific mean colour (separable, not trivially). */
export function toyImages(n: number, size: number, k: number, seed: number): { x: Float32Array; y: Int32Array } {
  const rng = new Rng(seed);
  const x = new Float32Array(n * size * size * 3);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % k;
    for (let p = 0; p < size * size; p++) {
      for (let c = 0; c < 3; c++) x[(i * size * size + p) * 3 + c] = (c === y[i] % 3 ? 0.6 : 0) + rng.normal();
    }
  }
  return { x, y };
}

/**
 * Seeded, stateless-per-epoch source: the order of epoch e is a shuffle by Rng(seed + e) and each
 * sample's augmentation (a random sign flip of the whole image) depends only on (seed, epoch, position),
 * so any batch can be reproduced from (epoch, batch) alone.
 */
export class ToySource implements EpochSource {
  readonly batchesPerEpoch: number;
  readonly imagesPerEpoch: number;
  constructor(
    readonly data: { x: Float32Array; y: Int32Array },
    readonly size: number,
    readonly batchSize: number,
    readonly seed: number,
  ) {
    this.imagesPerEpoch = data.y.length;
    this.batchesPerEpoch = Math.ceil(data.y.length / batchSize);
  }
  *batches(epoch: number, start: number): Generator<TrainBatch> {
    const n = this.data.y.length;
    const order = new Rng(this.seed * 1000 + epoch).shuffle(Array.from({ length: n }, (_, i) => i)) as number[];
    const per = this.size * this.size * 3;
    for (let b = start; b < this.batchesPerEpoch; b++) {
      const idx = order.slice(b * this.batchSize, (b + 1) * this.batchSize);
      const xs = new Float32Array(idx.length * per);
      const aug = new Rng(this.seed * 7919 + epoch * 104729 + b);
      idx.forEach((j, i) => {
        const sign = aug.uniform() < 0.5 ? -1 : 1;
        for (let t = 0; t < per; t++) xs[i * per + t] = sign * this.data.x[j * per + t];
      });
      yield {
        x: tf.tensor4d(xs, [idx.length, this.size, this.size, 3]),
        y: tf.tensor1d(
          Int32Array.from(idx, (j) => this.data.y[j]),
          'int32',
        ),
      };
    }
  }
  getState(): unknown {
    return { seed: this.seed };
  }
  setState(state: unknown): void {
    if ((state as { seed: number }).seed !== this.seed) throw new Error('ToySource: state from another seed');
  }
}

/** Eval batches over all samples in order. */
export function* toyEvalBatches(
  data: { x: Float32Array; y: Int32Array },
  size: number,
  batchSize: number,
): Generator<TrainBatch> {
  const per = size * size * 3;
  for (let s = 0; s < data.y.length; s += batchSize) {
    const e = Math.min(data.y.length, s + batchSize);
    yield {
      x: tf.tensor4d(data.x.slice(s * per, e * per), [e - s, size, size, 3]),
      y: tf.tensor1d(data.y.slice(s, e), 'int32'),
    };
  }
}
