import { ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');

/**
 * The server key test processes seal webhook secrets with (INKSTONE_SECRET_KEY, 32 bytes in hex):
 * the in-process test apps and the processes started here share it, as the instances of one
 * install do. A fixed, public value: for tests only.
 */
export const TEST_SECRET_KEY = '7e57'.repeat(16);

export interface ServiceProcess {
  child: ChildProcess;
  url: string;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Runs src/main.ts as its own process, exactly as `npm start` would run the build. With
 * DATABASE_URL set it gets TEST_SECRET_KEY unless `env` names INKSTONE_SECRET_KEY itself (as ''
 * to leave it unset); without, the embedded default makes its own key file.
 */
export function runService(env: NodeJS.ProcessEnv): ChildProcess {
  const key = env.DATABASE_URL && !('INKSTONE_SECRET_KEY' in env) ? { INKSTONE_SECRET_KEY: TEST_SECRET_KEY } : {};
  return spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'src/main.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TS_NODE_PROJECT: path.join(ROOT, 'tsconfig.json'), ...key, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export function collect(child: ChildProcess): () => string {
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return () => out;
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

export function exited(child: ChildProcess): Promise<number | null> {
  if (hasExited(child)) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Starts the service and waits until /health answers 200. */
export async function startService(env: NodeJS.ProcessEnv, port: number, timeoutMs = 60_000): Promise<ServiceProcess> {
  const child = runService({ ...env, PORT: String(port), HOST: '127.0.0.1' });
  const output = collect(child);
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (hasExited(child)) throw new Error(`service exited with ${child.exitCode ?? child.signalCode}:\n${output()}`);
    try {
      const res = await fetch(`${url}/health`);
      if (res.status === 200) break;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  if (Date.now() >= until) {
    child.kill('SIGKILL');
    throw new Error(`service did not become healthy:\n${output()}`);
  }
  return {
    child,
    url,
    output,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      const done = exited(child);
      child.kill(signal);
      return done;
    },
  };
}

export function freePort(): Promise<number> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const net = require('node:net') as typeof import('node:net');
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as import('node:net').AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
