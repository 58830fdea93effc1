/**
 * A study file (`studies/<name>.json`): one dataset and recipe, a list of arms (model + options + label)
 * and a list of seeds. Every (arm, seed) pair is a *cell*, trained as an ordinary run folder
 * (lib/train trainRun). Cells are numbered seed-major (all arms of the first seed, then the next seed),
 * so a study stopped half-way has every arm at its first seeds; `--cell I` and Slurm array task I run cell I.
 *
 *   {
 *     "name": "ablations-malaria",
 *     "description": "…",
 *     "data": "../shared/data/nih-malaria-cells-128",   // paths are relative to the working directory
 *     "dataKind": "",                                   // optional, as --data-kind
 *     "recipe": "cpu",
 *     "train": { "epochs": 12 },                        // optional: training options shared by every arm
 *     "seeds": [0, 1, 2],
 *     "reference": "full",                               // the arm every other arm is compared with
 *     "arms": [
 *       { "label": "full", "model": "microscopic-mamba-t" },
 *       { "label": "w/o MIFA", "model": "microscopic-mamba-t", "options": { "mifa": false },
 *         "paper": { "source": "Table II, RPE", "oa": 0.8893 } },
 *       { "label": "resnet18 64px", "model": "resnet18", "train": { "imageSize": 64 } }
 *     ],
 *     "bootstrap": { "samples": 1000, "seed": 0 }        // optional: the paired image bootstrap
 *   }
 *
 * Model options merge over the recipe's (lib/train/config.ts), so an arm changes only what it names.
 * An arm's `train` may change options of its own (e.g. the image size of a resolution arm); the options
 * that identify a cell (name, runsDir, seed, model, modelConfig, recipe, data, resume) belong to the study.
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  DEFAULT_TRAIN_CONFIG,
  makeTrainConfig,
  RECIPES_AVAILABLE,
  type RecipeName,
  type TrainConfig,
} from '../train/config';
import { defaultRunName } from '../train/run';

/** The paper's number for an arm, shown beside the kit's and labelled as a different dataset and recipe. */
export interface PaperNumbers {
  /** Where it comes from, e.g. 'Table II, RPE (224 px, 200 epochs)'. */
  source: string;
  oa?: number;
  auc?: number;
  f1?: number;
  params?: number;
}

export interface StudyArm {
  label: string;
  model: string;
  options?: Record<string, unknown>;
  train?: Partial<TrainConfig>;
  paper?: PaperNumbers;
}

export interface StudyDefinition {
  name: string;
  description?: string;
  data: string;
  dataKind?: string;
  recipe: RecipeName | '';
  train?: Partial<TrainConfig>;
  seeds: number[];
  reference: string;
  arms: StudyArm[];
  /** Where the run folders go (default runs/studies/<name>). */
  runsDir?: string;
  bootstrap?: { samples: number; seed: number };
}

/** A loaded study: the definition plus where its files go. */
export interface Study {
  file: string;
  def: StudyDefinition;
  /** studies/<name>/ next to the study file: results, report, cells/ (committed). */
  outDir: string;
  runsDir: string;
  cells: Cell[];
}

export interface Cell {
  index: number;
  arm: StudyArm;
  armIndex: number;
  seed: number;
  /** `<label>-s<seed>`, file-name safe: the folder of its cell.json. */
  id: string;
  /** The explicit training options of this cell (what trainRun gets as `given`). */
  overrides: Partial<TrainConfig>;
  config: TrainConfig;
  runDir: string;
  cellDir: string;
}

/** Options a study sets for every cell; an arm or the shared `train` block may not. */
export const STUDY_OWNED: ReadonlyArray<keyof TrainConfig> = [
  'name',
  'runsDir',
  'seed',
  'model',
  'modelConfig',
  'recipe',
  'data',
  'dataKind',
  'resume',
];

const safeName = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, '_');

/** Read, check and expand a study file; errors name the file and the field. */
export function loadStudy(file: string): Study {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(
      `${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such study file' : (e as Error).message}`,
    );
  }
  const def = checkDefinition(raw, file);
  const outDir = path.resolve(path.dirname(file), def.name);
  const runsDir = path.resolve(def.runsDir ?? path.join('runs', 'studies', def.name));
  const cells: Cell[] = [];
  for (const seed of def.seeds) {
    def.arms.forEach((arm, armIndex) => {
      const overrides: Partial<TrainConfig> = {
        report: false,
        ...def.train,
        ...arm.train,
        recipe: def.recipe,
        data: def.data,
        dataKind: def.dataKind ?? '',
        model: arm.model,
        modelConfig: JSON.stringify(arm.options ?? {}),
        seed,
        runsDir,
        resume: true,
      };
      let config: TrainConfig;
      try {
        config = makeTrainConfig(overrides);
      } catch (e) {
        throw new Error(`${file}: arm '${arm.label}': ${(e as Error).message}`);
      }
      config = { ...config, name: defaultRunName(config) };
      const id = `${safeName(arm.label)}-s${seed}`;
      cells.push({
        index: cells.length,
        arm,
        armIndex,
        seed,
        id,
        overrides,
        config,
        runDir: path.join(runsDir, config.name),
        cellDir: path.join(outDir, 'cells', id),
      });
    });
  }
  const byRun = new Map<string, string>();
  for (const c of cells) {
    const other = byRun.get(c.runDir);
    if (other)
      throw new Error(
        `${file}: arms '${other}' and '${c.arm.label}' train the same run (${c.config.name}); make them differ`,
      );
    byRun.set(c.runDir, c.arm.label);
  }
  return { file, def, outDir, runsDir, cells };
}

function checkDefinition(raw: unknown, file: string): StudyDefinition {
  const bad = (field: string, why: string) => new Error(`${file}: ${field} ${why}`);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('the file', 'must hold a JSON object');
  const d = raw as Record<string, unknown>;
  const known = [
    'name',
    'description',
    'data',
    'dataKind',
    'recipe',
    'train',
    'seeds',
    'reference',
    'arms',
    'runsDir',
    'bootstrap',
  ];
  for (const k of Object.keys(d))
    if (!known.includes(k)) throw bad(`'${k}'`, `is not a study field (known: ${known.join(', ')})`);
  if (typeof d.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(d.name))
    throw bad('name', 'must be a file-name-safe string (letters, digits, . _ -)');
  if (typeof d.data !== 'string' || !d.data) throw bad('data', "must name a dataset (a folder, a .npz or 'synthetic')");
  if (d.dataKind !== undefined && typeof d.dataKind !== 'string') throw bad('dataKind', 'must be a string');
  if (typeof d.recipe !== 'string' || !['', ...RECIPES_AVAILABLE].includes(d.recipe))
    throw bad('recipe', `must be one of ${RECIPES_AVAILABLE.join(', ')} or ''`);
  if (!Array.isArray(d.seeds) || d.seeds.length === 0 || !d.seeds.every((s) => Number.isInteger(s) && s >= 0))
    throw bad('seeds', 'must be a non-empty list of integers ≥ 0');
  if (new Set(d.seeds).size !== d.seeds.length) throw bad('seeds', 'must not repeat a seed');
  const checkTrain = (t: unknown, where: string) => {
    if (t === undefined) return;
    if (typeof t !== 'object' || t === null || Array.isArray(t))
      throw bad(where, 'must be an object of training options');
    for (const k of Object.keys(t)) {
      if (!(k in DEFAULT_TRAIN_CONFIG)) throw bad(where, `has an unknown training option '${k}'`);
      if (STUDY_OWNED.includes(k as keyof TrainConfig))
        throw bad(where, `may not set '${k}' (the study sets ${STUDY_OWNED.join(', ')} for every cell)`);
    }
  };
  checkTrain(d.train, 'train');
  if (!Array.isArray(d.arms) || d.arms.length === 0) throw bad('arms', 'must be a non-empty list');
  const labels = new Set<string>();
  d.arms.forEach((a: unknown, i) => {
    const where = `arms[${i}]`;
    if (typeof a !== 'object' || a === null) throw bad(where, 'must be an object');
    const arm = a as Record<string, unknown>;
    for (const k of Object.keys(arm))
      if (!['label', 'model', 'options', 'train', 'paper'].includes(k)) throw bad(where, `has an unknown field '${k}'`);
    if (typeof arm.label !== 'string' || !arm.label) throw bad(`${where}.label`, 'must be a non-empty string');
    if (labels.has(safeName(arm.label))) throw bad(`${where}.label`, `'${arm.label}' is used twice`);
    labels.add(safeName(arm.label));
    if (typeof arm.model !== 'string' || !arm.model) throw bad(`${where}.model`, 'must name a registered model');
    if (
      arm.options !== undefined &&
      (typeof arm.options !== 'object' || arm.options === null || Array.isArray(arm.options))
    )
      throw bad(`${where}.options`, 'must be an object of model options');
    checkTrain(arm.train, `${where}.train`);
  });
  if (typeof d.reference !== 'string' || !(d.arms as StudyArm[]).some((a) => a.label === d.reference))
    throw bad(
      'reference',
      `must be the label of one of the arms (${(d.arms as StudyArm[]).map((a) => a.label).join(', ')})`,
    );
  if (d.bootstrap !== undefined) {
    const b = d.bootstrap as Record<string, unknown>;
    if (!(Number.isInteger(b.samples) && (b.samples as number) > 0 && Number.isInteger(b.seed)))
      throw bad('bootstrap', 'must be { "samples": integer > 0, "seed": integer }');
  }
  return d as unknown as StudyDefinition;
}

/** Cells selected by `--cell`: one index, or all. */
export function cellByIndex(study: Study, index: number): Cell {
  const cell = study.cells[index];
  if (!cell)
    throw new Error(
      `--cell ${index}: ${study.file} has cells 0–${study.cells.length - 1} (${study.def.arms.length} arms × ${study.def.seeds.length} seeds)`,
    );
  return cell;
}
