import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The answer cache's index (src/llm/cache-index.ts): every instance keeps a filter of the keys in
 * llm_cache, so that a key no instance stored is answered "not cached" without a database
 * lookup, and learns the keys other instances store by reading the rows written since its last
 * look. `stored_xid` is the transaction that wrote (or rewrote) a row; a reader that asks for the
 * rows of transactions at or after the oldest one still running at its last look misses none,
 * whatever order they commit in.
 *
 * Rows already there keep a null `stored_xid`: an instance reads every live key when it builds
 * its filter, so they need none, and the column is added without rewriting the table.
 */
export class CacheIndex1766900000000 implements MigrationInterface {
  name = 'CacheIndex1766900000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE llm_cache ADD COLUMN stored_xid xid8`);
    await q.query(`ALTER TABLE llm_cache ALTER COLUMN stored_xid SET DEFAULT pg_current_xact_id()`);
    await q.query(`CREATE INDEX llm_cache_stored_xid_idx ON llm_cache (stored_xid)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX llm_cache_stored_xid_idx`);
    await q.query(`ALTER TABLE llm_cache DROP COLUMN stored_xid`);
  }
}
