/**
 * One image through a run in the page: the input exactly as `npm run predict` builds it
 * (lib/data/model-input.ts: PIL-bilinear resize to s×s, the run's normalisation), softmax of the logits in
 * eval mode, then Grad-CAM (lib/explain/gradcam.ts) for the predicted class on the last stage with a map of
 * at least 4×4.
 */
import * as tf from '@tensorflow/tfjs';
import type { RgbImage } from '../../lib/data/decode';
import { modelInputInto } from '../../lib/data/model-input';
import { gradCam } from '../../lib/explain/gradcam';
import type { PageRun } from './run';

export interface Classified {
  /** Probability per class, in run.classes order (float32 values, as predict prints them). */
  probs: number[];
  predicted: number;
  /** Milliseconds of the probability pass (input building, forward, read back). */
  predictMs: number;
  /** Grad-CAM on the input grid [s, s] in [0, 1], row-major. */
  cam: Float32Array;
  camStage: string;
  camWarnings: string[];
  camMs: number;
}

export async function classify(run: PageRun, img: RgbImage): Promise<Classified> {
  const s = run.imageSize;
  const t0 = performance.now();
  const host = new Float32Array(s * s * 3);
  modelInputInto(host, 0, img, s, run.lut);
  const x = tf.tensor4d(host, [1, s, s, 3]); // [1, s, s, 3]
  try {
    const probsT = tf.tidy(() => tf.softmax(run.model.forward(x, { training: false }))); // [1, k]
    const probs = Array.from((await probsT.data()) as Float32Array);
    probsT.dispose();
    const predictMs = performance.now() - t0;
    const bad = probs.find((v) => !Number.isFinite(v));
    if (bad !== undefined) throw new Error(`the model's output is ${bad}: these weights have diverged`);
    let predicted = 0;
    for (let c = 1; c < probs.length; c++) if (probs[c] > probs[predicted]) predicted = c;

    // The last stage, unless its map is coarser than 4×4 (at 32 px the last stage is 1×1: one constant
    // value, no localisation): then the deepest stage that has 4×4 cells or more.
    const t1 = performance.now();
    let result = gradCam(run.model, x, { classIndex: predicted });
    for (let i = run.model.stageNames.length - 2; i >= 0 && result.map.shape[1] * result.map.shape[2] < 16; i--) {
      tf.dispose([result.map, result.cam]);
      result = gradCam(run.model, x, { classIndex: predicted, stage: run.model.stageNames[i] });
    }
    const cam = (await result.cam.data()) as Float32Array; // [1, s, s]
    result.cam.dispose();
    result.map.dispose();
    return {
      probs,
      predicted,
      predictMs,
      cam: cam.slice(0, s * s),
      camStage: result.stage,
      camWarnings: result.warnings,
      camMs: performance.now() - t1,
    };
  } finally {
    x.dispose();
  }
}
