/**
 * What Microscopic-Mamba's own parts look at, through its inner taps (lib/models/microscopic-mamba/taps.ts):
 *
 * - `mifaGateMaps`: MIFA's two gate maps per block (docs/architecture.md §MIFA), averaged over channels:
 *     local  M_l = sigmoid(ReLU(W(l)))  gates the SSM (global) features with the conv branch's view
 *     global M_g = sigmoid(GELU(W(g)))  gates the conv (local) features with the SSM branch's view
 *   (with the official ReLU, M_l ≥ 0.5 everywhere: quirk Q5).
 * - `scanDirectionMaps`: how much each of SS2D's four scan directions adds to the merged cross-scan output, per
 *   position. The merge is a sum over directions, and a direction's output is y_k = C_k·h_k + D_k·x_k, so zeroing
 *   the C rows of x_proj_weight and the D entries of the OTHER directions leaves exactly y_k (mapped back to
 *   the grid): Σ_k y_k is the full output, to rounding. Shown as the RMS over channels (and PVM groups).
 *
 * Both run the model in inference mode. With the official PSFFN transpose (fixPsffnTranspose: false) every SS2D
 * adds a rows↔columns-swapped term, so all maps but the first block's scan input mix the image with its
 * transpose: the results carry that warning.
 */
import * as tf from '@tensorflow/tfjs';
import { crossScanSSM } from '../ops/selective-scan/index';
import { MicroscopicMamba } from '../models/microscopic-mamba/model';
import { SS2D } from '../models/microscopic-mamba/ss2d';
import type { InnerTapContext } from '../models/microscopic-mamba/taps';

/** SS2D's scan directions in crossScanSSM's order (lib/ops/selective-scan/index.ts). */
export const SCAN_DIRECTIONS = ['row-major', 'column-major', 'row-major reversed', 'column-major reversed'] as const;

export interface MifaGateMaps {
  /** The MIFA module's path, e.g. `layers.0.blocks.0.MIFA`. */
  block: string;
  /** Channel mean of M_l [b, h, w]. */
  local: tf.Tensor3D;
  /** Channel mean of M_g [b, h, w]. */
  global: tf.Tensor3D;
}

export interface ScanDirectionMaps {
  /** The SS2D module's path, e.g. `layers.0.blocks.0.pvm_layer.mamba`. */
  block: string;
  /** RMS of each direction's contribution y_k over channels and PVM groups [b, 4, h, w] (SCAN_DIRECTIONS order). */
  directions: tf.Tensor4D;
  /** Per image, each direction's share of Σ_k ‖y_k‖² (sums to 1). */
  share: number[][];
}

/** Why these maps do not line up with the input (empty for a model without the transpose quirk). */
export function transposeWarnings(model: MicroscopicMamba): string[] {
  if (!model.config.psffn || model.config.fixPsffnTranspose) return [];
  return [
    'this Microscopic-Mamba has the official PSFFN H/W transpose (docs/architecture.md §Quirks Q1, ' +
      'fixPsffnTranspose: false): every SS2D adds its output with rows and columns swapped, so every map here ' +
      'except the scan input of layers.0.blocks.0 mixes each position (r, c) with its mirror (c, r) and does not ' +
      'exactly line up with the input (occlusionResponse measures the echo; a model built with ' +
      'fixPsffnTranspose: true has none)',
  ];
}

function requireMicroscopicMamba(model: unknown, where: string): MicroscopicMamba {
  if (!(model instanceof MicroscopicMamba)) {
    throw new Error(`${where}: needs a Microscopic-Mamba model (createModel('microscopic-mamba-t', …))`);
  }
  return model;
}

/** MIFA's gate maps for every block with MIFA (none when built with `mifa: false`). The caller disposes the maps. */
export function mifaGateMaps(model: MicroscopicMamba, x: tf.Tensor4D): { blocks: MifaGateMaps[]; warnings: string[] } {
  const mm = requireMicroscopicMamba(model, 'mifaGateMaps');
  const found = new Map<string, { local?: tf.Tensor3D; global?: tf.Tensor3D }>();
  const ctx: InnerTapContext = {
    training: false,
    tapInner: (name, t) => {
      const m = /^(.*)\.gate_(local|global)$/.exec(name);
      if (m) {
        const entry = found.get(m[1]) ?? {};
        entry[m[2] as 'local' | 'global'] = tf.keep(tf.mean(t, 3)) as tf.Tensor3D; // [b, h, w]
        found.set(m[1], entry);
      }
      return t;
    },
  };
  tf.dispose(mm.forward(x, ctx));
  const blocks = [...found].map(([block, e]) => ({ block, local: e.local!, global: e.global! }));
  return { blocks, warnings: transposeWarnings(mm) };
}

/**
 * The four directions' outputs of `ss2d`'s cross-scan on its scan input xc [b, h, w, e]: 4 × [b, h, w, e],
 * each in the input's grid; their sum is `crossScanSSM(xc)` with the module's own parameters.
 */
export function scanDirectionOutputs(ss2d: SS2D, xc: tf.Tensor4D): tf.Tensor4D[] {
  const e = ss2d.dInner;
  const n = ss2d.opts.dState;
  const r = ss2d.dtRank;
  return SCAN_DIRECTIONS.map((_, k) =>
    tf.tidy(() => {
      // Keep direction k's C rows (x_proj_weight[j, r+n : r+2n, :]) and D entries; zero the other directions'.
      const cMask = new Float32Array(4 * (r + 2 * n));
      const dMask = new Float32Array(4 * e);
      for (let j = 0; j < 4; j++) {
        for (let i = 0; i < r + 2 * n; i++) cMask[j * (r + 2 * n) + i] = i < r + n || j === k ? 1 : 0;
        if (j === k) dMask.fill(1, j * e, (j + 1) * e);
      }
      return crossScanSSM(
        xc,
        {
          xProjWeight: tf.mul(ss2d.x_proj_weight, tf.tensor3d(cMask, [4, r + 2 * n, 1])), // [4, R+2N, E]
          dtProjsWeight: ss2d.dt_projs_weight,
          dtProjsBias: ss2d.dt_projs_bias,
          ALogs: ss2d.A_logs,
          Ds: tf.mul(ss2d.Ds, tf.tensor1d(dMask)), // [4E]
        },
        { impl: ss2d.opts.scanImpl },
      ); // [b, h, w, e]
    }),
  );
}

/** Each scan direction's contribution per position, for every SS2D of the model. The caller disposes the maps. */
export function scanDirectionMaps(
  model: MicroscopicMamba,
  x: tf.Tensor4D,
): { blocks: ScanDirectionMaps[]; warnings: string[] } {
  const mm = requireMicroscopicMamba(model, 'scanDirectionMaps');
  const b = x.shape[0];
  const modules = new Map(mm.namedModules().filter((e): e is [string, SS2D] => e[1] instanceof SS2D));
  const blocks: ScanDirectionMaps[] = [];
  const ctx: InnerTapContext = {
    training: false,
    tapInner: (name, t) => {
      const path = name.replace(/\.scan_input$/, '');
      const ss2d = name.endsWith('.scan_input') ? modules.get(path) : undefined;
      if (!ss2d) return t;
      const [bg, h, w, e] = t.shape as [number, number, number, number];
      const groups = bg / b; // PVM stacks its channel groups on the batch axis: row = image·G + group
      const energy = tf.tidy(() =>
        tf.stack(
          scanDirectionOutputs(ss2d, t as tf.Tensor4D).map((y) =>
            tf.sum(tf.square(y), 3).reshape([b, groups, h, w]).sum(1),
          ), // 4 × [b, h, w]
          1,
        ),
      ); // [b, 4, h, w]   Σ over channels and groups of y_k²
      const perImage = tf.tidy(() => tf.sum(energy, [2, 3]).arraySync() as number[][]); // [b][4]
      blocks.push({
        block: path,
        directions: tf.keep(tf.tidy(() => tf.sqrt(tf.div(energy, groups * e)))) as tf.Tensor4D,
        share: perImage.map((row) => {
          const total = row.reduce((a, v) => a + v, 0);
          return row.map((v) => (total > 0 ? v / total : 0));
        }),
      });
      energy.dispose();
      return t;
    },
  };
  tf.dispose(mm.forward(x, ctx));
  return { blocks, warnings: transposeWarnings(mm) };
}
