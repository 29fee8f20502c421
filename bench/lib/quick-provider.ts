/**
 * A minimal OpenAI-compatible chat provider for benchmarks whose subject is the service, not the
 * provider: it answers every chat completion at once — a grading prompt with a valid grade (the
 * fake provider's own grader, test/fake-provider/grading-responder.ts), anything else with "OK." —
 * and reports usage from character counts (a fifth of the characters, under any of Inkstone's
 * estimates) instead of tokenizing. The full fake provider counts o200k tokens with js-tiktoken,
 * whose byte-pair merge is quadratic on long pieces (20,000 spaces, a 200,000-letter word), which
 * would make a hostile-input benchmark measure the fake provider.
 *
 * Runs as a process of its own: `startQuickProvider()` spawns this file and waits for it.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as http from 'node:http';
import * as path from 'node:path';
import { gradingAnswer } from '../../test/fake-provider/grading-responder';
import { freePort, ROOT, sleep } from './harness';

export interface QuickProvider {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

function serve(port: number): void {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/health') {
      res.writeHead(200).end('ok');
      return;
    }
    if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: { model?: string; messages?: Array<{ role: string; content: string }> };
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":{"message":"bad json"}}');
        return;
      }
      const messages = Array.isArray(body.messages) ? body.messages : [];
      const content = gradingAnswer(messages) ?? 'OK.';
      const chars = messages.reduce((n, m) => n + (typeof m.content === 'string' ? m.content.length : 0), 0);
      const prompt = Math.ceil(chars / 5);
      const completion = Math.ceil(content.length / 5);
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          id: `chatcmpl-${Date.now()}`,
          object: 'chat.completion',
          created: Math.floor(Date.now() / 1000),
          model: body.model ?? 'quick',
          choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
          usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
        }),
      );
    });
  });
  server.listen(port, '127.0.0.1');
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

export async function startQuickProvider(): Promise<QuickProvider> {
  const port = await freePort();
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'bench/lib/quick-provider.ts', String(port)], {
    cwd: ROOT,
    env: { ...process.env, TS_NODE_PROJECT: path.join(ROOT, 'tsconfig.json') },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error('the quick provider exited');
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  return {
    url,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

if (require.main === module) serve(Number(process.argv[2]));
