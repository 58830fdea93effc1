/**
 * Headless Chromium driven over the DevTools protocol through `--remote-debugging-pipe` (no websocket and no
 * dependency): Chromium reads commands on fd 3 and writes replies and events on fd 4, one JSON message per
 * NUL-terminated chunk (https://chromedevtools.github.io/devtools-protocol/). One page, one flat session.
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Readable, Writable } from 'stream';
import { headlessFlags } from '../../lib/report/figure-png';

type Json = Record<string, unknown>;

export class ChromiumPage {
  private nextId = 1;
  private pending = new Map<number, { resolve: (v: Json) => void; reject: (e: Error) => void; method: string }>();
  private sessionId = '';
  /** Console messages and uncaught exceptions of the page, for failure messages. */
  readonly log: string[] = [];

  private constructor(
    private readonly proc: ChildProcess,
    private readonly input: Writable,
    private readonly profile: string,
  ) {}

  static async launch(chromium: string, opts: { width?: number; height?: number } = {}): Promise<ChromiumPage> {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-cdp-'));
    const proc = spawn(
      chromium,
      [
        ...headlessFlags(),
        '--remote-debugging-pipe',
        `--user-data-dir=${profile}`,
        `--window-size=${opts.width ?? 1000},${opts.height ?? 800}`,
        'about:blank',
      ],
      // Its own process group, so that close() ends Chromium's helper processes (zygote, renderer) with it.
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], detached: true },
    );
    const page = new ChromiumPage(proc, proc.stdio[3] as Writable, profile);
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    let buffered = '';
    (proc.stdio[4] as Readable).on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      let end: number;
      while ((end = buffered.indexOf('\0')) >= 0) {
        page.receive(JSON.parse(buffered.slice(0, end)) as Json);
        buffered = buffered.slice(end + 1);
      }
    });
    proc.on('exit', (code) => {
      for (const p of page.pending.values())
        p.reject(new Error(`chromium exited (${code}) during ${p.method}: ${stderr}`));
      page.pending.clear();
    });
    const { targetId } = (await page.send('Target.createTarget', { url: 'about:blank' }, false)) as {
      targetId: string;
    };
    const { sessionId } = (await page.send('Target.attachToTarget', { targetId, flatten: true }, false)) as {
      sessionId: string;
    };
    page.sessionId = sessionId;
    await page.send('Runtime.enable');
    await page.send('Page.enable');
    return page;
  }

  private receive(msg: Json): void {
    if (typeof msg.id === 'number') {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${p.method}: ${JSON.stringify(msg.error)}`));
      else p.resolve((msg.result ?? {}) as Json);
      return;
    }
    const params = (msg.params ?? {}) as Json;
    if (msg.method === 'Runtime.consoleAPICalled') {
      const args = (params.args as Array<{ value?: unknown; description?: string }>) ?? [];
      this.log.push(`console.${params.type}: ${args.map((a) => a.value ?? a.description).join(' ')}`);
    } else if (msg.method === 'Runtime.exceptionThrown') {
      const d = params.exceptionDetails as { text?: string; exception?: { description?: string } };
      this.log.push(`exception: ${d.exception?.description ?? d.text}`);
    }
  }

  /** Send a protocol command (to the page's session unless `inSession` is false) and await its result. */
  send(method: string, params: Json = {}, inSession = true): Promise<Json> {
    const id = this.nextId++;
    const msg: Json = { id, method, params };
    if (inSession) msg.sessionId = this.sessionId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.input.write(JSON.stringify(msg) + '\0');
    });
  }

  /** Evaluate an expression in the page (promises awaited) and return its JSON value. */
  async evaluate<T>(expression: string): Promise<T> {
    const r = (await this.send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true })) as {
      result: { value?: T };
      exceptionDetails?: { text: string; exception?: { description?: string } };
    };
    if (r.exceptionDetails) {
      throw new Error(`page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    }
    return r.result.value as T;
  }

  /** Poll `expression` until it is truthy (returns its value) or `timeoutMs` passes (throws with `what`). */
  async waitFor<T>(expression: string, what: string, timeoutMs = 60_000): Promise<T> {
    const t0 = Date.now();
    for (;;) {
      // While the page loads, document.body may not exist yet: errors count as "not yet".
      const v = await this.evaluate<T>(`(() => { try { return (${expression}); } catch { return undefined; } })()`);
      if (v) return v;
      if (Date.now() - t0 > timeoutMs) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; page log:\n${this.log.join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async navigate(url: string): Promise<void> {
    await this.send('Page.navigate', { url });
  }

  /** Set the files of the <input type=file> matched by `selector` (fires its change event). */
  async setFiles(selector: string, files: string[]): Promise<void> {
    const { root } = (await this.send('DOM.getDocument', { depth: 0 })) as { root: { nodeId: number } };
    const { nodeId } = (await this.send('DOM.querySelector', { nodeId: root.nodeId, selector })) as { nodeId: number };
    if (!nodeId) throw new Error(`no element matches ${selector}`);
    await this.send('DOM.setFileInputFiles', { nodeId, files: files.map((f) => path.resolve(f)) });
  }

  /** PNG of the page (the viewport, or the full page when `fullPage`). */
  async screenshot(opts: { fullPage?: boolean } = {}): Promise<Buffer> {
    const { data } = (await this.send('Page.captureScreenshot', {
      format: 'png',
      captureBeyondViewport: Boolean(opts.fullPage),
    })) as { data: string };
    return Buffer.from(data, 'base64');
  }

  async close(): Promise<void> {
    try {
      await Promise.race([this.send('Browser.close', {}, false), new Promise((r) => setTimeout(r, 2000))]);
    } catch {
      /* already gone */
    }
    if (this.proc.exitCode === null) {
      const exited = new Promise((r) => this.proc.once('exit', r));
      this.proc.kill('SIGKILL');
      await exited;
    }
    try {
      process.kill(-this.proc.pid!, 'SIGKILL'); // helpers left behind by the browser process
    } catch {
      /* the group is gone */
    }
    // A helper may still be writing the profile for a moment; a leftover temp folder is no test failure.
    try {
      fs.rmSync(this.profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    } catch (e) {
      console.warn(`chromium-cdp: could not remove ${this.profile}: ${(e as Error).message}`);
    }
  }
}
