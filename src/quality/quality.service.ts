import { Injectable } from '@nestjs/common';
import { ApiError } from '../common/errors';
import { AssignmentsService } from '../grading/assignments.service';
import { maxScore, Rubric, totalStep } from '../grading/rubric';
import { RubricsService } from '../grading/rubrics.service';
import { agreement, Agreement, Scale } from './agreement';
import { LabelCell, LabelFilter, QualityGroup, QualityRepository } from './quality.repository';

export interface DimensionAgreement extends Agreement {
  key: string;
  name: string;
}

/** Agreement of one group of labels, all on one rubric's scale. */
export interface GroupAgreement extends Agreement {
  group: string;
  rubric: { key: string; version: number; maxScore: number };
  byDimension: DimensionAgreement[];
}

export interface AssignmentAgreement extends Agreement {
  assignmentId: string;
  rubric: { key: string; version: number; maxScore: number };
  byDimension: DimensionAgreement[];
}

/**
 * GET /v1/quality: SPEC §2's `{n, qwk, exact, adjacent, bias, byDimension}` over every teacher label
 * in range, then the same per group. The top-level figures pool the labels only when they are all
 * on one rubric (version); over several rubrics they are null (scales are never pooled) and `n`
 * still counts every label.
 */
export interface QualityView extends Agreement {
  /** the one rubric every label in range is on; null when there are several (or none) */
  rubric: { key: string; version: number; maxScore: number } | null;
  byDimension: DimensionAgreement[];
  from: string | null;
  to: string | null;
  groupBy: QualityGroup;
  /** one entry per group and rubric: figures on different scales are never pooled */
  groups: GroupAgreement[];
  /** shadow evaluation: the standard grade against the deep tier's, per group and rubric */
  shadow: GroupAgreement[];
}

/** A rubric's total as a scale: its step and its maximum. */
export function totalScale(r: Rubric): Scale {
  return { step: totalStep(r), max: maxScore(r) };
}

/**
 * Agreement between the grader and the teachers (SPEC §9): every override is a label; the grader's
 * original total (and each dimension) is compared with the teacher's on the rubric's score steps.
 */
@Injectable()
export class QualityService {
  constructor(
    private readonly labels: QualityRepository,
    private readonly rubrics: RubricsService,
    private readonly assignments: AssignmentsService,
  ) {}

  async forAssignment(tenantId: string, assignmentId: string): Promise<AssignmentAgreement> {
    const a = await this.assignments.get(tenantId, assignmentId);
    const rubric = await this.rubrics.resolve(tenantId, a.rubric.key, a.rubric.version);
    const cells = (await this.labels.cells(tenantId, 'rubric', { assignmentId })).filter(
      (c) => c.rubricKey === rubric.key && c.rubricVersion === rubric.version,
    );
    const g = this.group(rubric, 'all', cells);
    return { assignmentId: a.id, ...withoutGroup(g) };
  }

  async overview(tenantId: string, groupBy: QualityGroup, f: LabelFilter): Promise<QualityView> {
    const cells = await this.labels.cells(tenantId, groupBy, f, 'teacher');
    const groups = await this.grouped(tenantId, cells);
    return {
      ...(await this.overall(tenantId, cells, groups)),
      from: f.from ?? null,
      to: f.to ?? null,
      groupBy,
      groups,
      shadow: await this.grouped(tenantId, await this.labels.cells(tenantId, groupBy, f, 'shadow')),
    };
  }

  /** Every label in range together: pooled across the groups when they share one rubric. */
  private async overall(tenantId: string, cells: LabelCell[], groups: GroupAgreement[]): Promise<Agreement & Pick<QualityView, 'rubric' | 'byDimension'>> {
    const rubrics = new Set(groups.map((g) => `${g.rubric.key}@${g.rubric.version}`));
    if (rubrics.size === 1) {
      const rubric = await this.rubrics.resolve(tenantId, groups[0].rubric.key, groups[0].rubric.version);
      return withoutGroup(this.group(rubric, 'all', cells.filter((c) => c.rubricKey === rubric.key && c.rubricVersion === rubric.version)));
    }
    const n = groups.reduce((sum, g) => sum + g.n, 0);
    return { n, qwk: null, exact: null, adjacent: null, bias: null, rubric: null, byDimension: [] };
  }

  /** Standard-versus-deep agreement per rubric over the shadow gradings of essays submitted since the day `from` (YYYY-MM-DD). */
  async shadowByRubric(tenantId: string, from: string): Promise<GroupAgreement[]> {
    return this.grouped(tenantId, await this.labels.cells(tenantId, 'rubric', { from }, 'shadow'));
  }

  private async grouped(tenantId: string, cells: LabelCell[]): Promise<GroupAgreement[]> {
    const byGroup = new Map<string, LabelCell[]>();
    for (const c of cells) {
      const k = JSON.stringify([c.group, c.rubricKey, c.rubricVersion]);
      const list = byGroup.get(k) ?? [];
      list.push(c);
      byGroup.set(k, list);
    }
    const groups: GroupAgreement[] = [];
    for (const list of byGroup.values()) {
      const { group, rubricKey, rubricVersion } = list[0];
      // A rubric version no longer to be had (a built-in's older version) is left out; any other
      // failure fails the request (figures with a group silently missing would read as the whole).
      const rubric = await this.rubrics.resolve(tenantId, rubricKey, rubricVersion).catch((err: unknown) => {
        if (err instanceof ApiError && err.code === 'NOT_FOUND') return null;
        throw err;
      });
      if (rubric) groups.push(this.group(rubric, group, list));
    }
    return groups.sort((x, y) => x.group.localeCompare(y.group) || x.rubric.key.localeCompare(y.rubric.key) || x.rubric.version - y.rubric.version);
  }

  private group(rubric: Rubric, group: string, cells: LabelCell[]): GroupAgreement {
    const scale = totalScale(rubric);
    return {
      group,
      rubric: { key: rubric.key, version: rubric.version, maxScore: scale.max },
      ...agreement(cells.filter((c) => c.dimension === null), scale),
      byDimension: rubric.dimensions.map((d) => ({
        key: d.key,
        name: d.name,
        ...agreement(cells.filter((c) => c.dimension === d.key), { step: d.step, max: d.max }),
      })),
    };
  }
}

function withoutGroup(g: GroupAgreement): Omit<GroupAgreement, 'group'> {
  const { group: _group, ...rest } = g;
  return rest;
}
