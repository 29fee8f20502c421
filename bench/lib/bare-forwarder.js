/**
 * The least a Node gateway on Inkstone's stack can do (bench/peers.ts, the floor row): Fastify takes
 * the chat request and parses its JSON, undici forwards it to the upstream over a keep-alive pool,
 * the answer is parsed and sent back. No auth, limits, budget, ledger, cache, routing or logging.
 * Whatever it adds over the upstream's own latency is what the machine (two cores shared with
 * PostgreSQL, the upstream and the load generator) charges any gateway before it does any work.
 *
 * With a database URL as a third argument (bench/probe-floor.ts), each answer leaves only after one
 * row about the call is committed to PostgreSQL (an INSERT a call, on a pool of 10): the least a
 * gateway that keeps a durable ledger pays. With `group` as a fourth, the rows go by group commit as
 * Inkstone's ledger rows do: one multi-row INSERT at a time, of every row that arrived while the
 * last one ran.
 *
 *   node bench/lib/bare-forwarder.js <port> <upstream url> [<database url> [group]]
 */
'use strict';
const Fastify = require('fastify');
const { Pool } = require('undici');

const [port, upstream, databaseUrl, mode] = [Number(process.argv[2]), process.argv[3], process.argv[4], process.argv[5]];
const pool = new Pool(upstream, { connections: 64 });
const db = databaseUrl ? new (require('pg').Pool)({ connectionString: databaseUrl, max: 10 }) : null;
const app = Fastify({ logger: false });

/** Group commit: rows wait while a statement runs and go together in the next. */
let queue = [];
let busy = false;
function flush() {
  if (!queue.length) return void (busy = false);
  const batch = queue;
  queue = [];
  db.query('INSERT INTO floor_calls (model, tokens) SELECT * FROM unnest($1::text[], $2::int[])', [batch.map((b) => b.model), batch.map((b) => b.tokens)]).then(
    () => batch.forEach((b) => b.resolve()),
    (err) => batch.forEach((b) => b.reject(err)),
  ).finally(flush);
}
function record(model, tokens) {
  if (mode !== 'group') return db.query('INSERT INTO floor_calls (model, tokens) VALUES ($1, $2)', [model, tokens]);
  return new Promise((resolve, reject) => {
    queue.push({ model, tokens, resolve, reject });
    if (!busy) {
      busy = true;
      setImmediate(flush);
    }
  });
}

app.get('/', async () => 'ok');
app.post('/v1/chat/completions', async (req, reply) => {
  const res = await pool.request({
    path: '/v1/chat/completions',
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: req.headers.authorization ?? '' },
    body: JSON.stringify(req.body),
  });
  const answer = await res.body.json();
  if (db) await record(answer.model ?? '', answer.usage?.total_tokens ?? 0);
  return reply.code(res.statusCode).send(answer);
});

(db ? db.query('CREATE TABLE IF NOT EXISTS floor_calls (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), model text NOT NULL, tokens int NOT NULL)') : Promise.resolve())
  .then(() => app.listen({ port, host: '127.0.0.1' }))
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
