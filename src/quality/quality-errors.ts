import { ErrorSpec, FieldProblem, ModuleError } from '../common/errors';

/** The quality module's error codes. */
export const QUALITY_ERRORS = {
  NOT_ENOUGH_LABELS: { status: 422, when: 'a calibration needs at least 20 essays of the assignment that a teacher overrode (per source: model or offline)' },
} as const satisfies Record<string, ErrorSpec>;

export type QualityErrorCode = keyof typeof QUALITY_ERRORS;

export class QualityError extends ModuleError<QualityErrorCode> {
  constructor(code: QualityErrorCode, message: string, details?: FieldProblem[] | Record<string, unknown>) {
    super(QUALITY_ERRORS, code, message, details);
  }
}
