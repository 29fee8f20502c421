import { ApiError } from '../common/errors';
import { erasuresInLog, LoggedErasure, reapplyErasures } from './erasure-replay';

const T = 'a1b2c3d4-0000-4000-8000-000000000001';
const E1 = 'e0000000-0000-4000-8000-000000000001';
const E2 = 'e0000000-0000-4000-8000-000000000002';
const K = 'c0000000-0000-4000-8000-00000000000c';
const line = (o: Record<string, unknown>) => JSON.stringify({ level: 30, pid: 1, ...o });

describe('erasuresInLog', () => {
  it('reads each erased essay once, at its first erasure, oldest first, from pino lines among others', async () => {
    const lines = [
      line({ time: 3000, msg: 'essay erased', why: 'request', tenantId: T, essayId: E2, keyId: K }),
      line({ time: 1000, msg: 'request completed', essayId: E1 }),
      line({ time: 2000, msg: 'essay erased', why: 'retention', tenantId: T, essayId: E1, keyId: null }),
      line({ time: 5000, msg: 'essay erased', why: 'reapplied', tenantId: T.toUpperCase(), essayId: E2.toUpperCase(), keyId: K }),
      'inkstone: configuration error: a line that is not JSON',
    ];
    const log = await erasuresInLog(lines);
    expect(log.lines).toBe(5);
    expect(log.unreadable).toBe(0); // the non-JSON line does not mention an erasure: not even parsed
    expect(log.erasures).toEqual([
      { tenantId: T, essayId: E1, keyId: null, at: new Date(2000) },
      { tenantId: T, essayId: E2, keyId: K, at: new Date(3000) },
    ]);
  });

  it('keeps those at or after `since`, takes ISO times, and counts broken or incomplete erasure lines as unreadable', async () => {
    const lines = [
      line({ time: '2026-12-01T00:00:00.000Z', msg: 'essay erased', tenantId: T, essayId: E1 }),
      line({ time: '2026-12-02T00:00:00.000Z', msg: 'essay erased', tenantId: T, essayId: E2, keyId: 'not-a-uuid' }),
      '{"msg":"essay erased", "tenantId": "cut off',
      line({ time: 1, msg: 'essay erased', tenantId: 'not-a-tenant', essayId: E1 }),
      line({ msg: 'essay erased', tenantId: T, essayId: E1 }),
    ];
    const log = await erasuresInLog(lines, new Date('2026-12-02T00:00:00.000Z'));
    expect(log.erasures).toEqual([{ tenantId: T, essayId: E2, keyId: null, at: new Date('2026-12-02T00:00:00.000Z') }]);
    expect(log.unreadable).toBe(3);
  });

  it("reads the lines a log collector kept wrapped (Docker's json-file `log`, a shipper's `message`), and counts a reshaped one as unreadable rather than skip it", async () => {
    const erased = line({ time: '2026-12-03T00:00:00.000Z', msg: 'essay erased', tenantId: T, essayId: E1 });
    const lines = [
      JSON.stringify({ log: `${erased}\n`, stream: 'stdout', time: '2026-12-03T00:00:00.1Z' }),
      JSON.stringify({ message: line({ time: '2026-12-04T00:00:00.000Z', msg: 'essay erased', tenantId: T, essayId: E2 }), host: 'web-1' }),
      // msg moved elsewhere by a shipper: the essay is named, but not as the service wrote it.
      JSON.stringify({ time: '2026-12-05T00:00:00.000Z', message: 'essay erased', tenantId: T, essayId: E1 }),
      JSON.stringify({ log: '{"msg":"essay erased", "tenantId": "cut', stream: 'stdout' }),
      // The phrase in what a school sent, logged in another of the service's lines: not an erasure, and no alarm.
      line({ time: '2026-12-06T00:00:00.000Z', msg: 'a payment event of another type was ignored', tenantId: T, eventId: 'evt essay erased', type: 'essay erased' }),
      JSON.stringify({ log: `${line({ msg: 'a payment event of another type was ignored', type: 'essay erased' })}\n`, stream: 'stdout' }),
    ];
    const log = await erasuresInLog(lines);
    expect(log.erasures.map((e) => e.essayId)).toEqual([E1, E2]);
    expect(log.unreadable).toBe(2);
  });

  it('reapplies each erasure through the erasure itself: an essay being graded is listed busy (run again later), one not there counted, another failure stops the replay', async () => {
    const at = new Date(1000);
    const logged = (essayId: string): LoggedErasure => ({ tenantId: T, essayId, keyId: null, at });
    const answers: Record<string, () => Promise<{ erasedAt: Date; again: boolean }>> = {
      [E1]: () => Promise.reject(new ApiError('CONFLICT', 'The essay is being graded right now')),
      [E2]: () => Promise.reject(ApiError.notFound('Essay')),
      [K]: () => Promise.resolve({ erasedAt: at, again: false }),
    };
    const erasure = { eraseFor: (_t: string, id: string) => answers[id]() };
    expect(await reapplyErasures(erasure, [logged(E1), logged(E2), logged(K)])).toEqual({ found: 3, erasedAgain: [K], alreadyErased: 0, notFound: 1, busy: [E1] });
    answers[K] = () => Promise.reject(new Error('the database went away'));
    await expect(reapplyErasures(erasure, [logged(K)])).rejects.toThrow('the database went away');
  });
});
