/**
 * Model selection and early stopping, as two separate, configurable trackers.
 *
 * The official recipe (docs/architecture.md §Training recipe, train.py L185–195, utils.py L51–77) saves the weights
 * whenever the validation *accuracy* improves and stops when the validation *loss* has not improved for 30 epochs. The
 * two criteria differ; the kit keeps that default but makes each one a choice and logs both.
 *
 * Improvement rules, as in the official code:
 *   best checkpoint:  strictly better (`val_acc > best_acc`);
 *   early stopping:   at least as good within δ (`score < best + δ` counts as bad; equal is fine).
 */

/** Validation metrics the trackers can watch. */
export type MonitorMetric = 'val_loss' | 'val_acc' | 'val_auc' | 'val_balanced_acc' | 'val_f1';
export const MONITOR_METRICS: readonly MonitorMetric[] = [
  'val_loss',
  'val_acc',
  'val_auc',
  'val_balanced_acc',
  'val_f1',
];

/** Loss goes down, everything else up. */
export function metricMode(metric: MonitorMetric): 'min' | 'max' {
  return metric === 'val_loss' ? 'min' : 'max';
}

export interface TrackerState {
  metric: MonitorMetric;
  best: number | null;
  bestEpoch: number | null;
  /** Epochs since the last improvement. */
  badEpochs: number;
}

/** Keeps the best value of one metric; `update` says whether this epoch improved it. */
export class BestTracker {
  state: TrackerState;

  constructor(
    readonly metric: MonitorMetric,
    /** Strict improvement (checkpoint rule) or "not worse than best + δ" (early-stopping rule). */
    readonly rule: 'strict' | 'within-delta' = 'strict',
    readonly minDelta = 0,
  ) {
    this.state = { metric, best: null, bestEpoch: null, badEpochs: 0 };
  }

  update(value: number, epoch: number): boolean {
    if (!Number.isFinite(value)) {
      this.state.badEpochs += 1;
      return false;
    }
    const sign = metricMode(this.metric) === 'min' ? -1 : 1;
    const score = sign * value; // higher is better
    const best = this.state.best === null ? null : sign * this.state.best;
    const improved =
      best === null || (this.rule === 'strict' ? score > best + this.minDelta : !(score < best + this.minDelta));
    if (improved) this.state = { metric: this.metric, best: value, bestEpoch: epoch, badEpochs: 0 };
    else this.state.badEpochs += 1;
    return improved;
  }

  restore(state: TrackerState): void {
    if (state.metric !== this.metric) {
      throw new Error(`checkpoint tracks '${state.metric}' but this run tracks '${this.metric}'`);
    }
    this.state = { ...state };
  }
}

/** Stops after `patience` epochs without improvement of the watched metric (0 = never stop). */
export class EarlyStopping extends BestTracker {
  constructor(
    metric: MonitorMetric,
    readonly patience: number,
    minDelta = 0,
  ) {
    super(metric, 'within-delta', minDelta);
  }

  get shouldStop(): boolean {
    return this.patience > 0 && this.state.badEpochs >= this.patience;
  }
}
