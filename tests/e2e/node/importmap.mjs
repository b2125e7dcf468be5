#!/usr/bin/env node
// Prints what a browser page needs to load `ai` straight from node_modules as ES modules, with
// no bundler, as one JSON object {importMap, modules}:
//   importMap: every bare specifier `ai`'s module graph imports, resolved as a bundler resolves
//     it for the browser (the "browser" export condition first), as a path under
//     /node_modules/ (a specifier resolving differently per importer goes into `scopes`);
//   modules: ES module wrappers, by path under /cjs/, for the CommonJS files of the graph
//     (browsers load only ES modules): each runs the file in the usual CommonJS function
//     (exports, require, module), its `require` returning its wrapped dependencies, then
//     exports what the file exported (the names as Node finds them when it requires it).
// The tests/e2e browser tests serve node_modules at /node_modules/ and `modules` at /cjs/.
//
// Usage: node importmap.mjs [package ...]   (default: ai)
//
// The module graph is the one Node loads for `import(package)`: hooks on Node's loader thread
// report each bare specifier (with its importer and target) and each file's format.

import { readFileSync, realpathSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel } from 'node:worker_threads';

const HOOKS = `
const seen = { specifiers: [], formats: {} };
export function initialize({ port }) {
  port.on('message', () => port.postMessage(seen));
}
export async function resolve(specifier, context, nextResolve) {
  const conditions = ['browser', ...context.conditions.filter(c => c !== 'node')];
  const result = await nextResolve(specifier, { ...context, conditions });
  if (!/^(\\.|\\/|[a-z]+:)/.test(specifier)) {
    seen.specifiers.push({ specifier, parent: context.parentURL, url: result.url });
  }
  return result;
}
export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context);
  seen.formats[url] = result.format;
  return result;
}
`;

const { port1, port2 } = new MessageChannel();
register(`data:text/javascript,${encodeURIComponent(HOOKS)}`, {
  data: { port: port2 },
  transferList: [port2],
});
const packages = process.argv.slice(2);
for (const name of packages.length ? packages : ['ai']) await import(name);
const seen = await new Promise(resolve => {
  port1.once('message', resolve);
  port1.postMessage('report');
});
port1.close();

const NODE_MODULES = pathToFileURL(realpathSync(new URL('./node_modules', import.meta.url))).href;
const relative = url => {
  if (!url.startsWith(`${NODE_MODULES}/`)) throw new Error(`${url} is outside node_modules`);
  return url.slice(NODE_MODULES.length + 1);
};
const packageRoot = url => {
  const [first, second] = relative(url).split('/');
  return `/node_modules/${first.startsWith('@') ? `${first}/${second}` : first}/`;
};

const modules = {};
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** The path a browser loads `url` from: the file itself, or the wrapper of a CommonJS file. */
function served(url) {
  return seen.formats[url] === 'commonjs' ? wrap(fileURLToPath(url)) : `/node_modules/${relative(url)}`;
}

function wrap(file) {
  const path = `/cjs/${relative(pathToFileURL(file).href)}`;
  if (path in modules) return path;
  modules[path] = null; // a cycle comes back here: its wrapper is being written
  const local = createRequire(file);
  const source = readFileSync(file, 'utf8');
  const ids = [...new Set([...source.matchAll(/\brequire\(\s*["']([^"']+)["']\s*\)/g)].map(m => m[1]))];
  const deps = ids.map((id, index) => {
    const target = local.resolve(id);
    return { id, name: `__cjsDep${index}`, path: target.endsWith('.json') ? null : wrap(target) };
  });
  const names = Object.keys(local(file)).filter(name => IDENTIFIER.test(name) && name !== 'default');
  const imported = deps.filter(dep => dep.path);
  modules[path] = [
    ...imported.map(dep => `import ${dep.name} from ${JSON.stringify(dep.path)};`),
    `const __cjsDeps = { ${imported.map(dep => `${JSON.stringify(dep.id)}: ${dep.name}`).join(', ')} };`,
    'const __cjsModule = { exports: {} };',
    '(function (exports, require, module) {',
    source,
    '})(__cjsModule.exports, id => {',
    '  if (id in __cjsDeps) return __cjsDeps[id];',
    '  throw new Error(`Cannot require ${id}`);',
    '}, __cjsModule);',
    'export default __cjsModule.exports;',
    ...names.map((name, index) => `const __cjsName${index} = __cjsModule.exports[${JSON.stringify(name)}]; export { __cjsName${index} as ${name} };`),
  ].join('\n');
  return path;
}

const bySpecifier = new Map();
for (const { specifier, parent, url } of seen.specifiers) {
  if (!bySpecifier.has(specifier)) bySpecifier.set(specifier, []);
  bySpecifier.get(specifier).push({ parent, url });
}
const importMap = { imports: {}, scopes: {} };
for (const [specifier, uses] of bySpecifier) {
  if (new Set(uses.map(use => use.url)).size === 1) {
    importMap.imports[specifier] = served(uses[0].url);
    continue;
  }
  for (const { parent, url } of uses) {
    if (!parent.startsWith(`${NODE_MODULES}/`)) continue; // the entry's own: in `imports`
    (importMap.scopes[packageRoot(parent)] ??= {})[specifier] = served(url);
  }
}
process.stdout.write(`${JSON.stringify({ importMap, modules })}\n`);
