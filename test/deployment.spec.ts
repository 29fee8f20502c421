import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The service starts the same way from `npm start` and from the image: the same node flags (the
 * heap cap, V8's worker threads, bytecode kept through quiet spells), so what the benchmarks
 * measure (they run npm start's) is what the image ships.
 */
describe('deployment: npm start and the image run the service alike', () => {
  const root = path.resolve(__dirname, '..');
  const start = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start.split(/\s+/);
  const cmdLine = fs
    .readFileSync(path.join(root, 'Dockerfile'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith('CMD '));
  const cmd = JSON.parse(cmdLine!.slice('CMD '.length)) as string[];

  it('runs node on the built entry point in both', () => {
    expect(start[0]).toBe('node');
    expect(cmd[0]).toBe('node');
    expect(start[start.length - 1]).toBe('dist/src/main.js');
    expect(cmd[cmd.length - 1]).toBe('dist/src/main.js');
  });

  it('passes node the same flags in both', () => {
    const flags = (argv: string[]) => argv.filter((a) => a.startsWith('--'));
    expect(flags(start).length).toBeGreaterThan(0);
    expect(flags(cmd)).toEqual(flags(start));
  });

  it('passes flags this Node accepts (a misspelt V8 flag stops the process before it starts)', () => {
    const flags = start.filter((a) => a.startsWith('--'));
    const run = spawnSync(process.execPath, [...flags, '-e', 'process.exit(0)'], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });
});
