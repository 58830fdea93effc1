/**
 * lib/metrics against scikit-learn: every fixture in test/fixtures/metrics/ holds inputs and the values
 * sklearn 1.2 computed for them (scripts/make-metrics-fixtures.py). Tolerance 1e-6, as the issue asks.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import {
  accuracy,
  argmaxRows,
  asScores,
  balancedAccuracy,
  classificationReport,
  confusionMatrix,
  precisionRecallF1,
  rocAuc,
  rocCurves,
  topKAccuracy,
  quantileSorted,
} from '../lib/metrics/index';

const DIR = path.resolve(__dirname, 'fixtures/metrics');
const TOL = 1e-6;

interface Averages {
  per_class: number[];
  macro: number;
  weighted: number;
}
interface Fixture {
  name: string;
  y_true: number[];
  probs: number[][];
  expected: {
    accuracy: number;
    balanced_accuracy: number;
    confusion_matrix: number[][];
    precision: Averages;
    recall: Averages;
    f1: Averages;
    support: number[];
    auc: {
      per_class: (number | null)[];
      binary?: number;
      ovr_macro?: number;
      ovr_weighted?: number;
      ovr_macro_over_present?: number;
      ovr_weighted_over_present?: number;
    };
    roc_curves: ({ fpr: number[]; tpr: number[]; thresholds_after_first: number[] } | null)[];
    top_k?: Record<string, number>;
  };
}

const fixtures: Fixture[] = fs
  .readdirSync(DIR)
  .filter((f) => f.endsWith('.json') && f !== 'percentile.json')
  .sort()
  .map((f) => JSON.parse(fs.readFileSync(path.join(DIR, f), 'utf8')));

function close(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= TOL, `${what}: got ${actual}, sklearn ${expected}`);
}
function closeAll(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) close(actual[i], expected[i], `${what}[${i}]`);
}

describe('metrics match scikit-learn', () => {
  it('has the fixture cases (2, 3 and 8 classes, ties, absent classes)', () => {
    const names = fixtures.map((f) => f.name);
    for (const want of ['binary_ties', 'three_ties', 'three_absent_pred', 'eight', 'eight_absent_true']) {
      assert.ok(names.includes(want), `missing fixture ${want}`);
    }
  });

  for (const fx of fixtures) {
    describe(fx.name, () => {
      const n = fx.y_true.length;
      const k = fx.probs[0].length;
      const y = Int32Array.from(fx.y_true);
      const flat32 = Float32Array.from(fx.probs.flat()); // values are float32, so this is exact
      const pred = argmaxRows(asScores(fx.probs, n));
      const e = fx.expected;

      it('accepts number[][] and Float32Array [n*k] identically', () => {
        assert.deepEqual(asScores(flat32, n).data, asScores(fx.probs, n).data);
      });

      it('accuracy, balanced accuracy, confusion matrix', () => {
        close(accuracy(y, pred), e.accuracy, 'accuracy');
        close(balancedAccuracy(y, pred, k), e.balanced_accuracy, 'balanced accuracy');
        assert.deepEqual(confusionMatrix(y, pred, k), e.confusion_matrix);
      });

      it('precision / recall / F1 per class, macro, weighted', () => {
        const r = precisionRecallF1(y, pred, k);
        for (const m of ['precision', 'recall', 'f1'] as const) {
          closeAll(r[m].perClass, e[m].per_class, `${m} per class`);
          close(r[m].macro, e[m].macro, `${m} macro`);
          close(r[m].weighted, e[m].weighted, `${m} weighted`);
        }
        assert.deepEqual(r.support, e.support);
      });

      it('ROC AUC (binary / one-vs-rest)', () => {
        for (const input of [fx.probs, flat32]) {
          const r = rocAuc(y, input);
          e.auc.per_class.forEach((v, c) => {
            if (v === null) assert.ok(Number.isNaN(r.perClass[c]), `class ${c} should be undefined`);
            else close(r.perClass[c], v, `auc class ${c}`);
          });
          if (e.auc.binary !== undefined) {
            close(r.binary!, e.auc.binary, 'binary auc');
            close(r.headline, e.auc.binary, 'headline auc');
          }
          if (e.auc.ovr_weighted !== undefined) {
            close(r.weighted, e.auc.ovr_weighted, 'ovr weighted');
            close(r.macro, e.auc.ovr_macro!, 'ovr macro');
            close(r.headline, e.auc.ovr_weighted, 'headline auc');
          }
          if (e.auc.ovr_weighted_over_present !== undefined) {
            close(r.weighted, e.auc.ovr_weighted_over_present, 'weighted over present classes');
            close(r.macro, e.auc.ovr_macro_over_present!, 'macro over present classes');
            assert.deepEqual(
              r.undefinedClasses,
              e.auc.per_class.flatMap((v, c) => (v === null ? [c] : [])),
            );
          }
        }
      });

      it('ROC curve points', () => {
        const curves = rocCurves(y, fx.probs);
        e.roc_curves.forEach((ref, c) => {
          if (ref === null) return;
          closeAll(curves[c].fpr, ref.fpr, `class ${c} fpr`);
          closeAll(curves[c].tpr, ref.tpr, `class ${c} tpr`);
          assert.equal(curves[c].thresholds[0], Infinity);
          closeAll(curves[c].thresholds.slice(1), ref.thresholds_after_first, `class ${c} thresholds`);
        });
      });

      if (e.top_k) {
        it('top-k accuracy (sklearn tie rule)', () => {
          for (const [t, v] of Object.entries(e.top_k!)) close(topKAccuracy(y, flat32, Number(t)), v, `top-${t}`);
        });
      }

      it('classificationReport bundles the same values as plain JSON', () => {
        const names = Array.from({ length: k }, (_, c) => `class-${c}`);
        const rep = classificationReport(y, flat32, { classNames: names, bootstrap: { samples: 50, seed: 1 } });
        const back = JSON.parse(JSON.stringify(rep));
        assert.deepEqual(back, rep, 'report survives a JSON round trip unchanged (no NaN, no typed arrays)');
        close(rep.accuracy, e.accuracy, 'report accuracy');
        close(rep.f1.weighted, e.f1.weighted, 'report weighted F1');
        assert.deepEqual(rep.confusionMatrix, e.confusion_matrix);
        assert.equal(rep.perClass.length, k);
        assert.equal(rep.perClass[k - 1].class, `class-${k - 1}`);
        e.auc.per_class.forEach((v, c) => {
          if (v === null) assert.equal(rep.auc.perClass[c], null);
          else close(rep.auc.perClass[c]!, v, `report auc class ${c}`);
        });
        assert.ok(rep.ci!.accuracy.low <= rep.accuracy && rep.accuracy <= rep.ci!.accuracy.high);
      });
    });
  }

  it('quantiles match numpy.percentile (linear)', () => {
    const fx = JSON.parse(fs.readFileSync(path.join(DIR, 'percentile.json'), 'utf8'));
    const sorted = Float64Array.from(fx.values as number[]).sort();
    (fx.q as number[]).forEach((q, i) => close(quantileSorted(sorted, q), fx.expected[i], `q=${q}`));
  });
});
