/**
 * Selective-scan benchmark: forward and forward+backward of every implementation (reference, chunked,
 * fused) on every available backend, at the scan shapes of Microscopic-Mamba-t. Writes
 * benchmarks/scan.json and benchmarks/scan.md.
 *
 *   npm run bench:scan                                  wasm, cpu and webgpu, 64 and 224 px
 *   npm run bench:scan -- --quick                       fewer shapes, one repeat, smaller caps
 *   npm run bench:scan -- --backends wasm,webgpu --sizes 224 --reps 3
 *
 * Shapes (docs/architecture.md §SS2D, §Selective scan, §Cross-scan): one SS2D call of stage s sees batch 8 × 4 PVM
 * groups = 32 sequences, the 4 directions as g = 4 groups of E channels (d = 4E), N = 16, E = 24/48/96/192 and L = H·W
 * of the stage: 256/64/16/4 at 64 px input, 3136/784/196/49 at 224 px. A "state update" is one h[b, c, n] step, so a
 * call does b·d·l·n of them.
 *
 * Slow combinations are measured on a smaller problem and scaled, and the table says so: the
 * sequential reference on fewer time steps (its cost per step is constant, so time ∝ l), the chunked
 * scan and webgpu runs on fewer sequences (time ∝ b once the batch fills the machine). Times are the
 * best of the repeats (this machine is shared; the best run is the least disturbed one). Peak memory is
 * tfjs' peakBytes over one forward+backward (tf.profile), plus, for the fused CPU kernel, the SIMD
 * engine's own working memory.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { BackendInfo, describeBackend, initBackend } from '../lib/backend/index';
import { hasFusedScan, ScanImpl, selectiveScan } from '../lib/ops/selective-scan/index';
import { activeScanEngine } from '../lib/ops/selective-scan/fused-cpu';
import { simdMemoryBytes, simdThreads } from '../lib/ops/selective-scan/wasm-simd';
import { atomicWriteFile, atomicWriteJson } from '../lib/util/fs';
import { Rng } from '../lib/util/random';

const HELP = `Usage: npm run bench:scan -- [options]
  --backends a,b   backends to run (default wasm,cpu,webgpu; unavailable ones are reported and skipped)
  --sizes 64,224   input sizes whose stage shapes to run (default 64,224)
  --impls a,b      implementations (default reference,chunked,fused)
  --reps N         timed repeats after the warm-ups (default: 2 to 5, as many as fit in about 8 s)
  --merge          keep the other backends' rows of an existing scan.json (re-measure some backends only)
  --quick          stage 1 only, one repeat, a quarter of the caps below
  --out DIR        output folder (default benchmarks)
  --render         only rewrite scan.md from an existing scan.json (no measurements)
Caps (state updates per measured call; bigger problems are measured smaller and scaled):
  wasm: reference 12M, chunked 20M   cpu: reference 0.5M, chunked 1M   webgpu: reference 0.5M, chunked 1M, fused 2M
`;

const BATCH = 32; // 8 images × 4 PVM groups
const GROUPS = 4; // the 4 scan directions
const N = 16;
const IMPLS: ScanImpl[] = ['reference', 'chunked', 'fused'];

interface Shape {
  px: number;
  stage: number;
  E: number;
  L: number;
}
const SHAPES: Shape[] = [64, 224].flatMap((px) =>
  [24, 48, 96, 192].map((E, i) => ({ px, stage: i + 1, E, L: (px / 4 / 2 ** i) ** 2 })),
);

const CAPS: Record<string, Partial<Record<ScanImpl, number>>> = {
  wasm: { reference: 12e6, chunked: 20e6 },
  cpu: { reference: 0.5e6, chunked: 1e6 },
  webgpu: { reference: 0.5e6, chunked: 1e6, fused: 2e6 },
};

function arg(name: string): string | undefined {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(name);
  if (i >= 0) return argv[i + 1];
  return argv.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
}
const flag = (name: string) => process.argv.slice(2).includes(name);

/** One invocation of this script (rows of several can be merged into one table). */
interface Run {
  date: string;
  backends: string[];
  loadAverage: { start: string; end: string };
}

interface Row {
  backend: string;
  px: number;
  stage: number;
  E: number;
  d: number;
  L: number;
  impl: ScanImpl;
  /** the problem actually run (smaller than the stage shape when scaled) */
  measured: { b: number; L: number };
  /** full-shape time / measured time (1 = measured at full size) */
  scale: number;
  fwdMs: number;
  fwdBwdMs: number;
  nsPerUpdateFwd: number;
  nsPerUpdateFwdBwd: number;
  peakMB: number | null;
  engineMB: number | null;
  engine: string | null;
  /** thread count forced for this row (the one-thread fused variant); null = the default */
  threads?: number | null;
  vsChunkedFwdBwd: number | null;
  vsReferenceFwdBwd: number | null;
  vsChunkedFwd: number | null;
  vsReferenceFwd: number | null;
  reps: number;
  /** when this row was measured (rows of several runs can be merged) */
  date?: string;
}

/** Which smaller problem to run for a capped implementation. */
function plan(backend: string, impl: ScanImpl, s: Shape, capScale: number): { b: number; L: number } {
  const d = GROUPS * s.E;
  const cap = (CAPS[backend]?.[impl] ?? Infinity) * capScale;
  if (BATCH * d * s.L * N <= cap) return { b: BATCH, L: s.L };
  if (impl === 'reference') {
    // keep the batch (per-step overhead amortises over it), shorten the sequence
    return { b: BATCH, L: Math.max(8, Math.min(s.L, Math.floor(cap / (BATCH * d * N)))) };
  }
  return { b: Math.max(1, Math.min(BATCH, Math.floor(cap / (d * s.L * N)))), L: s.L };
}

function inputs(b: number, E: number, L: number, seed: number) {
  const d = GROUPS * E;
  const rng = new Rng(seed);
  return {
    u: tf.tensor3d(rng.fillNormal(b * d * L), [b, d, L]),
    delta: tf.tensor3d(rng.fillNormal(b * d * L, -4, 1), [b, d, L]), // softplus → Δ ≈ 0.02, as dt_proj's init
    A: tf.tensor2d(
      Float32Array.from({ length: d * N }, (_, i) => -((i % N) + 1)),
      [d, N],
    ), // −exp(A_logs) at init
    B: tf.tensor4d(rng.fillNormal(b * GROUPS * N * L), [b, GROUPS, N, L]),
    C: tf.tensor4d(rng.fillNormal(b * GROUPS * N * L), [b, GROUPS, N, L]),
    D: tf.ones([d]) as tf.Tensor1D,
    deltaBias: tf.tensor1d(rng.fillNormal(d, 0, 0.1)),
    dy: tf.tensor3d(rng.fillNormal(b * d * L), [b, d, L]),
  };
}
type Inputs = ReturnType<typeof inputs>;

/**
 * Waits for the results. wasm and cpu kernels are synchronous, so the values are there when the call
 * returns and downloading them would only add a copy to every measurement; webgpu queues its work,
 * so there the results are read back.
 */
async function done(ts: tf.Tensor[]): Promise<void> {
  if (tf.getBackend() === 'webgpu') await Promise.all(ts.map((t) => t.data()));
}

async function forward(x: Inputs, impl: ScanImpl): Promise<void> {
  const y = selectiveScan({ ...x, impl });
  await done([y]);
  y.dispose();
}

async function forwardBackward(x: Inputs, impl: ScanImpl): Promise<void> {
  const f = (u: tf.Tensor, delta: tf.Tensor, A: tf.Tensor, B: tf.Tensor, C: tf.Tensor, D: tf.Tensor, bias: tf.Tensor) =>
    selectiveScan({
      u: u as tf.Tensor3D,
      delta: delta as tf.Tensor3D,
      A: A as tf.Tensor2D,
      B,
      C,
      D: D as tf.Tensor1D,
      deltaBias: bias as tf.Tensor1D,
      impl,
    });
  const grads = tf.grads(f)([x.u, x.delta, x.A, x.B, x.C, x.D, x.deltaBias], x.dy);
  await done(grads);
  tf.dispose(grads);
}

async function timeIt(f: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

async function measure(backend: string, impl: ScanImpl, b: number, E: number, L: number, reps: number | undefined) {
  // Warm-up on a small problem: compiles shaders / wasm, fills kernel caches.
  const small = inputs(Math.min(b, 2), E, Math.min(L, 16), 1);
  await forward(small, impl);
  await forwardBackward(small, impl);
  tf.dispose(Object.values(small));

  const x = inputs(b, E, L, 2);
  // One untimed run at the measured size: the first run at a new size pays for growing the heaps
  // (page faults), which is not the op's cost (it was 2-5× slower than the next runs).
  const first = await timeIt(() => forwardBackward(x, impl));
  const n = reps ?? Math.max(2, Math.min(5, Math.floor(8000 / first)));
  const fwd: number[] = [];
  const fb: number[] = [];
  for (let r = 0; r < n; r++) {
    fwd.push(await timeIt(() => forward(x, impl)));
    fb.push(await timeIt(() => forwardBackward(x, impl)));
  }
  let peakMB: number | null = null;
  try {
    const prof = await tf.profile(() => forwardBackward(x, impl));
    peakMB = prof.peakBytes / 2 ** 20;
  } catch {
    /* tf.profile unsupported here */
  }
  tf.dispose(Object.values(x));
  return { fwdMs: Math.min(...fwd), fwdBwdMs: Math.min(...fb), peakMB, reps: n };
}

function fmt(x: number | null | undefined, digits = 1): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '';
  if (Math.abs(x) >= 100) return x.toFixed(0);
  return x.toFixed(digits);
}

function loadAverage(): string {
  return os
    .loadavg()
    .map((v) => v.toFixed(2))
    .join(' / ');
}

async function main(): Promise<void> {
  if (flag('--help')) {
    console.log(HELP);
    return;
  }
  const outDirEarly = path.resolve(arg('--out') ?? path.join(__dirname, '..', 'benchmarks'));
  if (flag('--render')) {
    const saved = JSON.parse(fs.readFileSync(path.join(outDirEarly, 'scan.json'), 'utf8'));
    atomicWriteFile(path.join(outDirEarly, 'scan.md'), markdown(saved.meta, saved.rows));
    console.log(`rewrote ${path.join(outDirEarly, 'scan.md')}`);
    return;
  }
  const quick = flag('--quick');
  const backends = (arg('--backends') ?? 'wasm,cpu,webgpu').split(',').map((s) => s.trim());
  const sizes = (arg('--sizes') ?? '64,224').split(',').map(Number);
  const impls = (arg('--impls')?.split(',') ?? IMPLS) as ScanImpl[];
  const repsArg = arg('--reps');
  const reps = quick ? 1 : repsArg ? Number(repsArg) : undefined;
  const outDir = outDirEarly;
  const shapes = SHAPES.filter((s) => sizes.includes(s.px) && (!quick || s.stage === 1));
  const capScale = quick ? 0.25 : 1;
  const loadStart = loadAverage();

  const rows: Row[] = [];
  const backendInfo: Record<string, string> = {};
  const skipped: Record<string, string> = {};
  for (const backend of backends) {
    let info: BackendInfo;
    try {
      info = await initBackend(backend, { quiet: true });
    } catch (e) {
      skipped[backend] = (e as Error).message.split('\n')[0];
      console.log(`skip ${backend}: ${skipped[backend]}`);
      continue;
    }
    backendInfo[backend] = describeBackend(info);
    console.log(backendInfo[backend]);
    for (const s of shapes) {
      const d = GROUPS * s.E;
      const updates = BATCH * d * s.L * N;
      const byImpl: Partial<Record<ScanImpl, Row>> = {};
      const group: Row[] = [];
      // The fused CPU engine runs on all cores; a second fused row on one thread shows what it owes to threads.
      const variants: Array<[ScanImpl, number | undefined]> = impls.flatMap(
        (impl): Array<[ScanImpl, number | undefined]> =>
          impl === 'fused' && backend !== 'webgpu' && simdThreads() > 1
            ? [
                [impl, undefined],
                [impl, 1],
              ]
            : [[impl, undefined]],
      );
      for (const [impl, threads] of variants) {
        if (impl === 'fused' && !hasFusedScan(backend)) continue;
        const m = plan(backend, impl, s, capScale);
        const scale = (BATCH * s.L) / (m.b * m.L);
        const savedThreads = process.env.MSM_SCAN_THREADS;
        if (threads) process.env.MSM_SCAN_THREADS = String(threads);
        let r: Awaited<ReturnType<typeof measure>>;
        let engine: string | null = null;
        try {
          r = await measure(backend, impl, m.b, s.E, m.L, reps);
          if (impl === 'fused' && backend !== 'webgpu') {
            const name = activeScanEngine().name;
            engine =
              name === 'wasm-simd' ? `wasm-simd, ${simdThreads(m.b)} thread${simdThreads(m.b) > 1 ? 's' : ''}` : name;
          }
        } finally {
          if (savedThreads === undefined) delete process.env.MSM_SCAN_THREADS;
          else process.env.MSM_SCAN_THREADS = savedThreads;
        }
        const row: Row = {
          backend,
          px: s.px,
          stage: s.stage,
          E: s.E,
          d,
          L: s.L,
          impl,
          measured: m,
          scale,
          fwdMs: r.fwdMs * scale,
          fwdBwdMs: r.fwdBwdMs * scale,
          nsPerUpdateFwd: (r.fwdMs * scale * 1e6) / updates,
          nsPerUpdateFwdBwd: (r.fwdBwdMs * scale * 1e6) / updates,
          peakMB: r.peakMB,
          engineMB: engine?.startsWith('wasm-simd') ? simdMemoryBytes() / 2 ** 20 : null,
          engine,
          threads: threads ?? null,
          vsChunkedFwdBwd: null,
          vsReferenceFwdBwd: null,
          vsChunkedFwd: null,
          vsReferenceFwd: null,
          reps: r.reps,
        };
        if (!threads) byImpl[impl] = row;
        group.push(row);
        rows.push(row);
        const note = scale > 1 ? ` (measured b=${m.b} L=${m.L}, ×${fmt(scale, 2)})` : '';
        console.log(
          `  ${backend} ${s.px}px stage ${s.stage} E=${s.E} L=${s.L} ${impl}${threads ? ' (1 thread)' : ''}: ` +
            `fwd ${fmt(row.fwdMs)} ms, fwd+bwd ${fmt(row.fwdBwdMs)} ms, ${fmt(row.nsPerUpdateFwdBwd, 2)} ns/update${note}`,
        );
      }
      for (const row of group) {
        const c = byImpl.chunked;
        const ref = byImpl.reference;
        if (c) row.vsChunkedFwdBwd = c.fwdBwdMs / row.fwdBwdMs;
        if (c) row.vsChunkedFwd = c.fwdMs / row.fwdMs;
        if (ref) row.vsReferenceFwdBwd = ref.fwdBwdMs / row.fwdBwdMs;
        if (ref) row.vsReferenceFwd = ref.fwdMs / row.fwdMs;
      }
    }
  }

  const now = new Date().toISOString();
  rows.forEach((r) => (r.date = now));
  const thisRun: Run = {
    date: now,
    backends: Object.keys(backendInfo),
    loadAverage: { start: loadStart, end: loadAverage() },
  };
  let allRows = rows;
  let runs: Run[] = [thisRun];
  if (flag('--merge') && fs.existsSync(path.join(outDir, 'scan.json'))) {
    const old = JSON.parse(fs.readFileSync(path.join(outDir, 'scan.json'), 'utf8')) as {
      meta: { backends: Record<string, string>; date: string; loadAverage: Run['loadAverage']; runs?: Run[] };
      rows: Row[];
    };
    const kept = old.rows.filter((r) => !(r.backend in backendInfo));
    kept.forEach((r) => (r.date ??= old.meta.date));
    for (const [k, v] of Object.entries(old.meta.backends)) backendInfo[k] ??= v;
    allRows = [...kept, ...rows];
    const oldRuns = old.meta.runs ?? [
      { date: old.meta.date, backends: Object.keys(old.meta.backends), loadAverage: old.meta.loadAverage },
    ];
    runs = [
      ...oldRuns
        .map((r) => ({
          ...r,
          backends: r.backends.filter((b) => !(b in backendInfo) || !thisRun.backends.includes(b)),
        }))
        .filter((r) => r.backends.length > 0),
      thisRun,
    ];
  }
  const meta = {
    date: now,
    machine: `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
    loadAverage: thisRun.loadAverage,
    runs,
    node: process.version,
    tfjs: tf.version.tfjs,
    backends: backendInfo,
    skipped,
    shapes: `batch ${BATCH} (8 images × 4 PVM groups), g = ${GROUPS} directions, N = ${N}, d = 4E`,
    timing: 'best of the repeats after a warm-up; scaled rows were measured on a smaller problem (see measured/scale)',
    quick,
  };
  atomicWriteJson(path.join(outDir, 'scan.json'), { meta, rows: allRows });
  atomicWriteFile(path.join(outDir, 'scan.md'), markdown(meta, allRows));
  console.log(`wrote ${path.join(outDir, 'scan.json')} and scan.md`);
  const acc = acceptance(allRows);
  if (acc) console.log(acc);
}

function acceptance(rows: Row[]): string | undefined {
  const f = rows.find((r) => r.backend === 'wasm' && r.px === 224 && r.stage === 1 && r.impl === 'fused' && !r.threads);
  if (!f || f.vsChunkedFwdBwd === null || f.vsReferenceFwdBwd === null) return undefined;
  const ok = f.vsChunkedFwdBwd >= 10 && f.vsReferenceFwdBwd >= 50;
  return (
    `Acceptance (wasm, 224 px stage 1, forward+backward): fused ${fmt(f.fwdBwdMs)} ms = ` +
    `${fmt(f.vsChunkedFwdBwd)}× chunked (≥ 10 required), ${fmt(f.vsReferenceFwdBwd)}× reference (≥ 50 required): ` +
    (ok ? 'met' : 'NOT met')
  );
}

function markdown(meta: Record<string, unknown> & { backends: Record<string, string> }, rows: Row[]): string {
  const m = meta as unknown as {
    date: string;
    machine: string;
    loadAverage: { start: string; end: string };
    runs?: Run[];
    node: string;
    tfjs: string;
    skipped: Record<string, string>;
    shapes: string;
    quick: boolean;
  };
  const lines: string[] = [];
  lines.push('# Selective-scan benchmark (`npm run bench:scan`)', '');
  lines.push(
    `${m.date.slice(0, 10)} · ${m.machine} · Node ${m.node} · tfjs ${m.tfjs}${m.quick ? ' · --quick' : ''}`,
    '',
  );
  const runs = m.runs ?? [{ date: m.date, backends: Object.keys(meta.backends), loadAverage: m.loadAverage }];
  for (const r of runs) {
    lines.push(
      `- ${r.backends.join(', ')}: measured ${r.date.slice(0, 16).replace('T', ' ')} UTC, load average (1 / 5 / 15 min) ` +
        `${r.loadAverage.start} at the start, ${r.loadAverage.end} at the end (2 cores, shared with other jobs)`,
    );
  }
  lines.push('');
  lines.push(
    `One SS2D scan call per Microscopic-Mamba-t stage: ${m.shapes}. Times are the best of the repeats after a ` +
      'warm-up, in ms for the whole call; "fwd+bwd" is the forward plus all seven input gradients. ' +
      '"× chunked" / "× reference" = how many times faster than that implementation in this run (fwd+bwd; ' +
      'forward in brackets). ns/update = fwd+bwd time per state update (b·d·l·n updates per call). ' +
      'Peak = tfjs peakBytes over one fwd+bwd of the problem actually run; the fused CPU kernel adds its SIMD ' +
      'engine memory (kept between calls). Rows marked "scaled" were measured on the smaller problem shown and multiplied by the factor ' +
      '(reference: fewer time steps, time ∝ L; chunked and webgpu: fewer sequences, time ∝ b).',
    '',
    'On wasm, every implementation runs with the Slice / Unpack / SplitV / Identity replacements of ' +
      '`lib/backend/copies.ts`: the stock kernels copy ' +
      'whole tensors per slice and per saved gradient input, which made reference and chunked about 2× ' +
      'slower. The fused CPU kernel is the SIMD WebAssembly engine (`wasm-simd.ts`) on all cores; the ' +
      'reference and chunked scans are tfjs ops, which run on one core.',
    '',
  );
  const order = (b: string) => (['wasm', 'cpu', 'webgpu'].indexOf(b) + 4) % 4;
  const backends = Object.entries(meta.backends).sort((a, b) => order(a[0]) - order(b[0]));
  for (const [name, desc] of backends) {
    lines.push(`## ${name}`, '', `\`${desc}\``, '');
    if (name === 'webgpu' && /llvmpipe/i.test(desc)) {
      lines.push(
        '**Not GPU figures**: this adapter is Mesa llvmpipe, a CPU rasteriser running the same WGSL; the rows ' +
          'show that the kernels run, not how fast they are on a GPU.',
        '',
      );
    }
    lines.push(
      '| input | stage | E | L | impl | fwd ms | fwd+bwd ms | ns/update | × chunked | × reference | peak MB | note |',
      '|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|',
    );
    for (const r of rows.filter((x) => x.backend === name)) {
      const vs = (a: number | null, b: number | null) => (a === null ? '' : `${fmt(a)} (${fmt(b)})`);
      const peak = r.peakMB === null ? '' : fmt(r.peakMB) + (r.engineMB ? ` + ${fmt(r.engineMB)}` : '');
      const notes: string[] = [];
      if (r.scale > 1) notes.push(`scaled ×${fmt(r.scale, 2)} from b=${r.measured.b}, L=${r.measured.L}`);
      if (r.engine) notes.push(r.engine);
      lines.push(
        `| ${r.px} px | ${r.stage} | ${r.E} | ${r.L} | ${r.impl}${r.threads ? ' (1 thread)' : ''} | ${fmt(r.fwdMs)} | ${fmt(r.fwdBwdMs)} | ` +
          `${fmt(r.nsPerUpdateFwdBwd, 2)} | ${vs(r.vsChunkedFwdBwd, r.vsChunkedFwd)} | ` +
          `${vs(r.vsReferenceFwdBwd, r.vsReferenceFwd)} | ${peak} | ${notes.join('; ')} |`,
      );
    }
    lines.push('');
  }
  for (const [name, why] of Object.entries(m.skipped)) lines.push(`Skipped ${name}: ${why}`, '');
  const acc = acceptance(rows);
  if (acc) lines.push(`**${acc}**`, '');
  return lines.join('\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
