#!/usr/bin/env python3
"""Regenerate test/fixtures/metrics/*.json: metric inputs plus the values scikit-learn computes for them.

The TypeScript tests (test/metrics.sklearn.test.ts) read only the committed JSON, so CI needs no Python.
Run from the repository root after changing a case:

    /usr/bin/python3 scripts/make-metrics-fixtures.py      # Debian: apt-get install python3-sklearn

Every probability is a float32 value (the kit's models output float32), written as the exact decimal of
that value, so both sides see bit-identical inputs. Cases cover ties (across samples and within a row),
a class never predicted, a class absent from y_true, and 2 / 3 / 8 classes.
"""
import json
import os
import subprocess
import warnings

import numpy as np
import sklearn
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
    top_k_accuracy_score,
)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "metrics")


def softmax_f32(logits):
    """Row softmax in float64, rounded to float32 (what a tfjs model hands over)."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


def from_templates(rng, n, templates):
    """Rows drawn from a few fixed probability vectors, so many samples tie exactly."""
    t = np.asarray(templates, dtype=np.float32)
    return t[rng.integers(0, len(t), size=n)]


def case_binary_ties(rng):
    n = 60
    y = rng.integers(0, 2, size=n)
    # p1 on a 0.1 grid, mildly informative: many ties between positives and negatives
    p1 = np.clip(np.round(0.35 + 0.3 * y + rng.normal(0, 0.25, size=n), 1), 0, 1).astype(np.float32)
    probs = np.stack([(1 - p1).astype(np.float32), p1], axis=1)
    return "binary_ties", "2 classes, scores on a 0.1 grid (heavy ties), some rows exactly 0.5/0.5", y, probs


def case_binary_random(rng):
    n = 200
    y = (rng.random(n) < 0.3).astype(np.int64)  # imbalanced
    logits = rng.normal(0, 1, size=(n, 2))
    logits[:, 1] += 1.5 * y
    return "binary_random", "2 classes, 200 imbalanced samples, continuous scores", y, softmax_f32(logits)


def case_three_ties(rng):
    n = 90
    y = rng.integers(0, 3, size=n)
    templates = [
        [0.2, 0.3, 0.5], [0.5, 0.3, 0.2], [0.3, 0.5, 0.2], [0.4, 0.4, 0.2],
        [0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8],
    ]
    probs = from_templates(rng, n, templates)
    return "three_ties", "3 classes, rows from 8 templates (ties across samples and within rows)", y, probs


def case_three_absent_pred(rng):
    n = 120
    y = rng.integers(0, 3, size=n)
    logits = rng.normal(0, 1, size=(n, 3))
    logits[np.arange(n), y] += 1.0
    logits[:, 2] -= 4.0  # class 2 is never the argmax
    probs = softmax_f32(logits)
    assert (probs.argmax(axis=1) != 2).all()
    return "three_absent_pred", "3 classes, class 2 never predicted (precision zero_division=0)", y, probs


def case_eight(rng):
    n = 400
    y = rng.integers(0, 8, size=n)
    logits = rng.normal(0, 1.5, size=(n, 8))
    logits[np.arange(n), y] += 1.2
    return "eight", "8 classes, 400 samples, continuous scores", y, softmax_f32(logits)


def case_eight_absent_true(rng):
    n = 300
    y = rng.integers(0, 7, size=n)
    y[y == 5] = 7  # class 5 absent from y_true, but it is predicted sometimes
    logits = rng.normal(0, 1.5, size=(n, 8))
    logits[np.arange(n), y] += 1.0
    probs = softmax_f32(logits)
    assert (probs.argmax(axis=1) == 5).any()
    return "eight_absent_true", "8 classes, class 5 absent from y_true but predicted", y, probs


def case_all_tied(rng):
    n = 20
    y = np.array([0, 1] * 10)
    probs = np.full((n, 2), 0.5, dtype=np.float32)
    return "binary_all_tied", "2 classes, every score 0.5 (AUC 0.5, one-point curve)", y, probs


def sklearn_values(y, probs):
    n, k = probs.shape
    scores = probs.astype(np.float64)
    pred = scores.argmax(axis=1)  # numpy: lowest index wins a tie
    labels = list(range(k))
    out = {
        "accuracy": accuracy_score(y, pred),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
    }
    # per-class over all k labels; averages with sklearn's default label set (classes in y or pred)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, average=None, zero_division=0)
    out["precision"] = {"per_class": p.tolist()}
    out["recall"] = {"per_class": r.tolist()}
    out["f1"] = {"per_class": f.tolist()}
    out["support"] = s.tolist()
    for avg in ("macro", "weighted"):
        pa, ra, fa, _ = precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        out["precision"][avg], out["recall"][avg], out["f1"][avg] = pa, ra, fa

    # one-vs-rest AUC and ROC curve of every class (binary sklearn calls); None where sklearn raises
    present = set(np.unique(y).tolist())
    per_class, curves = [], []
    for c in range(k):
        yc = (y == c).astype(np.int64)
        if c in present and len(present) > 1:
            per_class.append(roc_auc_score(yc, scores[:, c]))
            fpr, tpr, thr = roc_curve(yc, scores[:, c])
            # thr[0] is sklearn 1.2's max+1 sentinel (inf in newer sklearn): not compared
            curves.append({"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds_after_first": thr[1:].tolist()})
        else:
            per_class.append(None)
            curves.append(None)
    auc = {"per_class": per_class}
    if k == 2:
        auc["binary"] = roc_auc_score(y, scores[:, 1])  # official train.py: probs[:, 1]
    elif len(present) == k:
        auc["ovr_macro"] = roc_auc_score(y, scores, multi_class="ovr", average="macro")
        auc["ovr_weighted"] = roc_auc_score(y, scores, multi_class="ovr", average="weighted")
    else:
        # sklearn raises for an absent class; reference = its per-class values averaged over present classes
        defined = [c for c in range(k) if per_class[c] is not None]
        sup = np.array([np.sum(y == c) for c in defined], dtype=np.float64)
        auc["ovr_macro_over_present"] = float(np.mean([per_class[c] for c in defined]))
        auc["ovr_weighted_over_present"] = float(np.average([per_class[c] for c in defined], weights=sup))
    out["auc"] = auc
    out["roc_curves"] = curves
    if k > 2:
        out["top_k"] = {str(t): top_k_accuracy_score(y, scores, k=t, labels=labels) for t in range(1, k)}
    return out


def main():
    rng = np.random.default_rng(20240907)
    os.makedirs(OUT, exist_ok=True)
    cases = [case_binary_ties, case_binary_random, case_three_ties, case_three_absent_pred,
             case_eight, case_eight_absent_true, case_all_tied]
    index = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)  # balanced_accuracy: "y_pred contains classes not in y_true"
        for make in cases:
            name, about, y, probs = make(rng)
            doc = {
                "name": name,
                "about": about,
                "sklearn_version": sklearn.__version__,
                "numpy_version": np.__version__,
                "y_true": [int(v) for v in y],
                # float(np.float32) is exact in float64; repr round-trips, so JS parses the same value
                "probs": [[float(v) for v in row] for row in probs],
                "expected": sklearn_values(np.asarray(y), probs),
            }
            with open(os.path.join(OUT, name + ".json"), "w") as fh:
                json.dump(doc, fh, indent=None, separators=(",", ":"))
                fh.write("\n")
            index.append(name)

    # numpy's default percentile (linear interpolation), for the bootstrap's quantile function
    values = rng.normal(0, 1, size=37).round(6)
    qs = [0.0, 0.025, 0.1, 0.5, 0.9, 0.975, 1.0]
    doc = {"values": values.tolist(), "q": qs, "expected": [float(np.percentile(values, 100 * q)) for q in qs]}
    with open(os.path.join(OUT, "percentile.json"), "w") as fh:
        json.dump(doc, fh)
        fh.write("\n")
    # the repo's `prettier --check .` covers JSON: format the fixtures the way it expects
    prettier = os.path.join(os.path.dirname(OUT), "..", "..", "node_modules", ".bin", "prettier")
    if os.path.exists(prettier):
        subprocess.run([prettier, "--log-level", "warn", "--write", OUT], check=True)
    else:
        print("node_modules/.bin/prettier not found: run `npx prettier --write test/fixtures/metrics` before committing")
    print("wrote", len(index) + 1, "fixtures to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
