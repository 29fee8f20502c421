import { Client } from 'pg';
import { startEmbeddedChild, TestDatabase } from './support/test-database';

/**
 * The embedded PostgreSQL has one backend session for all connections. Concurrent clients mixing
 * transactions with the extended query protocol must still each get their own answers.
 */
describe('embedded PostgreSQL under concurrent connections', () => {
  let db: TestDatabase;
  const clients: Client[] = [];

  beforeAll(async () => {
    db = await startEmbeddedChild('-', 10);
    for (let i = 0; i < 8; i++) {
      const c = new Client({ connectionString: db.url });
      await c.connect();
      clients.push(c);
    }
    await clients[0].query('CREATE TABLE counters (client int, n int)');
  });
  afterAll(async () => {
    for (const c of clients) await c.end();
    await db.drop();
  });

  it('keeps each client’s statements and transactions apart', async () => {
    const wrong: string[] = [];
    await Promise.all(
      clients.map(async (c, ci) => {
        for (let i = 0; i < 40; i++) {
          if (i % 3 === 0) {
            await c.query('BEGIN');
            await c.query('INSERT INTO counters VALUES ($1, $2)', [ci, i]);
            const r = await c.query('SELECT count(*)::int AS n FROM counters WHERE client = $1', [ci]);
            if (r.rows[0].n !== Math.floor(i / 3) + 1) wrong.push(`client ${ci} saw ${r.rows[0].n} of its rows at step ${i}`);
            await c.query(i % 2 ? 'ROLLBACK' : 'COMMIT');
            if (i % 2) await c.query('INSERT INTO counters VALUES ($1, $2)', [ci, i]);
          } else {
            const r = await c.query(ci % 2 ? 'SELECT $1::int * 2 AS v' : "SELECT $1::text || '!' AS v", [ci % 2 ? i : `c${ci}-${i}`]);
            const want = ci % 2 ? i * 2 : `c${ci}-${i}!`;
            if (r.rows[0].v !== want) wrong.push(`client ${ci} got ${r.rows[0].v}, wanted ${want}`);
          }
        }
      }),
    );
    expect(wrong).toEqual([]);
    const r = await clients[0].query('SELECT client, count(*)::int AS n FROM counters GROUP BY client ORDER BY client');
    expect(r.rows).toEqual(clients.map((_, ci) => ({ client: ci, n: 14 })));
  });
});
