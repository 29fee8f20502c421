import { ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');

export interface ServiceProcess {
  child: ChildProcess;
  url: string;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Runs src/main.ts as its own process, exactly as `npm start` would run the build. */
export function runService(env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'src/main.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TS_NODE_PROJECT: path.join(ROOT, 'tsconfig.json'), ...env },
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
