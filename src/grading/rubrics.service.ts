import { Injectable, Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import type { TenantAuth } from '../common/auth';
import { ApiError } from '../common/errors';
import { TtlCache } from '../common/ttl-cache';
import { tenantQuery } from '../db/tenant-scope';
import { LimitsService } from '../tenancy/limits.service';
import { CreateRubricDto, RubricBodyDto } from './dto/rubric.dto';
import { foldText } from './text-fold';
import { BUILTIN_RUBRICS, builtinRubric, DEFAULT_EXPECTED_LENGTH, maxScore, Rubric, RubricDimension } from './rubric';

export interface RubricView extends Rubric {
  maxScore: number;
}

/** A rubric as GET /v1/rubrics lists it: all but its dimensions' descriptions (GET /v1/rubrics/:key has them). */
export interface RubricSummary extends Omit<RubricView, 'dimensions'> {
  dimensions: Array<Omit<RubricDimension, 'description'>>;
}

/**
 * Tenants' rubric versions kept in memory per process. A version is at most ~50 KB (12 dimensions
 * of 2,000-character descriptions), usually ~2 KB: at most ~25 MB, usually about 1 MB. A miss costs
 * one primary-key read.
 */
export const RUBRIC_CACHE_MAX = 500;

/**
 * Built-in rubrics (in code) and each tenant's own (in the database, versioned: an edit makes a new
 * version, and a grade keeps the version it used). A version never changes once written, so
 * resolved versions need no expiry; the RUBRIC_CACHE_MAX most recently used are kept.
 */
/** How many of a tenant's own rubrics GET /v1/rubrics lists. */
export const MAX_RUBRICS_LISTED = 200;

@Injectable()
export class RubricsService {
  private readonly logger = new Logger(RubricsService.name);
  private readonly versions = new TtlCache<string, Rubric>(Number.POSITIVE_INFINITY, RUBRIC_CACHE_MAX);

  constructor(
    private readonly ds: DataSource,
    private readonly limits: LimitsService,
  ) {}

  /** How many tenant rubric versions this process holds (never more than RUBRIC_CACHE_MAX). */
  get cachedVersions(): number {
    return this.versions.size;
  }

  /**
   * The built-in rubrics and the tenant's own (the latest version of each), the first
   * MAX_RUBRICS_LISTED of its own by key: a tenant may keep thousands of versions of large rubrics,
   * and one list must not read them all (GET /v1/rubrics/:key reads any one). Listed without the
   * dimensions' descriptions, which the database leaves out: 200 rubrics of 12 dimensions described
   * in 2,000 characters each made a 14.6 MB answer, and 16 such reads at once ran the instance out
   * of memory.
   */
  async list(auth: TenantAuth): Promise<RubricSummary[]> {
    const rows = await tenantQuery<{ summary: Omit<Rubric, 'dimensions'> & { dimensions: RubricSummary['dimensions'] } }>(
      this.ds.manager,
      auth.tenantId,
      `SELECT r.definition - 'dimensions' || jsonb_build_object('dimensions',
                (SELECT coalesce(jsonb_agg(d - 'description' ORDER BY i), '[]'::jsonb) FROM jsonb_array_elements(r.definition -> 'dimensions') WITH ORDINALITY AS x(d, i))) AS summary
         FROM (SELECT DISTINCT ON (key) key, version FROM rubrics WHERE tenant_id = $1 ORDER BY key, version DESC LIMIT ${MAX_RUBRICS_LISTED}) latest
         JOIN rubrics r ON r.tenant_id = $1 AND r.key = latest.key AND r.version = latest.version
        ORDER BY r.key`,
    );
    const own = rows.map((r) => r.summary);
    const builtIn = BUILTIN_RUBRICS.map((r) => ({ ...r, dimensions: r.dimensions.map(({ description: _, ...d }) => d) }));
    return [...builtIn, ...own].map((r) => ({ ...r, maxScore: maxScore(r) }));
  }

  async get(auth: TenantAuth, key: string, version?: number): Promise<RubricView> {
    return view(await this.resolve(auth.tenantId, key, version));
  }

  /** A rubric by key (latest version unless one is named); 404 when the tenant has no such rubric. */
  async resolve(tenantId: string, key: string, version?: number): Promise<Rubric> {
    const builtIn = builtinRubric(key);
    if (builtIn) {
      if (version !== undefined && version !== builtIn.version) throw ApiError.notFound(`Rubric ${key} version ${version}`);
      return builtIn;
    }
    if (version !== undefined) {
      const cached = this.versions.get(`${tenantId}:${key}:${version}`);
      if (cached) return cached;
    }
    const rows = await tenantQuery<{ definition: Rubric }>(
      this.ds.manager,
      tenantId,
      `SELECT definition FROM rubrics WHERE tenant_id = $1 AND key = $2 AND ($3::int IS NULL OR version = $3) ORDER BY version DESC LIMIT 1`,
      [key, version ?? null],
    );
    if (!rows[0]) throw ApiError.notFound(version !== undefined ? `Rubric ${key} version ${version}` : `Rubric ${key}`);
    const rubric = rows[0].definition;
    this.versions.set(`${tenantId}:${key}:${rubric.version}`, rubric);
    return rubric;
  }

  async create(auth: TenantAuth, dto: CreateRubricDto): Promise<RubricView> {
    if (builtinRubric(dto.key)) throw new ApiError('CONFLICT', `"${dto.key}" is a built-in rubric; choose another key`);
    return this.write(auth, dto.key, dto, 'create');
  }

  /** Editing a rubric writes its next version; grades made with earlier versions keep theirs. */
  async update(auth: TenantAuth, key: string, dto: RubricBodyDto): Promise<RubricView> {
    if (builtinRubric(key)) throw new ApiError('CONFLICT', 'Built-in rubrics cannot be edited; create your own with another key');
    return this.write(auth, key, dto, 'update');
  }

  private async write(auth: TenantAuth, key: string, dto: RubricBodyDto, mode: 'create' | 'update'): Promise<RubricView> {
    const keys = dto.dimensions.map((d) => d.key);
    if (new Set(keys).size !== keys.length) throw ApiError.validation([{ field: 'dimensions', message: 'dimension keys must be unique' }]);
    // Names head the columns of grades.csv and the dimensions a teacher sees: two that read the same
    // (up to case, width, spacing and invisible characters) could not be told apart.
    const names = dto.dimensions.map((d) => readAs(d.name));
    if (new Set(names).size !== names.length) throw ApiError.validation([{ field: 'dimensions', message: 'dimension names must differ (two read the same)' }]);
    if (dto.totalRule === 'mean_half_band' && new Set(dto.dimensions.map((d) => d.max)).size > 1) {
      throw ApiError.validation([{ field: 'totalRule', message: 'mean_half_band needs every dimension on the same scale' }]);
    }
    if (dto.expectedLength && dto.expectedLength.min > dto.expectedLength.max) {
      throw ApiError.validation([{ field: 'expectedLength', message: 'min must not exceed max' }]);
    }
    const language = dto.language;
    const rubric: Rubric = {
      key,
      version: 0,
      name: dto.name,
      language,
      totalRule: dto.totalRule,
      dimensions: dto.dimensions.map((d) => ({ key: d.key, name: d.name, max: d.max, step: d.step ?? 1, kind: d.kind, description: d.description })),
      expectedLength: dto.expectedLength ?? DEFAULT_EXPECTED_LENGTH[language === 'en' ? 'en' : 'zh'],
      // (an `any` rubric's one default would be characters for its English essays too: 600 words asked of each)
      ...(language === 'any' && !dto.expectedLength ? { lengthByLanguage: true as const } : {}),
      builtIn: false,
    };
    // Every version is kept (grades name the one they were made with), so a tenant's versions are
    // bounded (`rubricVersions`), counted with the tenant's row locked so that writes at once take turns.
    // The answer is the version as written (RETURNING): a read after the commit could fail and free
    // the request's Idempotency-Key, and its retry would write another version.
    const insert = (tx: EntityManager) =>
      tenantQuery<{ version: number; definition: Rubric }>(
        tx,
        auth.tenantId,
        `INSERT INTO rubrics (tenant_id, key, version, definition, created_by)
         SELECT $1, $2, v, jsonb_set($3::jsonb, '{version}', to_jsonb(v)), $4
           FROM (SELECT coalesce(max(version), 0) + 1 AS v FROM rubrics WHERE tenant_id = $1 AND key = $2) next
          WHERE ($5 = 'create') = (next.v = 1)
         RETURNING version, definition`,
        [key, JSON.stringify(rubric), auth.keyId, mode],
      );
    // A key taken (create) or unknown (update) is said as such, not as the version limit reached
    // (which an operator raising would not help); the insert's own condition stays the guard.
    const [taken] = await tenantQuery(this.ds.manager, auth.tenantId, `SELECT 1 FROM rubrics WHERE tenant_id = $1 AND key = $2 LIMIT 1`, [key]);
    if (mode === 'create' && taken) throw exists(key);
    if (mode === 'update' && !taken) throw ApiError.notFound(`Rubric ${key}`);
    const refusal = (max: number) => `This tenant keeps its limit of ${max} rubric versions; an operator can raise it`;
    const rows = await this.limits.withinCount(auth.tenantId, 'rubricVersions', refusal, insert).catch((err: Error & { code?: string }) => {
      if (err.code === '23505') throw new ApiError('CONFLICT', 'Someone else changed this rubric at the same moment; try again');
      throw err;
    });
    if (!rows[0]) {
      throw mode === 'create' ? exists(key) : ApiError.notFound(`Rubric ${key}`);
    }
    this.logger.log({ msg: 'rubric written', tenantId: auth.tenantId, key, version: rows[0].version });
    return view(rows[0].definition);
  }
}

const exists = (key: string) => new ApiError('CONFLICT', `Rubric "${key}" exists; PUT /v1/rubrics/${key} makes a new version`);

/** A dimension's name as a reader tells it from another: folded as the injection check reads text (text-fold), spacing dropped. */
function readAs(name: string): string {
  return foldText(name).replace(/\s+/g, '');
}

function view(r: Rubric): RubricView {
  return { ...r, maxScore: maxScore(r) };
}
