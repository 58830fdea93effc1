/**
 * Rich output to a tslab (Jupyter) notebook: detecting the kernel, and sending ONE `display_data`
 * message that carries several MIME types at once (e.g. `text/html` for classic Notebook and HTML
 * export, plus `application/vnd.plotly.v1+json` for JupyterLab / VS Code).
 *
 * Why not `tslab.display.raw`: it sends a single MIME type per message (tslab 1.0.22 dist/public.js,
 * `DisplayImpl.raw` builds `{data: {[contentType]: b}}`), so two calls would make two outputs and a
 * front-end would render both. The function `display.raw` hands its message to is the module-level
 * `lastWriteDisplayData` of tslab's dist/jupyter.js (set per executed cell); we find that module in
 * Node's require cache, which avoids loading tslab (and its TypeScript) outside a notebook.
 * If it cannot be found (a future tslab), we fall back to one `display.raw` call per MIME type.
 */

/** A Jupyter MIME bundle: MIME type → payload (string, or a JSON object for `+json` types). */
export type MimeBundle = Record<string, unknown>;

type WriteDisplayData = (msg: { data: MimeBundle; metadata: object; transient?: object }, update: boolean) => void;

/** True inside a tslab kernel cell (tslab's executor defines `globalThis.__tslab__`). */
export function inTslab(): boolean {
  return (globalThis as { __tslab__?: unknown }).__tslab__ !== undefined;
}

/** The kernel's current display writer, or null outside a running cell. */
function findWriteDisplayData(): WriteDisplayData | null {
  for (const [file, mod] of Object.entries(require.cache)) {
    if (!/[\\/]tslab[\\/]dist[\\/]jupyter\.js$/.test(file) || !mod) continue;
    const write = (mod.exports as { lastWriteDisplayData?: WriteDisplayData | null }).lastWriteDisplayData;
    if (typeof write === 'function') return write;
  }
  return null;
}

/**
 * Show `bundle` as one notebook output. Returns false (and shows nothing) outside tslab.
 * Payloads for `application/...+json` types must be objects, not JSON strings (renderers reject strings).
 */
export function displayBundle(bundle: MimeBundle): boolean {
  if (!inTslab()) return false;
  const write = findWriteDisplayData();
  if (write) {
    write({ data: bundle, metadata: {}, transient: {} }, false);
    return true;
  }
  // Fallback: one output per MIME type through the public API (renders twice in rich front-ends).
  const tslab = require('tslab') as { display: { raw(type: string, b: unknown): void } };
  for (const [type, payload] of Object.entries(bundle)) tslab.display.raw(type, payload);
  return true;
}
