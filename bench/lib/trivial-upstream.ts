import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The cheapest OpenAI-compatible upstream there is: every POST whose path ends in
 * /chat/completions gets the same small completion, with usage, at once. Used to measure what a
 * gateway adds (bench/peers.ts): anything slower in front of it is the gateway's own cost.
 */
export async function startTrivialUpstream(port = 0): Promise<{ url: string; close(): Promise<void>; requests(): number }> {
  let count = 0;
  const answer = (model: string) =>
    JSON.stringify({
      id: 'chatcmpl-trivial',
      object: 'chat.completion',
      created: 1_764_000_000,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: '多读书，使人明理。' }, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: 24, completion_tokens: 9, total_tokens: 33 },
    });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/health') {
        res.writeHead(200).end('ok');
        return;
      }
      if (req.method === 'GET' && req.url === '/count') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ requests: count }));
        return;
      }
      if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
        res.writeHead(404).end();
        return;
      }
      count++;
      let model = 'trivial';
      try {
        model = String((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { model?: string }).model ?? model);
      } catch {
        // the answer does not depend on it
      }
      const body = answer(model);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => count,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// Run by itself (its own process, so it shares no event loop with the load generator).
if (require.main === module) {
  const port = Number(process.argv[process.argv.indexOf('--port') + 1]);
  void startTrivialUpstream(port).then((u) => process.stdout.write(`${u.url}\n`));
}
