/**
 * lib/explain: Grad-CAM through the contract's stage taps, and Microscopic-Mamba's MIFA gate maps and
 * per-direction scan contributions.
 *   - a tiny model whose answer is known in closed form (1×1 conv "stage" → global average pool → linear):
 *     α_c = w_c / (h·w), so map = ReLU(Σ_c w_c·A_c / (h·w)) exactly, and the CAM peaks on the bright patch;
 *   - ViT token maps: the class token is dropped and the patch grid restored;
 *   - microscopic-mamba-t at 32 px: every stage gives a finite [b, 32, 32] CAM in [0, 1], the transpose warning
 *     appears exactly where the quirk is on, the gate maps have MIFA's ranges, the four directions add up to
 *     the full cross-scan; and nothing leaks (tf.memory().numTensors unchanged).
 * Zoo models (resnet18; vit-tiny, whose stages are tokens), each once registered, are checked the same way.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import {
  boxMean,
  boxOnGrid,
  explainableMaps,
  gradCam,
  mifaGateMaps,
  mirrorBox,
  occlusionResponse,
  scanDirectionMaps,
  scanDirectionOutputs,
  stageMap,
  tokenGrid,
} from '../lib/explain/index';
import type { ClassifierModel, ModelForwardContext } from '../lib/models/contract';
import { tapStage } from '../lib/models/contract';
import { createModel, listModels } from '../lib/models/index';
import { crossScanSSM } from '../lib/ops/selective-scan/index';
import { MicroscopicMamba, SS2D, type InnerTapContext } from '../lib/models/microscopic-mamba/index';
import { Module } from '../lib/nn/index';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

/**
 * x [b, h, w, 3] → stage 'features' A = x·M (a fixed 1×1 conv, 3 → 2 channels) → mean over h, w → · V → logits.
 * `tokens`: the stage is handed to the tap as ViT-style tokens [b, 1 + h·w, 2] (a class token of zeros first).
 */
class TinyModel extends Module implements ClassifierModel {
  readonly numClasses = 2;
  readonly stageNames = ['features'];
  readonly M = tf.tensor2d([1, 0, 0, 1, 0, 0], [3, 2]); // channel 0 ← red, channel 1 ← green
  readonly V = tf.tensor2d([2, -1, -1, 3], [2, 2]); // logits = pooled · V

  constructor(readonly tokens = false) {
    super();
  }

  forward(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x, ctx)));
  }
  forwardFeatures(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const [b, h, w] = x.shape;
      const a = tf.matMul(x.reshape([-1, 3]), this.M); // [b·h·w, 2]
      if (!this.tokens) return tapStage(ctx, 'features', a.reshape([b, h, w, 2]));
      const t = tf.concat([tf.zeros([b, 1, 2]), a.reshape([b, h * w, 2])], 1); // [b, 1 + h·w, 2]
      return tapStage(ctx, 'features', t);
    });
  }
  forwardHead(f: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => {
      const pooled = f.rank === 4 ? tf.mean(f, [1, 2]) : tf.mean(f.slice([0, 1, 0], [-1, -1, -1]), 1); // [b, 2]
      return tf.matMul(pooled as tf.Tensor2D, this.V);
    });
  }
  checkInput(shape: number[]): void {
    if (shape.length !== 4 || shape[3] !== 3) throw new Error(`TinyModel: expected [b, h, w, 3], got [${shape}]`);
  }
}

/** An 8×8 image: dim noise-free background, a red 2×2 patch at rows 5–6, columns 1–2, a green one at rows 1–2, cols 5–6. */
function patches(): tf.Tensor4D {
  const px = new Float32Array(8 * 8 * 3).fill(0.05);
  for (const [r0, c0, ch] of [
    [5, 1, 0],
    [1, 5, 1],
  ]) {
    for (let r = r0; r < r0 + 2; r++) for (let c = c0; c < c0 + 2; c++) px[(r * 8 + c) * 3 + ch] = 1;
  }
  return tf.tensor4d(px, [1, 8, 8, 3]);
}

function argmax2d(t: tf.Tensor): [number, number] {
  const [, h, w] = t.shape;
  const d = t.dataSync();
  let best = 0;
  for (let i = 1; i < h! * w!; i++) if (d[i] > d[best]) best = i;
  return [Math.floor(best / w!), best % w!];
}

test('Grad-CAM on a tiny model equals the closed form and peaks on the patch that drives the class', () => {
  const model = new TinyModel();
  const x = patches();
  const before = tf.memory().numTensors;
  for (const [cls, patch] of [
    [0, [5, 1]], // class 0: 2·red − green → the red patch
    [1, [1, 5]], // class 1: 3·green − red → the green patch
  ] as const) {
    const r = gradCam(model, x, { classIndex: cls });
    // α = V[:, cls] / (h·w); A_0 = red, A_1 = green.
    const a0 = (cls === 0 ? 2 : -1) / 64;
    const a1 = (cls === 0 ? -1 : 3) / 64;
    const px = x.dataSync();
    const expected = Array.from({ length: 64 }, (_, i) => Math.max(0, a0 * px[i * 3] + a1 * px[i * 3 + 1]));
    const got = r.map.dataSync();
    assert.deepEqual(r.map.shape, [1, 8, 8]);
    for (let i = 0; i < 64; i++)
      assert.ok(Math.abs(got[i] - expected[i]) < 1e-6, `map[${i}] ${got[i]} vs ${expected[i]}`);
    assert.deepEqual(r.cam.shape, [1, 8, 8]);
    assert.equal(Math.max(...r.cam.dataSync()), 1);
    const [pr, pc] = argmax2d(r.cam);
    assert.ok(pr >= patch[0] && pr <= patch[0] + 1 && pc >= patch[1] && pc <= patch[1] + 1, `peak at ${pr},${pc}`);
    assert.deepEqual(r.classIndex, [cls]);
    assert.deepEqual(r.warnings, []);
    const logits = model.forward(x);
    assert.ok(Math.abs(r.scores[0] - logits.dataSync()[cls]) < 1e-6);
    tf.dispose([r.map, r.cam, logits]);
  }
  assert.equal(tf.memory().numTensors, before, 'gradCam leaks no tensors');
  x.dispose();
});

test('Grad-CAM on ViT-style tokens drops the class token and restores the patch grid', () => {
  const x = patches();
  const grid = gradCam(new TinyModel(false), x, { classIndex: 1 });
  const tokens = gradCam(new TinyModel(true), x, { classIndex: 1 });
  assert.deepEqual(tokens.map.shape, [1, 8, 8]);
  const a = grid.map.dataSync();
  const b = tokens.map.dataSync();
  for (let i = 0; i < 64; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-6, `token map[${i}] ${b[i]} vs ${a[i]}`);
  tf.dispose([grid.map, grid.cam, tokens.map, tokens.cam, x]);
  assert.deepEqual(tokenGrid(197, 224, 224), [14, 14, 1]);
  assert.deepEqual(tokenGrid(196, 224, 224), [14, 14, 0]);
  assert.deepEqual(tokenGrid(198, 224, 224), [14, 14, 2]);
  assert.deepEqual(tokenGrid(1 + 7 * 14, 112, 224), [7, 14, 1]);
  assert.throws(() => tokenGrid(197, 224, 224, 0), /pass prefixTokens/);
});

test('gradCam warns when no position raises the class score (an all-zero map)', () => {
  // An all-green image: class 0's score is 2·red − green, so every position lowers it and ReLU leaves nothing.
  const green = tf.tidy(() =>
    tf.tensor4d(
      new Float32Array(8 * 8 * 3).map((_, i) => (i % 3 === 1 ? 1 : 0)),
      [1, 8, 8, 3],
    ),
  );
  const r = gradCam(new TinyModel(), green, { classIndex: 0 });
  assert.equal(Math.max(...r.cam.dataSync()), 0);
  assert.match(r.warnings.join(), /features: the map is all zero for image\(s\) 0/);
  tf.dispose([r.map, r.cam, green]);
});

test('gradCam: one-line errors for an unknown stage or class', () => {
  const x = patches();
  assert.throws(() => gradCam(new TinyModel(), x, { stage: 'layers.9' }), /unknown stage 'layers\.9'.*features/);
  assert.throws(() => gradCam(new TinyModel(), x, { classIndex: 2 }), /classIndex 2 is not a class of 0\.\.1/);
  x.dispose();
});

/** A deterministic 32 px batch of 2 images. */
function images(n = 2, size = 32): tf.Tensor4D {
  return tf.tidy(() => tf.randomUniform([n, size, size, 3], 0, 1, 'float32', 7) as tf.Tensor4D);
}

test('Grad-CAM on microscopic-mamba-t at 32 px: every stage, warnings where the H/W transpose is on, no leak', () => {
  const x = images();
  const faithful = createModel('microscopic-mamba-t', { numClasses: 2, seed: 0 });
  const fixed = createModel('microscopic-mamba-t', { numClasses: 2, seed: 0, fixPsffnTranspose: true });
  const before = tf.memory().numTensors;
  for (const stage of faithful.stageNames) {
    const r = gradCam(faithful, x, { stage });
    assert.deepEqual(r.cam.shape, [2, 32, 32]);
    const cam = r.cam.dataSync();
    assert.ok(
      cam.every((v) => Number.isFinite(v) && v >= 0 && v <= 1 + 1e-6),
      `${stage}: CAM in [0, 1]`,
    );
    const transpose = r.warnings.filter((w) => /fixPsffnTranspose/.test(w));
    assert.equal(transpose.length, stage === 'stem' ? 0 : 1, `${stage}: ${r.warnings.join()}`);
    tf.dispose([r.map, r.cam]);
  }
  const r = gradCam(fixed, x);
  assert.equal(r.stage, 'layers.3');
  assert.deepEqual(
    r.warnings.filter((w) => /fixPsffnTranspose/.test(w)),
    [],
  );
  assert.deepEqual(r.map.shape, [2, 1, 1], 'the last stage of a 32 px input is 1×1');
  tf.dispose([r.map, r.cam]);
  assert.equal(tf.memory().numTensors, before, 'gradCam leaks no tensors');
  faithful.dispose();
  fixed.dispose();
  x.dispose();
});

test('Grad-CAM on microscopic-mamba-t: at the last stage (1×1 at 32 px) the map is ReLU(logit − head bias)', () => {
  // There the head is mean-pool (of one position) + Linear, linear in A: α = ∂y_c/∂A = head.weight[:, c], so
  // Σ_c α_c·A_c = y_c − bias_c exactly. A wrong gradient (sign, class, scale) breaks the equality.
  const x = images();
  const model = createModel('microscopic-mamba-t', {
    numClasses: 2,
    seed: 1,
    fixPsffnTranspose: true,
  }) as MicroscopicMamba;
  for (const cls of [0, 1]) {
    const r = gradCam(model, x, { classIndex: cls });
    const bias = model.head.bias!.dataSync()[cls];
    const map = r.map.dataSync();
    r.scores.forEach((score, i) => {
      const expected = Math.max(0, score - bias);
      assert.ok(
        Math.abs(map[i] - expected) < 1e-4 * Math.max(1, Math.abs(score)),
        `image ${i}: ${map[i]} vs ${expected}`,
      );
    });
    tf.dispose([r.map, r.cam]);
  }
  model.dispose();
  x.dispose();
});

test('MIFA gate maps and per-direction scan contributions of microscopic-mamba-t', () => {
  const x = images();
  const model = createModel('microscopic-mamba-t', { numClasses: 2, seed: 0 }) as MicroscopicMamba;
  const before = tf.memory().numTensors;
  const gates = mifaGateMaps(model, x);
  const nBlocks = model.config.depths.reduce((a, b) => a + b, 0);
  assert.equal(gates.blocks.length, nBlocks);
  assert.equal(gates.blocks[0].block, 'layers.0.blocks.0.MIFA');
  assert.deepEqual(gates.blocks[0].local.shape, [2, 8, 8]);
  for (const g of gates.blocks) {
    // official local gate sigmoid(ReLU(·)) ∈ [0.5, 1) (quirk Q5); the global one sigmoid(GELU(·)) ∈ (0.4, 1)
    assert.ok(
      g.local.dataSync().every((v) => v >= 0.5 && v < 1),
      `${g.block} local gate in [0.5, 1)`,
    );
    assert.ok(
      g.global.dataSync().every((v) => v > 0.4 && v < 1),
      `${g.block} global gate in (0.4, 1)`,
    );
  }
  assert.match(gates.warnings.join(), /fixPsffnTranspose: false/);
  tf.dispose(gates.blocks.flatMap((g) => [g.local, g.global]));

  const scans = scanDirectionMaps(model, x);
  assert.equal(scans.blocks.length, nBlocks);
  assert.equal(scans.blocks[0].block, 'layers.0.blocks.0.pvm_layer.mamba');
  assert.deepEqual(scans.blocks[0].directions.shape, [2, 4, 8, 8]);
  for (const s of scans.blocks) {
    for (const row of s.share)
      assert.ok(Math.abs(row.reduce((a, v) => a + v, 0) - 1) < 1e-5 && row.every((v) => v > 0));
  }
  tf.dispose(scans.blocks.map((s) => s.directions));
  assert.equal(tf.memory().numTensors, before, 'gate and scan maps leak no tensors');

  // The four directions add up to the full cross-scan output of the first SS2D.
  const ss2d = model.namedModules().find(([n]) => n === 'layers.0.blocks.0.pvm_layer.mamba')![1] as SS2D;
  let xc: tf.Tensor4D | undefined;
  const ctx: InnerTapContext = {
    training: false,
    tapInner: (name, t) => {
      if (name === 'layers.0.blocks.0.pvm_layer.mamba.scan_input') xc = tf.keep(t) as tf.Tensor4D;
      return t;
    },
  };
  tf.dispose(model.forward(x, ctx));
  const diff = tf.tidy(() => {
    const parts = scanDirectionOutputs(ss2d, xc!);
    const full = crossScanSSM(
      xc!,
      {
        xProjWeight: ss2d.x_proj_weight,
        dtProjsWeight: ss2d.dt_projs_weight,
        dtProjsBias: ss2d.dt_projs_bias,
        ALogs: ss2d.A_logs,
        Ds: ss2d.Ds,
      },
      { impl: ss2d.opts.scanImpl },
    );
    return tf.max(tf.abs(tf.sub(tf.addN(parts), full))).dataSync()[0];
  });
  assert.ok(diff < 1e-4, `Σ directions − full scan = ${diff}`);
  xc!.dispose();
  model.dispose();
  x.dispose();
});

for (const name of ['resnet18', 'vit-tiny']) {
  const registered = listModels().some((m) => m.name === name);
  test(
    `Grad-CAM on the zoo model ${name} at 32 px`,
    { skip: registered ? false : `${name} is not registered yet` },
    () => {
      const x = images();
      const model = createModel(name, { numClasses: 2, seed: 0, imageSize: 32 });
      const before = tf.memory().numTensors;
      for (const stage of model.stageNames) {
        const r = gradCam(model, x, { stage });
        assert.deepEqual(r.cam.shape, [2, 32, 32]);
        assert.ok(
          r.cam.dataSync().every((v) => Number.isFinite(v) && v >= 0 && v <= 1 + 1e-6),
          stage,
        );
        assert.deepEqual(
          r.warnings.filter((w) => !/map is all zero/.test(w)),
          [],
        );
        tf.dispose([r.map, r.cam]);
      }
      assert.equal(tf.memory().numTensors, before);
      model.dispose();
      x.dispose();
    },
  );
}

test('explainableMaps / stageMap: Microscopic-Mamba also offers each stage before its PatchMerging', () => {
  const x = images();
  const model = createModel('microscopic-mamba-t', { numClasses: 2, seed: 0 });
  const maps = explainableMaps(model);
  assert.deepEqual(maps, [
    'stem',
    'layers.0.blocks',
    'layers.0',
    'layers.1.blocks',
    'layers.1',
    'layers.2.blocks',
    'layers.2',
    'layers.3.blocks',
    'layers.3',
  ]);
  const before = tf.memory().numTensors;
  const sides = maps.map((name) => {
    const a = stageMap(model, x, name);
    const side = a.shape[1];
    a.dispose();
    return side;
  });
  assert.deepEqual(sides, [8, 8, 4, 4, 2, 2, 1, 1, 1], 'at 32 px');
  // The blocks' output of the last stage (no PatchMerging) is the stage output itself.
  const [a, b] = [stageMap(model, x, 'layers.3.blocks'), stageMap(model, x, 'layers.3')];
  assert.deepEqual(Array.from(a.dataSync()), Array.from(b.dataSync()));
  tf.dispose([a, b]);
  assert.equal(tf.memory().numTensors, before, 'stageMap leaks no tensors');
  assert.throws(
    () => stageMap(model, x, 'layers.9.blocks'),
    /stageMap: unknown stage 'layers\.9\.blocks'.*layers\.0\.blocks/,
  );
  assert.deepEqual(explainableMaps(new TinyModel()), ['features']);
  model.dispose();
  x.dispose();
});

test('Grad-CAM at layers.0.blocks (8×8 at 32 px): the map before PatchMerging, warned only with the transpose', () => {
  const x = images();
  for (const fix of [false, true]) {
    const model = createModel('microscopic-mamba-t', { numClasses: 2, seed: 0, fixPsffnTranspose: fix });
    const before = tf.memory().numTensors;
    const r = gradCam(model, x, { stage: 'layers.0.blocks', classIndex: 1 });
    assert.deepEqual(r.map.shape, [2, 8, 8]);
    assert.deepEqual(r.cam.shape, [2, 32, 32]);
    assert.ok(r.cam.dataSync().every((v) => Number.isFinite(v) && v >= 0 && v <= 1 + 1e-6));
    assert.ok(Math.max(...r.cam.dataSync()) > 0, 'some position raises the class score');
    assert.equal(r.warnings.filter((w) => /fixPsffnTranspose: false/.test(w)).length, fix ? 0 : 1, r.warnings.join());
    // The map explained is the stage's blocks' output, before PatchMerging halves it to 4×4.
    const A = stageMap(model, x, 'layers.0.blocks');
    assert.deepEqual(A.shape, [2, 8, 8, 96]);
    tf.dispose([r.map, r.cam, A]);
    assert.equal(tf.memory().numTensors, before, 'no leak');
    model.dispose();
  }
  x.dispose();
});

test('occlusionResponse on a pointwise model is exactly the box (and boxOnGrid / mirrorBox map it)', () => {
  const model = new TinyModel();
  const x = patches();
  const before = tf.memory().numTensors;
  const box = { top: 5, left: 1, height: 2, width: 2 }; // the red patch
  const r = occlusionResponse(model, x, { map: 'features', box });
  assert.deepEqual(r.response.shape, [1, 8, 8]);
  const resp = r.response.dataSync();
  const expected = Math.sqrt((1 + 0.05 ** 2) / 2);
  for (let i = 0; i < 64; i++) {
    const [row, col] = [Math.floor(i / 8), i % 8];
    const inside = row >= 5 && row <= 6 && col >= 1 && col <= 2;
    // red 1 → 0 and green 0.05 → 0: RMS over the 2 channels = sqrt((1 + 0.05²) / 2); outside, nothing changes
    assert.ok(Math.abs(resp[i] - (inside ? expected : 0)) < 1e-6, `response[${row}, ${col}] = ${resp[i]}`);
  }
  assert.deepEqual(r.boxOnMap, box);
  assert.deepEqual(r.mirrorOnMap, { top: 1, left: 5, height: 2, width: 2 });
  assert.ok(Math.abs(boxMean(r.response, r.boxOnMap)[0] - expected) < 1e-6);
  r.response.dispose();
  assert.equal(tf.memory().numTensors, before, 'occlusionResponse leaks no tensors');
  assert.deepEqual(mirrorBox({ top: 0, left: 16, height: 8, width: 4 }), { top: 16, left: 0, height: 4, width: 8 });
  assert.deepEqual(boxOnGrid({ top: 0, left: 16, height: 8, width: 8 }, 32, 32, 8, 8), {
    top: 0,
    left: 4,
    height: 2,
    width: 2,
  });
  assert.deepEqual(boxOnGrid({ top: 3, left: 3, height: 1, width: 1 }, 32, 32, 4, 4), {
    top: 0,
    left: 0,
    height: 1,
    width: 1,
  });
  assert.throws(
    () => occlusionResponse(model, x, { map: 'features', box: { top: 6, left: 0, height: 4, width: 1 } }),
    /not inside the 8×8 input/,
  );
  x.dispose();
});

test('occlusionResponse: the H/W transpose puts an echo at the mirror box that the same weights without it lack', () => {
  // Same seed, same parameters; only fixPsffnTranspose differs. A box in the upper right, off the diagonal.
  const x = images(2);
  const box = { top: 0, left: 20, height: 8, width: 8 };
  const echo = (fix: boolean) => {
    const model = createModel('microscopic-mamba-t', { numClasses: 2, seed: 0, fixPsffnTranspose: fix });
    const r = occlusionResponse(model, x, { map: 'layers.0.blocks', box });
    assert.deepEqual(r.boxOnMap, { top: 0, left: 5, height: 2, width: 2 });
    assert.deepEqual(r.mirrorOnMap, { top: 5, left: 0, height: 2, width: 2 });
    const direct = boxMean(r.response, r.boxOnMap);
    const mirror = boxMean(r.response, r.mirrorOnMap);
    r.response.dispose();
    model.dispose();
    return direct.map((d, i) => mirror[i] / d);
  };
  const faithful = echo(false);
  const fixed = echo(true);
  faithful.forEach((f, i) =>
    assert.ok(
      f > 1.5 * fixed[i],
      `image ${i}: echo/direct ${f.toFixed(4)} with the transpose, ${fixed[i].toFixed(4)} without`,
    ),
  );
  x.dispose();
});
