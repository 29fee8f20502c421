import { Logger } from '@nestjs/common';
import {
  DeepPartial,
  EntityManager,
  EntityTarget,
  FindOptionsOrder,
  FindOptionsWhere,
  ObjectLiteral,
  Repository,
} from 'typeorm';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity';
import { UUID } from '../common/ids';


export class MissingTenantError extends Error {
  constructor(what: string) {
    super(`refusing to run ${what} without a tenant id`);
    this.name = 'MissingTenantError';
  }
}

/**
 * Throws unless `tenantId` is a UUID. TypeORM drops `undefined` from a `where`, which would turn a
 * scoped query into one over every tenant; this check is what stands in the way of that.
 */
export function assertTenantId(tenantId: unknown, what = 'a query'): asserts tenantId is string {
  if (typeof tenantId !== 'string' || !UUID.test(tenantId)) throw new MissingTenantError(what);
}

type TenantRow = ObjectLiteral & { tenantId: string };

/**
 * A repository view that can only see one tenant's rows: every read, update and delete adds
 * `tenant_id = :tenantId`, and every insert sets it.
 */
export class TenantScopedRepository<T extends TenantRow> {
  private readonly repo: Repository<T>;

  constructor(
    manager: EntityManager,
    entity: EntityTarget<T>,
    readonly tenantId: string,
  ) {
    assertTenantId(tenantId, 'a tenant-scoped repository');
    this.repo = manager.getRepository(entity);
  }

  private scope(where: FindOptionsWhere<T> = {}): FindOptionsWhere<T> {
    return { ...where, tenantId: this.tenantId } as FindOptionsWhere<T>;
  }

  find(where?: FindOptionsWhere<T>, opts: { order?: FindOptionsOrder<T>; take?: number } = {}): Promise<T[]> {
    return this.repo.find({ where: this.scope(where), order: opts.order, take: opts.take });
  }

  findOne(where: FindOptionsWhere<T>): Promise<T | null> {
    return this.repo.findOne({ where: this.scope(where) });
  }

  count(where?: FindOptionsWhere<T>): Promise<number> {
    return this.repo.count({ where: this.scope(where) });
  }

  async insert(row: DeepPartial<T>): Promise<T> {
    const entity = this.repo.create({ ...row, tenantId: this.tenantId } as DeepPartial<T>);
    return this.repo.save(entity);
  }

  /** Returns how many rows changed (0 when the row belongs to another tenant or does not exist). */
  async update(where: FindOptionsWhere<T>, patch: QueryDeepPartialEntity<T>): Promise<number> {
    const res = await this.repo.update(this.scope(where), patch);
    return res.affected ?? 0;
  }

  async delete(where: FindOptionsWhere<T>): Promise<number> {
    const res = await this.repo.delete(this.scope(where));
    return res.affected ?? 0;
  }
}

const FILTERS_TENANT = /tenant_id\s*=\s*\$1\b/;
const INSERTS_TENANT = /^\s*(WITH\b[\s\S]*?)?INSERT\s+INTO\s+\w+\s*\(\s*tenant_id\s*,[\s\S]*?\)\s*(VALUES\s*\(\s*\$1\s*,|SELECT\s+\$1\b)/i;

/**
 * Raw SQL for one tenant: the tenant id is always `$1`; the statement must filter on
 * `tenant_id = $1`, or be an INSERT whose first column is tenant_id and first value $1.
 * Used where a query is clearer in SQL than through the repository API (atomic updates, reports).
 */
export async function tenantQuery<R = Record<string, unknown>>(
  manager: EntityManager,
  tenantId: string,
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  const s = tenantStatement(tenantId, sql, params);
  return run<R>(manager, s.sql, s.params);
}

/**
 * The data sources whose hot statements may run as named prepared statements (DatabaseConnection
 * marks its own unless DATABASE_PREPARED_STATEMENTS is off or the database is the embedded one).
 */
const PREPARING = new WeakSet<object>();

export function usePreparedStatements(ds: object): void {
  PREPARING.add(ds);
}

export function preparesStatements(ds: object): boolean {
  return PREPARING.has(ds);
}

/**
 * What the server answers when a connection's named statements are not what its driver expects:
 * the name is gone (26000, invalid_sql_statement_name) or already taken (42P05,
 * duplicate_prepared_statement). A pooler that hands each transaction a different server session
 * (PgBouncer in transaction mode before 1.21), or a DEALLOCATE/DISCARD behind the driver's back,
 * does that. The error comes at Parse or Bind, before anything runs.
 */
const LOST_STATEMENT = new Set(['26000', '42P05']);
const logger = new Logger('Database');

/**
 * Runs a checked statement. Outside a transaction it goes straight to the driver's pool: the same
 * statement without TypeORM's query-runner round (on the gateway's hot path that round costs more
 * than the statement); inside one, through the transaction's manager. With `name`, where the data
 * source allows it, the statement is prepared under that name once a connection and then only bound
 * and run: for a statement whose planning costs more than its run (the settlement), that is most of
 * its database time. The driver keeps each connection's names; a name must always carry one text.
 * When the server does not keep them (LOST_STATEMENT), the statement runs again as plain text (the
 * named attempt ran nothing) and the data source stops naming statements.
 */
async function run<R>(manager: EntityManager, sql: string, params: unknown[], name?: string): Promise<R[]> {
  const pool = manager.queryRunner ? null : poolOf(manager);
  if (!pool) return rowsOf<R>(await manager.query(sql, params));
  if (name && preparesStatements(manager.connection)) {
    try {
      return (await pool.query({ name, text: sql, values: params })).rows as R[];
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code !== 'string' || !LOST_STATEMENT.has(code)) throw err;
      if (PREPARING.delete(manager.connection)) {
        logger.warn({ msg: 'the database does not keep prepared statements (a pooler?): running them as plain statements; set DATABASE_PREPARED_STATEMENTS=false', statement: name, code });
      }
    }
  }
  return (await pool.query(sql, params)).rows as R[];
}

interface PgPool {
  query(sql: string, params: unknown[]): Promise<{ rows: unknown[] }>;
  query(config: { name: string; text: string; values: unknown[] }): Promise<{ rows: unknown[] }>;
}

/** The postgres driver's connection pool (node-postgres), when the manager's data source has one. */
function poolOf(manager: EntityManager): PgPool | null {
  const driver = manager.connection?.driver as unknown as { master?: PgPool } | undefined;
  const pool = driver?.master;
  return pool && typeof pool.query === 'function' ? pool : null;
}

/**
 * One statement for rows of many tenants at once (a group commit: the answer cache's lookups and
 * stores, the settlement of leased calls): `$1` is a uuid[] with each row's tenant, paired by position with the other arrays, and
 * the statement must match every row on that tenant (`unnest($1::uuid[], …)` joined on tenant_id).
 * Each row stays its own tenant's: nothing is read or written by key alone.
 */
export async function perRowTenantQuery<R = Record<string, unknown>>(
  manager: EntityManager,
  tenantIds: string[],
  sql: string,
  params: unknown[] = [],
  opts: { preparedAs?: string } = {},
): Promise<R[]> {
  for (const id of tenantIds) assertTenantId(id, 'a per-row tenant query');
  if (!/unnest\(\s*\$1::uuid\[\]/.test(sql) || !/tenant_id/.test(sql)) throw new MissingTenantError('SQL that does not pair each row with its tenant ($1::uuid[])');
  return run<R>(manager, sql, [tenantIds, ...params], opts.preparedAs);
}

/** One tenant's statement, checked as tenantQuery checks it, to run later (runAtomically). */
export interface TenantStatement {
  readonly sql: string;
  /** the tenant id first ($1), then the statement's own parameters */
  readonly params: unknown[];
}

export function tenantStatement(tenantId: string, sql: string, params: unknown[] = []): TenantStatement {
  assertTenantId(tenantId, 'a tenant query');
  if (!FILTERS_TENANT.test(sql) && !INSERTS_TENANT.test(sql)) {
    throw new MissingTenantError('SQL that does not filter on tenant_id = $1');
  }
  return { sql, params: [tenantId, ...params] };
}

/** TypeORM's postgres driver answers UPDATE/DELETE … RETURNING with [rows, count]; this takes the rows. */
export function rowsOf<R>(res: unknown): R[] {
  if (Array.isArray(res) && res.length === 2 && Array.isArray(res[0]) && typeof res[1] === 'number') return res[0] as R[];
  return res as R[];
}
