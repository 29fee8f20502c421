import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { TtlCache } from '../common/ttl-cache';
import { ClusterBus } from '../db/cluster-bus';
import { tenantQuery } from '../db/tenant-scope';
import type { CalibrationModel } from './calibration-model';

/** A stored calibration: the model and what cross-validation said of it. */
export interface CalibrationRecord {
  assignmentId: string;
  version: number;
  method: string;
  model: CalibrationModel;
  essays: number;
  before: unknown;
  after: unknown;
  active: boolean;
  createdAt: string;
}

type Row = Record<string, unknown>;
const toRecord = (r: Row): CalibrationRecord => ({
  assignmentId: String(r.assignment_id),
  version: Number(r.version),
  method: String(r.method),
  model: r.model as CalibrationModel,
  essays: Number(r.essays),
  before: r.before,
  after: r.after,
  active: r.active === true,
  createdAt: (r.created_at as Date).toISOString(),
});

/**
 * Calibrations, per assignment and versioned: the only code that writes `calibrations`. Grading
 * reads the active one of an essay's assignment through a short cache that every instance drops
 * when a calibration is switched on or off (cluster bus).
 */
@Injectable()
export class CalibrationsRepository {
  private readonly active = new TtlCache<string, CalibrationModel | null>(30_000);

  constructor(
    private readonly ds: DataSource,
    private readonly bus: ClusterBus,
  ) {
    bus.on<{ key: string }>('calibration', ({ key }) => this.active.delete(key));
  }

  /** The active calibration of an assignment, or null. */
  activeModel(tenantId: string, assignmentId: string): Promise<CalibrationModel | null> {
    return this.active.getOrLoad(`${tenantId}:${assignmentId}`, async () => (await this.current(tenantId, assignmentId))?.model ?? null);
  }

  /**
   * Whether the assignment's calibration in force (none: null) is still `used`, read in `tx` under a
   * share lock, as a regrade's write reads it (EssaysRepository.replaceGrade): a teacher's switch,
   * off or to another, waits for this grade to be stored, and a regrade after it finds the essay
   * graded. (None in force, there is no row to lock: a first fit committing meanwhile is not seen.)
   * This instance's cached one is forgotten when it differs.
   */
  async stillInForce(tx: EntityManager, tenantId: string, assignmentId: string, used: number | null): Promise<boolean> {
    const [row] = await tenantQuery<{ version: number }>(tx, tenantId, `SELECT version FROM calibrations WHERE tenant_id = $1 AND assignment_id = $2 AND active FOR SHARE`, [assignmentId]);
    const inForce = row ? Number(row.version) : null;
    if (inForce === used) return true;
    this.active.delete(`${tenantId}:${assignmentId}`);
    return false;
  }

  async current(tenantId: string, assignmentId: string): Promise<CalibrationRecord | null> {
    const [row] = await tenantQuery<Row>(this.ds.manager, tenantId, `SELECT * FROM calibrations WHERE tenant_id = $1 AND assignment_id = $2 AND active`, [assignmentId]);
    return row ? toRecord(row) : null;
  }

  /**
   * Stores the next version of the assignment's calibration; when `active`, it replaces the one in
   * force (one transaction: the assignment's rows are locked, so two fits take turns).
   */
  async add(tenantId: string, assignmentId: string, c: Omit<CalibrationRecord, 'assignmentId' | 'version' | 'createdAt'>, by: string): Promise<CalibrationRecord> {
    const saved = await this.ds.transaction(async (tx) => {
      await tenantQuery(tx, tenantId, `SELECT id FROM assignments WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, [assignmentId]);
      const [{ next }] = await tenantQuery<{ next: number }>(
        tx,
        tenantId,
        `SELECT coalesce(max(version), 0) + 1 AS next FROM calibrations WHERE tenant_id = $1 AND assignment_id = $2`,
        [assignmentId],
      );
      const model: CalibrationModel = { ...c.model, version: next };
      if (c.active) await tenantQuery(tx, tenantId, `UPDATE calibrations SET active = false WHERE tenant_id = $1 AND assignment_id = $2 AND active`, [assignmentId]);
      const [row] = await tenantQuery<Row>(
        tx,
        tenantId,
        `INSERT INTO calibrations (tenant_id, assignment_id, version, method, model, essays, before, after, active, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *`,
        [assignmentId, next, c.method, JSON.stringify(model), c.essays, JSON.stringify(c.before), JSON.stringify(c.after), c.active, by],
      );
      return toRecord(row);
    });
    this.changed(tenantId, assignmentId);
    return saved;
  }

  /** Turns the assignment's calibration off (kept, inactive); false when none was on. */
  async deactivate(tenantId: string, assignmentId: string): Promise<boolean> {
    const rows = await tenantQuery(this.ds.manager, tenantId, `UPDATE calibrations SET active = false WHERE tenant_id = $1 AND assignment_id = $2 AND active RETURNING version`, [assignmentId]);
    this.changed(tenantId, assignmentId);
    return rows.length > 0;
  }

  private changed(tenantId: string, assignmentId: string): void {
    const key = `${tenantId}:${assignmentId}`;
    this.active.delete(key);
    this.bus.publish('calibration', { key });
  }
}
