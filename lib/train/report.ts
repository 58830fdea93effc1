/**
 * The run report: `report.html` with the loss / accuracy / learning-rate curves, the test confusion
 * matrix and ROC curves (plotly, inlined so the file opens offline), and the metrics tables; plus the
 * small tables `evaluate` prints.
 */
import { rocCurves, type ClassificationReport } from '../metrics/index';
import {
  confusionMatrixFigure,
  lineChart,
  rocFigure,
  writeHtmlReport,
  type ReportSection,
  type RocSeries,
} from '../report/plot';
import type { Row } from '../report/table';
import type { EpochRecord } from './checkpoint';

/** Headline metrics as rows (metric, value, 95 % CI when present): what `evaluate` prints. */
export function metricRows(r: ClassificationReport): Row[] {
  const ci = r.ci;
  const rows: Row[] = [
    { metric: 'OA (accuracy)', value: r.accuracy, ci: ci ? `${fmt(ci.accuracy.low)}–${fmt(ci.accuracy.high)}` : '' },
    {
      metric: r.numClasses === 2 ? 'AUC (binary)' : 'AUC (one-vs-rest, weighted)',
      value: r.auc.headline,
      ci: ci && ci.auc.low !== null ? `${fmt(ci.auc.low)}–${fmt(ci.auc.high)}` : '',
    },
    { metric: 'AUC (macro)', value: r.auc.macro, ci: '' },
    { metric: 'balanced accuracy', value: r.balancedAccuracy, ci: '' },
    { metric: 'precision (weighted)', value: r.precision.weighted, ci: '' },
    { metric: 'recall (weighted)', value: r.recall.weighted, ci: '' },
    { metric: 'F1 (weighted)', value: r.f1.weighted, ci: '' },
    { metric: 'F1 (macro)', value: r.f1.macro, ci: '' },
  ];
  for (const [k, v] of Object.entries(r.topK)) rows.push({ metric: `top-${k} accuracy`, value: v, ci: '' });
  rows.push({ metric: 'images', value: r.n, ci: '' });
  return rows;
}

/** Per-class rows: precision, recall, F1, support, one-vs-rest AUC. */
export function classRows(r: ClassificationReport): Row[] {
  return r.perClass.map((c) => ({ ...c }));
}

/** ROC curves to draw: the positive class (index 1) for binary tasks, every class one-vs-rest otherwise. */
export function rocSeries(labels: Int32Array, probs: Float32Array, r: ClassificationReport): RocSeries[] {
  const curves = rocCurves(labels, probs);
  const pick = r.numClasses === 2 ? [1] : curves.map((_, c) => c);
  return pick
    .filter((c) => r.auc.perClass[c] !== null)
    .map((c) => ({
      name: r.numClasses === 2 ? `${r.classNames[1]} vs ${r.classNames[0]}` : r.classNames[c],
      fpr: curves[c].fpr,
      tpr: curves[c].tpr,
      auc: r.auc.perClass[c] ?? undefined,
    }));
}

export interface RunReportInput {
  title: string;
  /** One paragraph: model, data, recipe, status, timings. */
  summary: string;
  history: EpochRecord[];
  test?: { report: ClassificationReport; labels: Int32Array; probs: Float32Array; checkpoint: string };
  config: object;
}

/** The sections of report.html. */
export function runReportSections(input: RunReportInput): ReportSection[] {
  const h = input.history;
  const epochs = h.map((r) => r.epoch + 1);
  const sections: ReportSection[] = [{ heading: 'Run', text: input.summary }];
  if (input.test) {
    const t = input.test;
    sections.push(
      { heading: `Test metrics (${t.checkpoint} checkpoint)`, table: metricRows(t.report) },
      { heading: 'Per class', table: classRows(t.report) },
      {
        heading: 'Confusion matrix (test)',
        figure: confusionMatrixFigure(t.report.confusionMatrix, t.report.classNames),
      },
    );
    const roc = rocSeries(t.labels, t.probs, t.report);
    if (roc.length > 0) sections.push({ heading: 'ROC (test)', figure: rocFigure(roc) });
  }
  if (h.length > 0) {
    sections.push(
      {
        heading: 'Loss',
        figure: lineChart(
          [
            { name: 'train loss', x: epochs, y: h.map((r) => r.train_loss) },
            { name: 'val loss', x: epochs, y: h.map((r) => r.val_loss) },
          ],
          { xTitle: 'epoch', yTitle: 'cross-entropy' },
        ),
      },
      {
        heading: 'Accuracy',
        figure: lineChart(
          [
            { name: 'train acc', x: epochs, y: h.map((r) => r.train_acc) },
            { name: 'val acc', x: epochs, y: h.map((r) => r.val_acc) },
            ...(h.some((r) => r.val_auc !== null)
              ? [{ name: 'val AUC', x: epochs, y: h.map((r) => r.val_auc ?? NaN), dash: true }]
              : []),
          ],
          { xTitle: 'epoch', yTitle: 'accuracy / AUC' },
        ),
      },
      {
        heading: 'Learning rate (end of epoch)',
        figure: lineChart([{ name: 'lr', x: epochs, y: h.map((r) => r.lr) }], {
          xTitle: 'epoch',
          yTitle: 'lr',
          logY: true,
        }),
      },
      { heading: 'Epochs', table: h.map((r) => ({ ...r, epoch: r.epoch + 1 })) },
    );
  }
  sections.push({
    heading: 'Configuration',
    table: Object.entries(input.config).map(([key, value]) => ({ key, value: String(value) })),
  });
  return sections;
}

export function writeRunReport(file: string, input: RunReportInput): void {
  writeHtmlReport(file, { title: input.title, sections: runReportSections(input) });
}

function fmt(v: number | null): string {
  return v === null ? '–' : v.toFixed(4);
}
