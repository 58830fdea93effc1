/**
 * Where status lines (cache building, download progress) go: stderr in a terminal or a log, so that a CLI's
 * stdout stays for its results; stdout inside a notebook kernel, where stderr renders as pink warning boxes.
 * (tslab's executor defines `globalThis.__tslab__`; lib/report/tslab.ts `inTslab` is the same test, but lib/util
 * imports nothing above it.)
 */
export function statusStream(): NodeJS.WriteStream {
  return (globalThis as { __tslab__?: unknown }).__tslab__ !== undefined ? process.stdout : process.stderr;
}
