/**
 * The least a Node gateway on Inkstone's stack can do (bench/peers.ts, the floor row): Fastify takes
 * the chat request and parses its JSON, undici forwards it to the upstream over a keep-alive pool,
 * the answer is parsed and sent back. No auth, limits, budget, ledger, cache, routing or logging.
 * Whatever it adds over the upstream's own latency is what the machine (two cores shared with
 * PostgreSQL, the upstream and the load generator) charges any gateway before it does any work.
 *
 *   node bench/lib/bare-forwarder.js <port> <upstream url>
 */
'use strict';
const Fastify = require('fastify');
const { Pool } = require('undici');

const [port, upstream] = [Number(process.argv[2]), process.argv[3]];
const pool = new Pool(upstream, { connections: 64 });
const app = Fastify({ logger: false });

app.get('/', async () => 'ok');
app.post('/v1/chat/completions', async (req, reply) => {
  const res = await pool.request({
    path: '/v1/chat/completions',
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: req.headers.authorization ?? '' },
    body: JSON.stringify(req.body),
  });
  const answer = await res.body.json();
  return reply.code(res.statusCode).send(answer);
});

app.listen({ port, host: '127.0.0.1' }).catch((err) => {
  console.error(err);
  process.exit(1);
});
