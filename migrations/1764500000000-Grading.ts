import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Grading: tenants' own rubrics (versioned; built-in rubrics live in code), assignments, essays with
 * their grades and teacher overrides, the durable job queue, and the MinHash LSH index for
 * near-duplicates.
 */
export class Grading1764500000000 implements MigrationInterface {
  name = 'Grading1764500000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE tenants
        ADD COLUMN near_duplicate_threshold numeric(4,3) NOT NULL DEFAULT 0.5
          CHECK (near_duplicate_threshold > 0 AND near_duplicate_threshold <= 1),
        ADD COLUMN reuse_resubmission_grades boolean NOT NULL DEFAULT false`);

    await q.query(`
      CREATE TABLE rubrics (
        tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        key         text NOT NULL CHECK (key ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
        version     integer NOT NULL CHECK (version >= 1),
        definition  jsonb NOT NULL,
        created_by  uuid,
        created_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, key, version)
      )`);

    await q.query(`
      CREATE TABLE assignments (
        id              uuid PRIMARY KEY,
        tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        title           text NOT NULL,
        prompt          text NOT NULL,
        rubric_key      text NOT NULL,
        rubric_version  integer NOT NULL,
        language        text NOT NULL CHECK (language IN ('zh', 'en')),
        created_by      uuid,
        created_at      timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX assignments_tenant_idx ON assignments (tenant_id, created_at DESC)`);

    await q.query(`
      CREATE TABLE essays (
        id              uuid PRIMARY KEY,
        tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        assignment_id   uuid REFERENCES assignments(id) ON DELETE SET NULL,
        rubric_key      text NOT NULL,
        rubric_version  integer NOT NULL,
        language        text NOT NULL CHECK (language IN ('zh', 'en')),
        tier            text NOT NULL CHECK (tier IN ('standard', 'deep')),
        title           text,
        student_ref     text,
        text            text NOT NULL,
        status          text NOT NULL CHECK (status IN ('queued', 'grading', 'graded', 'failed', 'needs_review')),
        failure_code    text,
        failure_reason  text,
        flags           text[] NOT NULL DEFAULT '{}',
        similar_essay_id uuid,
        similarity      numeric(5,4),
        grade           jsonb,
        model_grade     jsonb,
        cost_nanos      bigint NOT NULL DEFAULT 0,
        cache_status    text,
        submitted_by    uuid,
        created_at      timestamptz NOT NULL DEFAULT now(),
        updated_at      timestamptz NOT NULL DEFAULT now(),
        graded_at       timestamptz
      )`);
    await q.query(`CREATE INDEX essays_tenant_created_idx ON essays (tenant_id, created_at DESC, id DESC)`);
    await q.query(`CREATE INDEX essays_tenant_assignment_idx ON essays (tenant_id, assignment_id, created_at DESC, id DESC)`);
    await q.query(`CREATE INDEX essays_tenant_student_idx ON essays (tenant_id, student_ref) WHERE student_ref IS NOT NULL`);

    await q.query(`
      CREATE TABLE grade_overrides (
        id          uuid PRIMARY KEY,
        tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        essay_id    uuid NOT NULL REFERENCES essays(id) ON DELETE CASCADE,
        api_key_id  uuid,
        changes     jsonb NOT NULL,
        before      jsonb NOT NULL,
        after       jsonb NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX grade_overrides_essay_idx ON grade_overrides (tenant_id, essay_id, created_at)`);

    await q.query(`
      CREATE TABLE jobs (
        id            uuid PRIMARY KEY,
        tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        essay_id      uuid NOT NULL REFERENCES essays(id) ON DELETE CASCADE,
        kind          text NOT NULL,
        status        text NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
        attempts      integer NOT NULL DEFAULT 0,
        max_attempts  integer NOT NULL,
        run_after     timestamptz NOT NULL DEFAULT now(),
        locked_by     text,
        locked_until  timestamptz,
        last_error    text,
        created_at    timestamptz NOT NULL DEFAULT now(),
        finished_at   timestamptz
      )`);
    await q.query(`CREATE INDEX jobs_ready_idx ON jobs (run_after) WHERE status = 'queued'`);
    await q.query(`CREATE INDEX jobs_lease_idx ON jobs (locked_until) WHERE status = 'running'`);
    await q.query(`CREATE INDEX jobs_essay_idx ON jobs (tenant_id, essay_id)`);

    await q.query(`
      CREATE TABLE essay_lsh (
        tenant_id  uuid NOT NULL,
        band       smallint NOT NULL,
        bucket     bigint NOT NULL,
        essay_id   uuid NOT NULL REFERENCES essays(id) ON DELETE CASCADE,
        PRIMARY KEY (tenant_id, band, bucket, essay_id)
      )`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE essay_lsh`);
    await q.query(`DROP TABLE jobs`);
    await q.query(`DROP TABLE grade_overrides`);
    await q.query(`DROP TABLE essays`);
    await q.query(`DROP TABLE assignments`);
    await q.query(`DROP TABLE rubrics`);
    await q.query(`ALTER TABLE tenants DROP COLUMN reuse_resubmission_grades, DROP COLUMN near_duplicate_threshold`);
  }
}
