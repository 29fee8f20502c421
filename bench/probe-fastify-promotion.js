/**
 * What a bare Fastify POST route promotes to the old generation: a JSON body answered after 1 ms, at
 * 550 requests/s in an open loop for 12 s over 50 connections, the server in its own process under
 * --trace-gc-nvp. Fastify 5.11's content-type parser wrapped every body callback with
 * AsyncResource.bind and its bound functions were promoted; 5.12 no longer does.
 *
 *   node bench/probe-fastify-promotion.js     # the installed fastify, 5.12.8: 1.1 MB, no mark-compact
 *   (5.11.3: copy this file into an empty folder, `npm i fastify@5.11.3 undici@7` there, run it: 24.8 MB, 3 mark-compacts)
 *
 * (2026-12-01, this machine, over the 12 s of load.)
 */
const { spawn } = require('node:child_process');
const net = require('node:net');

if (process.argv[2] === 'serve') {
  const app = require('fastify')();
  app.post('/chat', async (req) => {
    await new Promise((r) => setTimeout(r, 1));
    return { id: 'x', choices: [{ index: 0, message: { role: 'assistant', content: `ok ${req.body.messages[0].content}` } }] };
  });
  app.listen({ port: Number(process.argv[3]), host: '127.0.0.1' }).then(() => process.stdout.write('listening\n'));
  return;
}

async function main() {
  const port = await new Promise((res) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = s.address();
      s.close(() => res(p));
    });
  });
  const server = spawn(process.execPath, ['--trace-gc-nvp', __filename, 'serve', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  server.stdout.on('data', (d) => (out += d));
  while (!out.includes('listening')) await new Promise((r) => setTimeout(r, 50));
  const mark = out.length;
  const { Pool } = require('undici');
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 50 });
  const rate = 550;
  const total = rate * 12;
  const start = performance.now();
  const inFlight = [];
  for (let i = 0; i < total; i++) {
    const wait = start + (i * 1000) / rate - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: `q ${i} ${Math.random()}` }] });
    inFlight.push(pool.request({ path: '/chat', method: 'POST', headers: { 'content-type': 'application/json' }, body }).then((r) => r.body.text()));
  }
  await Promise.all(inFlight);
  await pool.close();
  server.kill();
  const log = out.slice(mark);
  const promoted = [...log.matchAll(/\bgc=s\b.*?\bpromoted=(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  console.log(JSON.stringify({ fastify: require('fastify/package.json').version, requests: total, promotedMB: Math.round((promoted / 2 ** 20) * 10) / 10, markCompacts: [...log.matchAll(/\bgc=mc\b/g)].length }));
}
void main();
