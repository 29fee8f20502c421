import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { createDataSource } from '../src/db/data-source';
import { runAtomically } from '../src/db/run-atomically';
import { tenantStatement } from '../src/db/tenant-scope';
import { createTestDatabase, TestDatabase } from './support/test-database';

/**
 * runAtomically pipelines BEGIN, the statements and COMMIT in one round trip: all of them land, or
 * none, the first error is the one thrown, and the connection goes back to the pool usable (on the
 * embedded PostgreSQL too: the suite runs on both).
 */
describe('runAtomically', () => {
  let db: TestDatabase;
  let ds: DataSource;
  const tenantId = randomUUID();

  beforeAll(async () => {
    db = await createTestDatabase({ maxConnections: 2 });
    ds = createDataSource(db.url, 1);
    await ds.initialize();
    await ds.query(`CREATE TABLE atomic_probe (tenant_id uuid NOT NULL, id int PRIMARY KEY, note text NOT NULL)`);
  });
  afterAll(async () => {
    await ds.destroy();
    await db.drop();
  });

  const insert = (id: number, note: string | null) => tenantStatement(tenantId, `INSERT INTO atomic_probe (tenant_id, id, note) VALUES ($1, $2, $3)`, [id, note]);
  const ids = async () => (await ds.query(`SELECT id FROM atomic_probe ORDER BY id`)).map((r: { id: number }) => r.id);

  it('writes every statement', async () => {
    await runAtomically(ds, [insert(1, 'a'), insert(2, 'b')]);
    expect(await ids()).toEqual([1, 2]);
  });

  it('writes none when a later statement fails, throws that error, and leaves the pooled connection usable', async () => {
    await expect(runAtomically(ds, [insert(3, 'c'), insert(4, null)])).rejects.toThrow(/null value in column "note"/);
    await expect(runAtomically(ds, [insert(5, 'e'), insert(1, 'duplicate'), insert(6, 'f')])).rejects.toThrow(/duplicate key/);
    expect(await ids()).toEqual([1, 2]);
    // The pool has one connection: it came back out of the failed transactions, and not pipelined.
    await runAtomically(ds, [insert(7, 'g')]);
    expect(await ids()).toEqual([1, 2, 7]);
    const [{ one }] = await ds.query(`SELECT 1 AS one`);
    expect(one).toBe(1);
    await ds.transaction(async (tx) => {
      await tx.query(`INSERT INTO atomic_probe (tenant_id, id, note) VALUES ($1, 8, 'h')`, [tenantId]);
    });
    expect(await ids()).toEqual([1, 2, 7, 8]);
  });

  it('keeps concurrent transactions apart', async () => {
    const many = Array.from({ length: 20 }, (_, i) => runAtomically(ds, [insert(100 + i, 'x'), insert(200 + i, i % 5 === 0 ? null : 'y')]));
    const results = await Promise.allSettled(many);
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(4);
    const stored = await ids();
    for (let i = 0; i < 20; i++) {
      const written = i % 5 !== 0;
      expect(stored.includes(100 + i)).toBe(written);
      expect(stored.includes(200 + i)).toBe(written);
    }
  });

  it('refuses a statement that does not name its tenant', () => {
    expect(() => tenantStatement(tenantId, `INSERT INTO atomic_probe (id, note) VALUES ($2, $3)`, [7, 'g'])).toThrow(/tenant/);
  });
});
