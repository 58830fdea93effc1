/**
 * Metric inputs: accepted forms, clear errors for bad inputs, and hand-checkable small cases
 * (the sklearn fixtures cover the numerics at scale).
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import {
  accuracy,
  argmaxRows,
  asScores,
  binaryRocAuc,
  classificationReport,
  rocAuc,
  rocCurve,
  topKAccuracy,
} from '../lib/metrics/index';

describe('metric inputs', () => {
  it('reads flat Float32Array [n*k], number[][] and typed-array rows alike', () => {
    const flat = Float32Array.from([0.1, 0.9, 0.8, 0.2]);
    const nested = [
      [0.1, 0.9],
      [0.8, 0.2],
    ];
    const rows = [Float32Array.from([0.1, 0.9]), Float32Array.from([0.8, 0.2])];
    assert.deepEqual(asScores(flat, 2), asScores(rows, 2));
    assert.deepEqual(argmaxRows(asScores(nested, 2)), Int32Array.from([1, 0]));
  });

  it('rejects bad inputs with messages that name the problem', () => {
    assert.throws(
      () => rocAuc([0, 1, 2], Float32Array.from([0.5, 0.5, 0.1, 0.9])),
      /4 values, not a multiple of the 3/,
    );
    assert.throws(() => rocAuc([0, 2], [0.5, 0.5, 0.1, 0.9]), /yTrue\[1\] = 2 is not a class label .*\[0, 2\)/);
    assert.throws(() => rocAuc([0, 1], [0.5, NaN, 0.1, 0.9]), /probs\[0\]\[1\] = NaN is not finite/);
    assert.throws(
      () => rocAuc([0, 1, 2], [2, 1, 0, 0, 1, 2, 1, 1, 1]),
      /row 0 sums to 3, not 1: .*apply softmax to logits/,
    );
    assert.throws(() => accuracy([0, 1], [0]), /yTrue has 2 labels but yPred has 1/);
    assert.throws(
      () => classificationReport([0, 1], [0.4, 0.6, 0.3, 0.7], { classNames: ['a'] }),
      /1 classNames for 2/,
    );
    assert.throws(() => topKAccuracy([0, 1], [0.4, 0.6, 0.3, 0.7], 0), /k = 0/);
  });
});

describe('small ROC cases by hand', () => {
  it('a tie between a positive and a negative counts half', () => {
    // scores: pos 0.9, neg 0.5, pos 0.5, neg 0.1 → pairs (pos>neg): 0.9>0.5, 0.9>0.1, 0.5>0.1, 0.5=0.5 (½)
    assert.equal(binaryRocAuc([1, 0, 1, 0], [0.9, 0.5, 0.5, 0.1]), 3.5 / 4);
    const c = rocCurve([1, 0, 1, 0], [0.9, 0.5, 0.5, 0.1]);
    assert.deepEqual(c.fpr, [0, 0, 0.5, 1]);
    assert.deepEqual(c.tpr, [0, 0.5, 1, 1]);
    assert.deepEqual(c.thresholds, [Infinity, 0.9, 0.5, 0.1]);
  });

  it('AUC is undefined (NaN) with one class; the report turns that into null', () => {
    assert.ok(Number.isNaN(binaryRocAuc([1, 1], [0.2, 0.3])));
    const rep = classificationReport([1, 1], [0.8, 0.2, 0.3, 0.7], { bootstrap: false });
    assert.equal(rep.auc.headline, null);
    assert.deepEqual(rep.auc.undefinedClasses, [0, 1]);
    assert.equal(rep.accuracy, 0.5);
    assert.equal(rep.ci, undefined);
  });
});
