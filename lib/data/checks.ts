/**
 * Checks a dataset must pass before training starts (before any image is decoded or any step is taken):
 * every class has training images, the validation split is not empty, and the test split is not empty
 * when the run will be tested. Each failure is one DataError naming the dataset root and what to do.
 */
import { DataError } from './errors';
import type { DatasetInfo } from './dataset';

export interface TrainingSplitChecks {
  /** The run evaluates on the test split at the end (then an empty test split is an error). */
  needTest: boolean;
}

/** Throw a DataError when the splits cannot train a classifier (see the file doc). */
export function checkTrainingSplits(info: DatasetInfo, opts: TrainingSplitChecks): void {
  const { classes, counts, root } = info;
  const noTrain = classes.filter((_, k) => counts.train[k] === 0);
  if (noTrain.length > 0) {
    throw new DataError(
      `class${noTrain.length > 1 ? 'es' : ''} ${noTrain.map((c) => `'${c}'`).join(', ')} ha${noTrain.length > 1 ? 've' : 's'} ` +
        `no training images (train counts: ${classes.map((c, k) => `${c} ${counts.train[k]}`).join(', ')}); ` +
        'add training images or remove the class',
      root,
    );
  }
  const total = (split: 'val' | 'test') => counts[split].reduce((a, b) => a + b, 0);
  if (total('val') === 0) {
    throw new DataError(
      'the validation split is empty (no val/ folder or no images in it); add one, or pass --val-split 0.1 ' +
        'to carve a stratified 10% of train out as validation',
      root,
    );
  }
  if (opts.needTest && total('test') === 0) {
    throw new DataError(
      'the test split is empty (no test/ folder or no images in it); add one, or pass --no-eval-test to train without testing',
      root,
    );
  }
}
