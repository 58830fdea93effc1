/**
 * Training-config plumbing a study relies on: --model-config merges over the recipe's model options (the
 * flag wins per key), run names carry the seed and a hash of the options that differ from the recipe, and a
 * resumed run accepts the same --model-config it was started with.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { configDelta, makeTrainConfig, mergeModelConfig } from '../lib/train/config';
import { configHash, defaultRunName, resumeConfig } from '../lib/train/run';

test('--model-config merges with the recipe model options, the flag winning per key', () => {
  // The cpu recipe sets dropPathRate 0; an ablation flag must not silently bring back the model's 0.1.
  const c = makeTrainConfig({ recipe: 'cpu', modelConfig: '{"mifa":false}' });
  assert.deepEqual(JSON.parse(c.modelConfig), { dropPathRate: 0, mifa: false });
  const over = makeTrainConfig({ recipe: 'cpu', modelConfig: '{"dropPathRate":0.2,"psffn":false}' });
  assert.deepEqual(JSON.parse(over.modelConfig), { dropPathRate: 0.2, psffn: false });
  // Without a flag the recipe's options stand; without a recipe the flag is all there is.
  assert.equal(makeTrainConfig({ recipe: 'cpu' }).modelConfig, '{"dropPathRate":0}');
  assert.equal(makeTrainConfig({ modelConfig: '{"mifa":false}' }).modelConfig, '{"mifa":false}');
  assert.equal(makeTrainConfig({ recipe: 'cpu', modelConfig: '{}' }).modelConfig, '{"dropPathRate":0}');
  assert.equal(mergeModelConfig('', ''), '');
  // Merging is idempotent (a saved, merged config goes through makeTrainConfig again on resume).
  assert.equal(makeTrainConfig({ recipe: 'cpu', modelConfig: c.modelConfig }).modelConfig, c.modelConfig);
  assert.throws(() => makeTrainConfig({ recipe: 'cpu', modelConfig: '[1]' }), /modelConfig: must be a JSON object/);
});

test('run names: <model>-<dataset>-<recipe>-s<seed>, plus a hash of what differs from the recipe', () => {
  const base = makeTrainConfig({ recipe: 'cpu', data: 'synthetic' });
  assert.equal(defaultRunName(base), 'microscopic-mamba-t-synthetic-cpu-s0');
  assert.deepEqual(configDelta(base), { train: {}, model: {} });
  assert.equal(defaultRunName(makeTrainConfig({ recipe: 'cpu', seed: 2 })), 'microscopic-mamba-t-synthetic-cpu-s2');
  // Options that only say where or how to report do not change the name.
  assert.equal(
    defaultRunName(makeTrainConfig({ recipe: 'cpu', runsDir: 'elsewhere', ckptEvery: 7, report: false, resume: true })),
    'microscopic-mamba-t-synthetic-cpu-s0',
  );
  // Two ablation arms and a changed training option get three different names.
  const noMifa = makeTrainConfig({ recipe: 'cpu', modelConfig: '{"mifa":false}' });
  const noPsffn = makeTrainConfig({ recipe: 'cpu', modelConfig: '{"psffn":false}' });
  const epochs = makeTrainConfig({ recipe: 'cpu', epochs: 3 });
  assert.deepEqual(configDelta(noMifa), { train: {}, model: { mifa: false } });
  assert.deepEqual(configDelta(epochs), { train: { epochs: 3 }, model: {} });
  const names = [noMifa, noPsffn, epochs].map(defaultRunName);
  assert.equal(new Set(names).size, 3);
  for (const n of names) assert.match(n, /^microscopic-mamba-t-synthetic-cpu-s0-[0-9a-f]{8}$/);
  // The hash depends on the values, not on the key order of the JSON.
  const ab = makeTrainConfig({ recipe: 'cpu', modelConfig: '{"mifa":false,"psffn":false}' });
  const ba = makeTrainConfig({ recipe: 'cpu', modelConfig: '{"psffn":false,"mifa":false}' });
  assert.equal(configHash(ab), configHash(ba));
  // Setting a recipe value explicitly is no difference.
  assert.equal(configHash(makeTrainConfig({ recipe: 'cpu', modelConfig: '{"dropPathRate":0}', epochs: 12 })), '');
});

test('resume accepts the --model-config the run was started with (compared after the merge)', () => {
  const saved = makeTrainConfig({ recipe: 'cpu', modelConfig: '{"mifa":false}', name: 'r' });
  const again = resumeConfig(saved, { modelConfig: '{"mifa":false}', resume: true }, 'last.json');
  assert.equal(again.modelConfig, saved.modelConfig);
  assert.throws(
    () => resumeConfig(saved, { modelConfig: '{"mifa":true}', resume: true }, 'last.json'),
    /modelConfig .* cannot change on resume/,
  );
});
