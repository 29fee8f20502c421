import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Console sign-out ends the session on the server: the signed session cookie names a random id,
 * and a signed-out id is kept here until the session would have expired, so a copy of the cookie
 * taken before the sign-out is refused. Before, sign-out only cleared the cookie in the browser.
 */
export class ConsoleSessionsEnded1768000000000 implements MigrationInterface {
  name = 'ConsoleSessionsEnded1768000000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE console_sessions_ended (
        tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        session_id  text NOT NULL,
        expires_at  timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, session_id)
      )`);
    await q.query(`CREATE INDEX console_sessions_ended_expiry_idx ON console_sessions_ended (tenant_id, expires_at)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE console_sessions_ended`);
  }
}
