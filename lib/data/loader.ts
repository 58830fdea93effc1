/**
 * Batches from the sample cache, as NHWC float32 tensors.
 *
 * Shapes:  b = batch size, s = image side, 3 = RGB channels.
 *   x  tf.Tensor4D [b, s, s, 3] float32, normalised per channel: (v/255 − mean_c)/std_c
 *   y  Int32Array [b] class indices (`labels()` → tf int32 [b], `oneHot()` → tf float32 [b, classes])
 *   indices  Int32Array [b]: which samples of the split (for paths, raw pixels, misclassified images)
 *
 * Determinism: everything random is a pure function of (seed, epoch, position), through the kit's Rng:
 *   order of epoch e        Rng(mix(seed, 'order', e))     shuffle of 0..n−1 (or a class-balanced draw)
 *   augmentation of sample  Rng(mix(seed, 'augment', e, k)) for the k-th sample of epoch e
 * so `epoch(e, { startBatch: b })` resumes mid-epoch with exactly the batches an uninterrupted run would
 * have produced, whatever the batch size history or prefetching.
 *
 * Concurrency: the next `prefetch` batches are read (positioned file reads, in parallel) and augmented while
 * the current one is used; tensors are only created for the batch being handed out, so an abandoned
 * iteration leaks nothing.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../util/random';
import { mixSeed } from './split';
import type { SampleStore } from './cache';
import {
  augment as applyAugment,
  normalizationTable,
  normalizeInto,
  OFFICIAL_TRAIN_AUGMENT,
  type AugmentConfig,
  type ChannelStats,
} from './transforms';
import type { SplitName } from './types';

export interface LoaderOptions {
  batchSize: number;
  /** Shuffle every epoch (default: true for train, false otherwise). */
  shuffle?: boolean;
  /** Random transforms (default: the official RandomResizedCrop for train, none otherwise); false = none. */
  augment?: AugmentConfig | false;
  /** Class-balanced sampling: draw `samplesPerEpoch` samples with replacement, P(sample) ∝ 1/count(class). */
  balanced?: boolean;
  /** Samples per epoch for balanced sampling (default: the split size). */
  samplesPerEpoch?: number;
  /** Drop a last, smaller batch (default false, like PyTorch's DataLoader). */
  dropLast?: boolean;
  seed?: number;
  /** Batches prepared ahead of the one being consumed (default 2; 0 = none). */
  prefetch?: number;
  /** Normalisation statistics (default: the dataset's, from the cache); e.g. transforms.OFFICIAL_STATS. */
  stats?: Pick<ChannelStats, 'mean' | 'std'>;
}

/** One batch. `x` belongs to the caller: dispose it (or the batch) after use. */
export interface Batch {
  x: tf.Tensor4D;
  y: Int32Array;
  indices: Int32Array;
  epoch: number;
  batch: number;
  /** y as an int32 tensor [b] (new tensor, caller disposes). */
  labels(): tf.Tensor1D;
  /** y one-hot as float32 [b, numClasses] (new tensor, caller disposes). */
  oneHot(): tf.Tensor2D;
  dispose(): void;
}

/** A batch before it becomes tensors. */
interface HostBatch {
  data: Float32Array;
  y: Int32Array;
  indices: Int32Array;
  epoch: number;
  batch: number;
}

/** Where a trainer stands: the next batch to produce. */
export interface LoaderPosition {
  epoch: number;
  batch: number;
}

export class DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly augment: AugmentConfig | false;
  readonly balanced: boolean;
  readonly dropLast: boolean;
  readonly seed: number;
  readonly prefetch: number;
  /** Samples drawn per epoch. */
  readonly samplesPerEpoch: number;
  private readonly lut: Float32Array;
  private readonly labels: Int32Array;

  constructor(
    private readonly store: SampleStore,
    readonly split: SplitName,
    readonly classes: string[],
    opts: LoaderOptions,
  ) {
    if (!(Number.isInteger(opts.batchSize) && opts.batchSize > 0)) {
      throw new RangeError(`batchSize must be a positive integer, got ${opts.batchSize}`);
    }
    this.batchSize = opts.batchSize;
    this.shuffle = opts.shuffle ?? split === 'train';
    this.augment = opts.augment ?? (split === 'train' ? OFFICIAL_TRAIN_AUGMENT : false);
    this.balanced = opts.balanced ?? false;
    this.dropLast = opts.dropLast ?? false;
    this.seed = opts.seed ?? 0;
    this.prefetch = Math.max(0, opts.prefetch ?? 2);
    this.labels = Int32Array.from(store.index.splits[split].labels);
    this.samplesPerEpoch = opts.balanced ? (opts.samplesPerEpoch ?? this.labels.length) : this.labels.length;
    this.lut = normalizationTable(opts.stats ?? store.index.stats);
  }

  /** Image side s of every batch. */
  get size(): number {
    return this.store.index.size;
  }

  /** Samples in the split. */
  get length(): number {
    return this.labels.length;
  }

  /** Batches per epoch. */
  get numBatches(): number {
    const n = this.samplesPerEpoch;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** Samples per class in the split, in class order. */
  classCounts(): number[] {
    const counts = new Array<number>(this.classes.length).fill(0);
    for (const l of this.labels) counts[l]++;
    return counts;
  }

  /** A small table of the class counts (and the balanced-sampling weight, when on). */
  report(): string {
    const counts = this.classCounts();
    const total = this.labels.length;
    const lines = [`${this.split}: ${total} samples, ${this.numBatches} batches of ${this.batchSize}`];
    counts.forEach((c, k) => {
      const pct = total ? ((100 * c) / total).toFixed(1) : '0.0';
      lines.push(`  ${this.classes[k].padEnd(24)} ${String(c).padStart(7)}  ${pct.padStart(5)}%`);
    });
    if (this.balanced) lines.push(`  class-balanced sampling: ${this.samplesPerEpoch} draws per epoch`);
    return lines.join('\n');
  }

  /** The sample order of epoch `epoch` (indices into the split). */
  order(epoch: number): Int32Array {
    const n = this.labels.length;
    if (this.balanced) {
      // Inverse-frequency weights → cumulative distribution → one binary search per draw.
      const counts = this.classCounts();
      const cdf = new Float64Array(n);
      let acc = 0;
      for (let i = 0; i < n; i++) cdf[i] = acc += 1 / counts[this.labels[i]];
      const rng = new Rng(mixSeed(this.seed, 'balanced', epoch));
      const out = new Int32Array(this.samplesPerEpoch);
      for (let k = 0; k < out.length; k++) {
        const u = rng.uniform() * acc;
        let lo = 0,
          hi = n - 1;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (cdf[mid] > u) hi = mid;
          else lo = mid + 1;
        }
        out[k] = lo;
      }
      return out;
    }
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    if (this.shuffle) new Rng(mixSeed(this.seed, 'order', epoch)).shuffle(order);
    return order;
  }

  /** Read, augment and normalise batch `b` of epoch `e` (host memory only). */
  private async host(epoch: number, b: number, order: Int32Array): Promise<HostBatch> {
    const start = b * this.batchSize;
    const indices = order.slice(start, Math.min(start + this.batchSize, order.length));
    const s = this.size;
    const per = s * s * 3;
    const data = new Float32Array(indices.length * per);
    const y = new Int32Array(indices.length);
    const pixels = await Promise.all(Array.from(indices, (i) => this.store.read(this.split, i)));
    pixels.forEach((px, k) => {
      let img = { data: px, width: s, height: s };
      if (this.augment)
        img = applyAugment(img, s, new Rng(mixSeed(this.seed, 'augment', epoch, start + k)), this.augment);
      normalizeInto(data, k * per, img.data, this.lut);
      y[k] = this.labels[indices[k]];
    });
    return { data, y, indices, epoch, batch: b };
  }

  private toBatch(h: HostBatch): Batch {
    const n = h.y.length;
    const s = this.size;
    const numClasses = this.classes.length;
    const x = tf.tensor4d(h.data, [n, s, s, 3], 'float32');
    return {
      x,
      y: h.y,
      indices: h.indices,
      epoch: h.epoch,
      batch: h.batch,
      labels: () => tf.tensor1d(h.y, 'int32'),
      oneHot: () => tf.tidy(() => tf.oneHot(tf.tensor1d(h.y, 'int32'), numClasses).toFloat() as tf.Tensor2D),
      dispose: () => x.dispose(),
    };
  }

  /** Batch `b` of epoch `epoch`, on its own (random access; same content as during iteration). */
  async batch(epoch: number, b: number): Promise<Batch> {
    if (!(b >= 0 && b < this.numBatches)) throw new RangeError(`batch ${b} is outside 0..${this.numBatches - 1}`);
    return this.toBatch(await this.host(epoch, b, this.order(epoch)));
  }

  /**
   * The batches of epoch `epoch`, from `startBatch` (default 0) on. Resume after a stop at (e, b) with
   * `epoch(e, { startBatch: b + 1 })`, or use `after({ epoch: e, batch: b })`.
   */
  async *epoch(epoch: number, { startBatch = 0 }: { startBatch?: number } = {}): AsyncGenerator<Batch> {
    const order = this.order(epoch);
    const nb = this.numBatches;
    const pending: Array<Promise<HostBatch>> = [];
    let next = startBatch;
    const fill = () => {
      while (next < nb && pending.length <= this.prefetch) pending.push(this.host(epoch, next++, order));
    };
    try {
      fill();
      while (pending.length > 0) {
        const h = await (pending.shift() as Promise<HostBatch>);
        fill();
        yield this.toBatch(h);
      }
    } finally {
      // The consumer stopped early (or a read failed): batches still in flight are dropped quietly.
      for (const p of pending) p.catch(() => undefined);
    }
  }

  /** The position after batch `p.batch` of epoch `p.epoch` (rolls over to the next epoch). */
  after(p: LoaderPosition): LoaderPosition {
    return p.batch + 1 < this.numBatches ? { epoch: p.epoch, batch: p.batch + 1 } : { epoch: p.epoch + 1, batch: 0 };
  }
}
