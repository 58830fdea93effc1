/**
 * `npm run bench:ceiling`: how many multiply-adds per second wasm SIMD can do on this CPU at all, how close
 * XNNPACK's GEMM comes to that, and what it means for a CNN's training step: a lower bound on the step time that
 * no kernel of the wasm backend can beat, set beside PyTorch's measured step (benchmarks/model.json).
 *
 * The ceiling kernel is a GEMM micro-kernel without memory traffic: 12 independent f32x4 accumulators, each
 * updated as `acc += x_k · v` from one vector `v` loaded per iteration from a 1 KiB block (L1), so the loop
 * is bound by the SIMD arithmetic units only. Two forms: `f32x4.mul` + `f32x4.add` (what wasm SIMD offers
 * everywhere, and what tfjs 4.22's XNNPACK build uses) and `f32x4.relaxed_madd` (a fused multiply-add from the
 * relaxed-SIMD proposal, behind `--experimental-wasm-relaxed-simd` in Node 20: measured when V8 accepts it).
 * Rates are per CPU-second of this process (`process.cpuUsage`), so another process on the machine changes
 * how long the run takes, not the rate.
 *
 * The floor: a training step costs about 3× the forward's MACs (forward, the input gradients, the filter
 * gradients); on `cores` cores at the ceiling it cannot take less than MACs / (cores × rate).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as v8 from 'v8';
import * as tf from '@tensorflow/tfjs';
import { describeBackend, initBackend } from '../lib/backend/index';
import { countMacs, createModel } from '../lib/models/index';
import { atomicWriteFile, atomicWriteJson } from '../lib/util/fs';
import {
  assembleModule,
  Fn,
  get,
  i32,
  i32add,
  i32and,
  i32mul,
  type Expr,
  type Local,
  vadd,
  vload,
  vmul,
  vzero,
} from '../lib/util/wasm-asm';
import { WA } from '../lib/util/wasm-api';
import { CliError, parseArgs, runMain, type CliSpec } from './lib/cli';

const SPEC: CliSpec = {
  command: 'npm run bench:ceiling --',
  summary: 'wasm SIMD multiply-add ceiling on this CPU, XNNPACK GEMM against it, and the floor it sets for a CNN step.',
  flags: [
    { key: 'model', type: 'string', default: 'resnet18', help: 'the CNN whose training-step floor is computed' },
    { key: 'size', type: 'number', default: 64, help: 'its input size (px)' },
    { key: 'batch', type: 'number', default: 32, help: 'its batch' },
    { key: 'seconds', type: 'number', default: 0.5, help: 'CPU seconds per timed ceiling run (best of 5)' },
    {
      key: 'out',
      type: 'string',
      default: 'benchmarks',
      help: "folder for ceiling.md / ceiling.json ('' = print only)",
    },
  ],
};

const ACCUMULATORS = 12;
const BLOCK_VECTORS = 64; // v cycles through 64 vectors = 1 KiB

/** `f32x4.relaxed_madd(a, b, c) = a·b + c` (relaxed-SIMD opcode 0x105), fused where the CPU has FMA. */
const vmadd =
  (a: Expr, b: Expr, c: Expr): Expr =>
  (f) => {
    a(f);
    b(f);
    c(f);
    f.simd(0x105);
  };

/** madd(iters, base): acc_k += x_k · v_i for i < iters; x_k at base + 16k, v_i cycling after them; sums stored at base. */
function ceilingKernel(fused: boolean): Fn {
  const f = new Fn('madd', ['i32', 'i32']);
  const [iters, base] = f.params;
  const i = f.local('i32');
  const v = f.local('v128');
  const x: Local[] = [];
  const acc: Local[] = [];
  for (let k = 0; k < ACCUMULATORS; k++) {
    x.push(f.local('v128'));
    acc.push(f.local('v128'));
    f.set(x[k], vload(get(base), 16 * k));
    f.set(acc[k], vzero);
  }
  const vBase = 16 * ACCUMULATORS;
  f.forUp(i, i32(0), get(iters), () => {
    // the loaded vector changes every iteration, so V8 cannot hoist the products out of the loop
    f.set(v, vload(i32add(get(base), i32mul(i32and(get(i), i32(BLOCK_VECTORS - 1)), i32(16))), vBase));
    for (let k = 0; k < ACCUMULATORS; k++) {
      f.set(acc[k], fused ? vmadd(get(x[k]), get(v), get(acc[k])) : vadd(get(acc[k]), vmul(get(x[k]), get(v))));
    }
  });
  for (let k = 0; k < ACCUMULATORS; k++) f.storeV128(get(base), 16 * k, get(acc[k]));
  return f;
}

/** GMAC per CPU-second of the ceiling kernel (best of 5), or null with the reason when V8 rejects it. */
function ceiling(fused: boolean, cpuSeconds: number): { gmacs: number; sum: number } | { error: string } {
  if (fused) {
    try {
      v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    } catch {
      /* validation below says whether it worked */
    }
  }
  let run: (iters: number, base: number) => void;
  let heap: Float32Array;
  try {
    const memory = new WA.Memory({ initial: 1 });
    const bytes = assembleModule([ceilingKernel(fused)], { initial: 1, shared: false });
    const instance = new WA.Instance(new WA.Module(bytes), { env: { mem: memory } });
    run = instance.exports.madd as (iters: number, base: number) => void;
    heap = new Float32Array(memory.buffer);
  } catch (e) {
    return { error: (e as Error).message.split('\n')[0] };
  }
  const fill = () => {
    // x_k and v near 1 with tiny steps: the sums stay finite and normal for billions of iterations
    for (let j = 0; j < 4 * (ACCUMULATORS + BLOCK_VECTORS); j++) heap[j] = 1 + ((j % 7) - 3) * 1e-7;
  };
  const macsPerIter = ACCUMULATORS * 4;
  let iters = 1 << 16;
  let best = 0;
  let sum = 0;
  for (let attempt = 0, timed = 0; timed < 5 && attempt < 40; attempt++) {
    fill();
    const c0 = process.cpuUsage();
    run(iters, 0);
    const c1 = process.cpuUsage(c0);
    const s = (c1.user + c1.system) / 1e6;
    sum = heap[0];
    if (s < cpuSeconds / 2) {
      iters = Math.min(2 ** 30, Math.ceil((iters * cpuSeconds) / Math.max(s, 1e-4)));
      continue;
    }
    timed++;
    best = Math.max(best, (iters * macsPerIter) / s / 1e9);
  }
  return { gmacs: best, sum };
}

/** XNNPACK's matMul [n, n]·[n, n], GMAC per CPU-second (best of 5 after a warm-up). */
function gemmRate(n: number): number {
  const a = tf.randomNormal([n, n], 0, 1, 'float32', 1);
  const b = tf.randomNormal([n, n], 0, 1, 'float32', 2);
  tf.matMul(a, b).dispose();
  let best = 0;
  for (let r = 0; r < 5; r++) {
    const c0 = process.cpuUsage();
    const c = tf.matMul(a, b);
    c.dataSync();
    const d = process.cpuUsage(c0);
    c.dispose();
    best = Math.max(best, n ** 3 / ((d.user + d.system) / 1e6) / 1e9);
  }
  tf.dispose([a, b]);
  return best;
}

/** The CPU's feature flags (Linux), '' elsewhere. */
function cpuFlags(): string {
  try {
    return fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '';
  } catch {
    return '';
  }
}

interface PyTorchRow {
  model: string;
  size: number;
  batch: number;
  train: number;
}
interface KitRow {
  model: string;
  backend: string;
  size: number;
  batch: number;
  mode: string;
  seconds: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs(process.argv.slice(2), SPEC);
  const model = values.model as string;
  const [size, batch, seconds] = [values.size, values.batch, values.seconds] as number[];
  for (const [k, v] of Object.entries({ size, batch })) {
    if (!Number.isInteger(v) || v < 1) throw new CliError(`flag --${k} needs a whole number ≥ 1, got '${v}'`);
  }
  const load0 = os.loadavg();
  const cores = os.cpus().length;
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const plain = ceiling(false, seconds);
  const fused = ceiling(true, seconds);
  // one thread: a rate per core, comparable with the ceiling kernel's
  const backend = await initBackend('wasm', { threads: 1, quiet: true });
  const gemm = gemmRate(512);
  const net = createModel(model, { numClasses: 1000 });
  const forwardMacs = countMacs(net, size).full * batch;
  net.dispose();
  const stepMacs = 3 * forwardMacs;

  const measured = JSON.parse(fs.readFileSync(path.join('benchmarks', 'model.json'), 'utf8')) as {
    results?: KitRow[];
    pytorch?: { rows?: PyTorchRow[] };
  };
  const torchRow = measured.pytorch?.rows?.find(
    (r) => r.model.startsWith(model) && r.size === size && r.batch === batch && Number.isFinite(r.train),
  );
  const kitRow = measured.results
    ?.filter(
      (r) =>
        r.model === model &&
        r.backend === 'wasm' &&
        r.size === size &&
        r.batch === batch &&
        r.mode === 'train' &&
        Number.isFinite(r.seconds),
    )
    .at(-1);

  const rate = (r: typeof plain) => ('gmacs' in r ? r.gmacs : NaN);
  const floor = (gmacs: number) => stepMacs / 1e9 / (cores * gmacs);
  const lines: string[] = [];
  const say = (s = '') => {
    lines.push(s);
    console.log(s);
  };
  const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
  say(`# wasm SIMD ceiling and the training-step floor it sets`);
  say();
  say(
    `Measured ${new Date().toISOString()} on ${cpu} (${cores} cores), Node ${process.versions.node} (V8 ${process.versions.v8}), ` +
      `${describeBackend(backend)}; 1-minute load average ${load0[0].toFixed(1)} before, ${os.loadavg()[0].toFixed(1)} after. ` +
      `Rates are per CPU-second of this process (another process slows the run, not the rate). Regenerate: \`npm run bench:ceiling\`.`,
  );
  say();
  say('| kernel (one thread) | GMAC/s per core |');
  say('|---|---:|');
  say(`| ceiling, f32x4.mul + f32x4.add (wasm SIMD as tfjs 4.22 uses it) | ${fmt(rate(plain))} |`);
  say(
    `| ceiling, f32x4.relaxed_madd (fused; relaxed SIMD, behind a V8 flag in Node 20) | ${'gmacs' in fused ? fmt(fused.gmacs) : `not available: ${fused.error}`} |`,
  );
  say(
    `| XNNPACK matMul 512 × 512 × 512 (tfjs-backend-wasm, 1 thread) | ${fmt(gemm)} (${fmt((100 * gemm) / rate(plain), 0)} % of the ceiling) |`,
  );
  say();
  say(
    `${model} at ${size} px, batch ${batch}: ${fmt(forwardMacs / 1e9, 2)} GMACs forward, ≈ ${fmt(stepMacs / 1e9, 1)} GMACs per ` +
      `training step (3 × forward: the forward, the input gradients, the filter gradients).`,
  );
  say();
  say('| | seconds per training step |');
  say('|---|---:|');
  say(`| floor on ${cores} cores at the mul + add ceiling | ${fmt(floor(rate(plain)), 2)} |`);
  if ('gmacs' in fused) say(`| floor on ${cores} cores at the fused ceiling | ${fmt(floor(fused.gmacs), 2)} |`);
  if (kitRow) say(`| the kit, measured (benchmarks/model.json) | ${fmt(kitRow.seconds, 3)} |`);
  if (torchRow) {
    say(`| PyTorch ${torchRow.model}, measured (benchmarks/model.json) | ${fmt(torchRow.train, 3)} |`);
    say(`| issue #15's target: ≥ 0.5× PyTorch's speed | ≤ ${fmt(2 * torchRow.train, 3)} |`);
  }
  say();
  if (torchRow) {
    const target = 2 * torchRow.train;
    const needed = floor(rate(plain)) / target; // fraction of the ceiling the whole step must sustain
    say(
      `To reach the target the step must run at ${fmt(100 * needed, 0)} % of the mul + add ceiling on all ${cores} cores ` +
        `from start to end, the memory-bound work included (BatchNorm, ReLU, pooling, im2col copies, Adam). ` +
        `XNNPACK's plain matMul, the best case of all that work, sustains ${fmt((100 * gemm) / rate(plain), 0)} % on one ` +
        `core; the kit's whole step sustains ${kitRow ? fmt((100 * floor(rate(plain))) / kitRow.seconds, 0) : '–'} %. ` +
        (needed > 1
          ? 'Above 100 %: no wasm kernel can reach the target on this machine.'
          : needed > gemm / rate(plain)
            ? 'That is more than the best GEMM attains, so the target is out of reach in practice for a wasm backend here; ' +
              `PyTorch's oneDNN uses ${/avx512/.test(cpuFlags()) ? 'AVX-512' : 'AVX2'} fused multiply-adds on vectors ` +
              'several times wider than a 128-bit wasm vector.'
            : 'That is within what a GEMM attains: the target is reachable in principle.'),
    );
  }
  const out = values.out as string;
  if (out) {
    fs.mkdirSync(out, { recursive: true });
    atomicWriteFile(path.join(out, 'ceiling.md'), lines.join('\n') + '\n');
    atomicWriteJson(path.join(out, 'ceiling.json'), {
      date: new Date().toISOString(),
      machine: { cpu, cores, node: process.versions.node, v8: process.versions.v8 },
      load: { before: load0[0], after: os.loadavg()[0] },
      ceiling: { mulAdd: rate(plain), fused: 'gmacs' in fused ? fused.gmacs : null },
      xnnpackMatMul: gemm,
      model: { name: model, size, batch, forwardMacs, stepMacs },
      floorSeconds: { mulAdd: floor(rate(plain)), fused: 'gmacs' in fused ? floor(fused.gmacs) : null },
      measured: { kit: kitRow?.seconds ?? null, pytorch: torchRow?.train ?? null },
    });
    console.log(`\nwrote ${path.join(out, 'ceiling.md')} and ceiling.json`);
  }
}

runMain(main);
