/**
 * Run logs: `log.jsonl` (one JSON object per step, epoch and event; the source of truth), `steps.csv`
 * (one row per optimizer step) and `epochs.csv` (one row per epoch, rewritten atomically each epoch).
 *
 * On resume the logs are cut back to the checkpoint (steps ≤ its step, epochs before its epoch), so a run
 * that was killed and resumed has the same log lines as one that never stopped, plus a 'resume' event.
 */
import * as fs from 'fs';
import * as path from 'path';
import { atomicWriteFile } from '../util/fs';
import type { EpochRecord, TrainPosition } from './checkpoint';

export interface StepRecord {
  epoch: number;
  /** Batch index within the epoch. */
  batch: number;
  /** Optimizer updates done, this one included (1-based). */
  step: number;
  loss: number;
  acc: number;
  lr: number;
  /** Global gradient norm before clipping (only computed when clipping is on). */
  grad_norm?: number;
  images_per_s: number;
}

type LogLine =
  | ({ type: 'step'; time: string } & StepRecord)
  | ({ type: 'epoch'; time: string } & EpochRecord)
  | { type: 'event'; time: string; event: string; step: number; [key: string]: unknown };

const STEP_COLUMNS: Array<keyof StepRecord> = [
  'epoch',
  'batch',
  'step',
  'loss',
  'acc',
  'lr',
  'grad_norm',
  'images_per_s',
];
const EPOCH_COLUMNS: Array<keyof EpochRecord> = [
  'epoch',
  'step',
  'lr',
  'train_loss',
  'train_acc',
  'val_loss',
  'val_acc',
  'val_auc',
  'val_balanced_acc',
  'val_f1',
  'best',
  'early_stop_bad_epochs',
  'seconds',
];

export class RunLog {
  readonly jsonlFile: string;
  readonly stepsCsv: string;
  readonly epochsCsv: string;

  /** Open the logs of `runDir`; with `resumeFrom`, cut them back to that checkpoint, else start them empty. */
  constructor(
    readonly runDir: string,
    resumeFrom?: TrainPosition,
  ) {
    fs.mkdirSync(runDir, { recursive: true });
    this.jsonlFile = path.join(runDir, 'log.jsonl');
    this.stepsCsv = path.join(runDir, 'steps.csv');
    this.epochsCsv = path.join(runDir, 'epochs.csv');
    const kept = resumeFrom ? readLog(this.jsonlFile).filter((l) => keep(l, resumeFrom)) : [];
    atomicWriteFile(this.jsonlFile, kept.map((l) => JSON.stringify(l) + '\n').join(''));
    const steps = kept.filter((l) => l.type === 'step') as StepRecord[];
    atomicWriteFile(this.stepsCsv, csvHeader(STEP_COLUMNS) + steps.map((r) => csvRow(STEP_COLUMNS, r)).join(''));
    const epochs = kept.filter((l) => l.type === 'epoch') as EpochRecord[];
    this.writeEpochs(epochs);
  }

  step(record: StepRecord): void {
    this.append({ type: 'step', time: new Date().toISOString(), ...record });
    fs.appendFileSync(this.stepsCsv, csvRow(STEP_COLUMNS, record));
  }

  /** Log a finished epoch; `history` (all epochs so far) is rewritten to epochs.csv. */
  epoch(record: EpochRecord, history: EpochRecord[]): void {
    this.append({ type: 'epoch', time: new Date().toISOString(), ...record });
    this.writeEpochs(history);
  }

  event(event: string, step: number, details: Record<string, unknown> = {}): void {
    this.append({ type: 'event', time: new Date().toISOString(), event, step, ...details });
  }

  private append(line: LogLine): void {
    fs.appendFileSync(this.jsonlFile, JSON.stringify(line) + '\n');
  }

  private writeEpochs(history: EpochRecord[]): void {
    atomicWriteFile(this.epochsCsv, csvHeader(EPOCH_COLUMNS) + history.map((r) => csvRow(EPOCH_COLUMNS, r)).join(''));
  }
}

/** All lines of a log.jsonl; a torn last line (the process was killed mid-write) is dropped. */
export function readLog(file: string): LogLine[] {
  if (!fs.existsSync(file)) return [];
  const out: LogLine[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      /* a partial line written when the process died */
    }
  }
  return out;
}

function keep(line: LogLine, pos: TrainPosition): boolean {
  if (line.type === 'epoch') return line.epoch < pos.epoch;
  return line.step <= pos.step;
}

function csvHeader(cols: readonly string[]): string {
  return cols.join(',') + '\n';
}

function csvRow<T extends object>(cols: ReadonlyArray<keyof T>, r: T): string {
  return (
    cols
      .map((c) => {
        const v = r[c] as unknown;
        return v === undefined || v === null ? '' : String(v);
      })
      .join(',') + '\n'
  );
}
