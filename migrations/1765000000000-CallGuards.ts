import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A paid model call of a job is made once: its guard row is taken (in flight) in the statement
 * that reserves its budget, only while the job's lease is held, and answered (with the answer) in
 * the statement that settles it. A retry of the job finds the answer and reuses it instead of
 * paying again; while the first call is still in flight, a retry waits.
 */
export class CallGuards1765000000000 implements MigrationInterface {
  name = 'CallGuards1765000000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE call_guards (
        tenant_id            uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        key                  text NOT NULL CHECK (length(key) = 64),
        state                text NOT NULL CHECK (state IN ('in_flight', 'answered')),
        token                uuid NOT NULL,
        expires_at           timestamptz NOT NULL,
        provider             text,
        model                text,
        content              text,
        finish_reason        text,
        input_tokens         integer,
        cached_input_tokens  integer,
        output_tokens        integer,
        cost_nanos           bigint CHECK (cost_nanos >= 0),
        created_at           timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, key)
      )`);
    await q.query(`CREATE INDEX call_guards_expiry ON call_guards (expires_at)`);
    await q.query(`ALTER TABLE llm_calls DROP CONSTRAINT IF EXISTS llm_calls_cache_status_check`);
    await q.query(`ALTER TABLE llm_calls ADD CONSTRAINT llm_calls_cache_status_check CHECK (cache_status IN ('hit', 'miss', 'bypass', 'replay'))`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DELETE FROM llm_calls WHERE cache_status = 'replay'`);
    await q.query(`ALTER TABLE llm_calls DROP CONSTRAINT IF EXISTS llm_calls_cache_status_check`);
    await q.query(`ALTER TABLE llm_calls ADD CONSTRAINT llm_calls_cache_status_check CHECK (cache_status IN ('hit', 'miss', 'bypass'))`);
    await q.query(`DROP TABLE call_guards`);
  }
}
