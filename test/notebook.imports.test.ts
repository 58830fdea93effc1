/**
 * Every lib/ module must load inside the tslab kernel, not only under tsx.
 *
 * tslab compiles the local .ts modules a notebook imports and serves them from memory. Its require hook
 * (tslab 1.0.22 dist/executor.js `requireFromSideOutputs`) joins EVERY specifier to the importing file's
 * folder, adds `.js`, and serves that compiled module if there is one; only otherwise does Node's require
 * run. Two ways this goes wrong although tsx is happy:
 *   1. a folder import (`from '../nn'`, meaning `../nn/index.ts`): no `../nn.js`, and Node's require cannot
 *      load .ts, so "Cannot find module" -- name the file: `'../nn/index'`;
 *   2. a bare specifier equal to a sibling file's name: in lib/util/fs.ts, `import 'fs'` gets lib/util/fs.ts
 *      itself (endless recursion); in lib/backend/webgpu.ts, `require('webgpu')` gets that file instead of
 *      the npm package -- write `node:fs`, or rename the file;
 *   3. a top-level declaration of a name the CommonJS wrapper already binds (`let module`, `const require`,
 *      `exports`, `__filename`, `__dirname`): tslab hands the compiled file to Module._compile, the CJS parse
 *      fails, and Node 20.19 retries it as an ES module -- "exports is not defined in ES module scope".
 * This test transpiles each lib file as the kernel would (imports used only as types are erased, so they
 * are fine) and checks every `require` left in the output against the files beside it.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { builtinModules, wrap } from 'node:module';
import * as path from 'node:path';
import { test } from 'node:test';
import * as vm from 'node:vm';
import * as ts from 'typescript';

const ROOT = path.resolve(__dirname, '..');

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return tsFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** Module specifiers that survive transpilation (runtime imports, re-exports, require calls). */
export function runtimeImports(source: string): string[] {
  const js = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  }).outputText;
  return [...js.matchAll(/\brequire\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]);
}

/** Why `spec`, imported from `file`, would not load in tslab (undefined when it would). */
function tslabProblem(file: string, spec: string): string | undefined {
  const rel = path.relative(ROOT, file);
  const base = path.resolve(path.dirname(file), spec);
  if (!spec.startsWith('.')) {
    // tslab looks for `<folder of file>/<spec>.js` first: a sibling .ts of that name shadows the package.
    const shadow = path.extname(spec) === '' ? base + '.ts' : base.replace(/\.js$/, '.ts');
    if (spec !== 'tslab' && shadow.endsWith('.ts') && fs.existsSync(shadow)) {
      const fix = builtinModules.includes(spec) ? `import it as 'node:${spec}'` : 'rename the file';
      return `${rel}: '${spec}' resolves to ${path.relative(ROOT, shadow)} inside tslab, not the package; ${fix}`;
    }
    return undefined;
  }
  if (path.extname(spec) !== '') return undefined; // explicit extension (.json): Node's own require loads it
  if (fs.existsSync(base + '.ts')) return undefined;
  if (fs.existsSync(path.join(base, 'index.ts'))) {
    return `${rel}: '${spec}' is a folder; tslab cannot load it at run time, import '${spec}/index' instead`;
  }
  return `${rel}: '${spec}' does not resolve to a .ts file`;
}

test('type-only imports are erased; value imports, re-exports and require calls remain', () => {
  const src = [
    "import type { A } from './types';",
    "import { B } from './used-as-type-only';",
    "import { C } from './used';",
    "import * as fs from 'node:fs';",
    "export * from './reexported';",
    'let b: B; export const c = C; export const f = fs.existsSync;',
    "const lazy = require('./lazy');",
  ].join('\n');
  assert.deepEqual(runtimeImports(src).sort(), ['./lazy', './reexported', './used', 'node:fs']);
});

test('a sibling named like a package shadows it; a folder import is caught', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-imports-test-'));
  try {
    for (const f of ['fs.ts', 'user.ts', 'sub/index.ts']) {
      fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
      fs.writeFileSync(path.join(dir, f), '');
    }
    const user = path.join(dir, 'user.ts');
    assert.match(tslabProblem(user, 'fs') ?? '', /'fs' resolves to .*fs\.ts inside tslab.*'node:fs'/);
    assert.equal(tslabProblem(user, 'node:fs'), undefined);
    assert.equal(tslabProblem(user, 'path'), undefined);
    assert.match(tslabProblem(user, './sub') ?? '', /'\.\/sub' is a folder.*'\.\/sub\/index'/);
    assert.equal(tslabProblem(user, './sub/index'), undefined);
    assert.match(tslabProblem(user, './missing') ?? '', /does not resolve/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('every runtime import inside lib/ loads in the tslab kernel', () => {
  const problems: string[] = [];
  for (const file of tsFiles(path.join(ROOT, 'lib'))) {
    for (const spec of runtimeImports(fs.readFileSync(file, 'utf8'))) {
      const p = tslabProblem(file, spec);
      if (p) problems.push(p);
    }
  }
  assert.deepEqual(problems, [], '\n' + problems.join('\n'));
});

/** The SyntaxError the CommonJS wrapper raises for `source` compiled as tslab does (ESNext, then CommonJS), if any. */
export function commonJsProblem(source: string): string | undefined {
  const opts = { target: ts.ScriptTarget.ES2022, esModuleInterop: true };
  const esm = ts.transpileModule(source, { compilerOptions: { ...opts, module: ts.ModuleKind.ESNext } }).outputText;
  const cjs = ts.transpileModule(esm, {
    fileName: 'side.js',
    compilerOptions: { ...opts, module: ts.ModuleKind.CommonJS },
  });
  try {
    new vm.Script(wrap(cjs.outputText));
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

test('a top-level name the CommonJS wrapper binds is caught', () => {
  assert.match(
    commonJsProblem('let module: object | undefined;\nexport const x = 1;') ?? '',
    /'module' has already been declared/,
  );
  assert.equal(commonJsProblem('let compiledModule: object | undefined;\nexport const x = 1;'), undefined);
});

test('every lib/ file compiles inside the CommonJS wrapper tslab runs it in', () => {
  const problems: string[] = [];
  for (const file of tsFiles(path.join(ROOT, 'lib'))) {
    const p = commonJsProblem(fs.readFileSync(file, 'utf8'));
    if (p) problems.push(`${path.relative(ROOT, file)}: ${p}`);
  }
  assert.deepEqual(problems, [], '\n' + problems.join('\n'));
});
