// Bundles the dashboard: node ui/build.mjs <node_modules dir> <out dir>.
// esbuild (pinned in package-lock.json) bundles src/main.js with Preact, htm and uPlot into
// <out>/assets/<name>-<hash>.{js,css}; index.html is written last, naming those files, so a
// half-finished build never has a page pointing at missing bundles. No network is used.
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const [nodeModules, outDir] = process.argv.slice(2);
if (!nodeModules || !outDir) {
  console.error('usage: node build.mjs <node_modules dir> <out dir>');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const esbuild = createRequire(join(nodeModules, 'x.js'))('esbuild');

rmSync(join(outDir, 'assets'), { recursive: true, force: true });
mkdirSync(join(outDir, 'assets'), { recursive: true });
const result = await esbuild.build({
  entryPoints: [join(here, 'src/main.js')],
  nodePaths: [nodeModules],
  bundle: true,
  minify: true,
  sourcemap: false,
  format: 'esm',
  target: ['es2020'],
  outdir: join(outDir, 'assets'),
  entryNames: '[name]-[hash]',
  metafile: true,
  logLevel: 'warning',
});
const outputs = Object.keys(result.metafile.outputs).map((p) => relative(outDir, p));
const js = outputs.find((p) => p.endsWith('.js'));
const css = outputs.find((p) => p.endsWith('.css'));
const page = readFileSync(join(here, 'src/index.html'), 'utf8')
  .replace('%CSS%', css ? `<link rel="stylesheet" href="${css}">` : '')
  .replace('%JS%', `<script type="module" src="${js}"></script>`);
writeFileSync(join(outDir, 'index.html.tmp'), page);
renameSync(join(outDir, 'index.html.tmp'), join(outDir, 'index.html'));
console.log(`dashboard: ${outputs.join(', ')}, index.html -> ${outDir}`);
