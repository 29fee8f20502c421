import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Every file Inkstone uploads to a provider's Batch API (students' essays, one batch's requests) is
 * written down before it is sent, with the batch made from it, and struck off only
 * once the upload and the batch's answers are deleted at the provider. A process killed while a
 * batch ran, a batch given up, a job that never came back for its answers or a delete that failed
 * leaves a row here, and any instance's sweep deletes those files once no call waits for them.
 * Not a tenant table: one batch carries many tenants' calls (their guards name it).
 */
export class ProviderUploads1768300000000 implements MigrationInterface {
  name = 'ProviderUploads1768300000000';

  public async up(q: QueryRunner): Promise<void> {
    // name: the file name the upload is sent with, written down before it is sent; file_id: the
    // provider's id for it, once the provider has answered (an upload whose answer was lost is
    // found by its name in the provider's list of files).
    await q.query(`
      CREATE TABLE provider_uploads (
        provider text NOT NULL,
        name text NOT NULL,
        file_id text,
        batch_id text,
        uploaded_at timestamptz NOT NULL DEFAULT now(),
        due_at timestamptz NOT NULL,
        tries int NOT NULL DEFAULT 0,
        PRIMARY KEY (provider, name))`);
    await q.query(`CREATE UNIQUE INDEX provider_uploads_file ON provider_uploads (provider, file_id)`);
    await q.query(`CREATE INDEX provider_uploads_due ON provider_uploads (due_at)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE provider_uploads`);
  }
}
