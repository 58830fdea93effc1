/**
 * Model weights on disk: safetensors with the official PyTorch state-dict names and layouts.
 *
 * One format for both directions. `loadWeights` reads an official checkpoint converted with
 * `safetensors.torch.save_file(model.state_dict(), f)` (conv [O, I/g, kh, kw], linear [out, in]) and
 * the kit's own checkpoints; `saveWeights` writes the same thing, so PyTorch reads the kit's weights
 * back with `model.load_state_dict(safetensors.torch.load_file(f))` (BatchNorm's integer
 * `num_batches_tracked` is neither kept nor written; PyTorch fills it in).
 */
import { Module, readSafetensors, StateDictError, writeSafetensors } from '../nn/index';

export interface LoadWeightsOptions {
  /** Naming and layout of the file. Only 'pytorch' exists: official names, PyTorch layouts. */
  from?: 'pytorch';
  /** Strict (default): every missing, unexpected or mis-shaped key is listed in one error, nothing is loaded. */
  strict?: boolean;
}

/**
 * Load `file` into `model`. Returns the file's string metadata and the number of tensors it held.
 * Errors name the file and every offending key (missing, unexpected, shape mismatch with both shapes).
 */
export function loadWeights(
  model: Module,
  file: string,
  opts: LoadWeightsOptions = {},
): { metadata: Record<string, string>; tensors: number } {
  const from = opts.from ?? 'pytorch';
  if (from !== 'pytorch')
    throw new Error(`loadWeights: unknown source format '${String(from)}' (supported: 'pytorch')`);
  const { tensors, metadata } = readSafetensors(file);
  try {
    model.loadStateDict(tensors, { layout: 'pytorch', strict: opts.strict !== false });
  } catch (e) {
    if (e instanceof StateDictError) {
      throw new StateDictError(`loadWeights(${file}): ${e.message}`, e.missing, e.unexpected, e.mismatched);
    }
    throw e;
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
  return { metadata, tensors: tensors.size };
}

/**
 * Write every parameter and buffer of `model` to `file` (official names, PyTorch layouts, float32),
 * atomically (temp file + rename). `metadata` is stored as the safetensors header's string metadata.
 */
export function saveWeights(model: Module, file: string, metadata: Record<string, string> = {}): void {
  const sd = model.stateDict({ layout: 'pytorch' });
  try {
    writeSafetensors(file, sd, { format: 'pt', ...metadata });
  } finally {
    for (const t of sd.values()) t.dispose();
  }
}
