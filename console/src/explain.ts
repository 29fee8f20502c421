/**
 * What an action or a state means, in words, from what the API answered (not from what the
 * console hoped would happen).
 */
import { translateCode, type Locale, type MessageKey } from './i18n';

/** POST /v1/assignments/:id/regrade's answer: essays whose grade changed, and the calibration applied (null: none). */
export interface RegradeAnswer {
  calibration: number | null;
  essays: number;
}

/** What a regrade did: applied a calibration (and changed n grades, or none), or found none in force. */
export function regradeOutcome(r: RegradeAnswer): { key: MessageKey; vars: Record<string, string | number> } {
  if (r.calibration === null) return r.essays ? { key: 'regradedNone', vars: { n: r.essays } } : { key: 'regradedNoneNoChange', vars: {} };
  return r.essays ? { key: 'regraded', vars: { version: r.calibration, n: r.essays } } : { key: 'regradedNoChange', vars: { version: r.calibration } };
}

/** Why an essay failed, in words: the failure's code explained, or the service's own reason for a code the console does not know. */
export function failureWords(locale: Locale, failure: { code: string; reason: string }): string {
  return translateCode(locale, 'failure', failure.code, failure.reason);
}

/** "0.000000", "0", "-0.00" → true: an amount of nothing (string arithmetic, no float). */
export function isZeroAmount(amount: string): boolean {
  return /^-?0*(\.0*)?$/.test(amount.trim()) && /\d/.test(amount);
}

/** Nothing left: zero, or below it ("-1.50"), read from the string (no float). */
export function isUsedUpAmount(amount: string): boolean {
  return isZeroAmount(amount) || /^-\d/.test(amount.trim());
}
