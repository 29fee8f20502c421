/**
 * Builds the console into dist/console: one bundled, minified script and stylesheet and the page
 * that loads them. No CDN: the service serves these files itself and runs without internet.
 * Run by `npm run build` (and by the browser tests); `--watch` rebuilds on change.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { build, context, BuildOptions } from 'esbuild';

export const CONSOLE_OUT = path.resolve(__dirname, '../dist/console');

const options: BuildOptions = {
  entryPoints: { app: path.resolve(__dirname, '../console/src/main.tsx') },
  outdir: CONSOLE_OUT,
  bundle: true,
  // mammoth (.docx) is a chunk of its own, loaded only when a .docx is uploaded
  splitting: true,
  chunkNames: '[name]-[hash]',
  minify: true,
  sourcemap: 'linked',
  format: 'esm',
  target: ['es2020', 'chrome100', 'safari15', 'firefox100'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  platform: 'browser',
  legalComments: 'linked',
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
};

function copyStatic(): void {
  for (const file of fs.readdirSync(path.resolve(__dirname, '../console/public'))) {
    fs.copyFileSync(path.resolve(__dirname, '../console/public', file), path.join(CONSOLE_OUT, file));
  }
}

export async function buildConsole(): Promise<void> {
  fs.rmSync(CONSOLE_OUT, { recursive: true, force: true });
  fs.mkdirSync(CONSOLE_OUT, { recursive: true });
  await build(options);
  copyStatic();
}

if (require.main === module) {
  if (process.argv.includes('--watch')) {
    void (async () => {
      fs.mkdirSync(CONSOLE_OUT, { recursive: true });
      copyStatic();
      const ctx = await context(options);
      await ctx.watch();
      console.log(`watching console/src → ${CONSOLE_OUT}`);
    })();
  } else {
    buildConsole().then(
      () => console.log(`console built → ${path.relative(process.cwd(), CONSOLE_OUT)}`),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  }
}
