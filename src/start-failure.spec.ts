import { ConfigError } from './config/app-config';
import { startFailureLine } from './start-failure';

describe('startFailureLine', () => {
  it('names a bad variable in one line', () => {
    expect(startFailureLine(new ConfigError('PORT', 'must be an integer (got "eighty")'))).toBe('inkstone: configuration error: PORT must be an integer (got "eighty")');
  });

  it("tells a refused connection by its message and code, and each address's when a host has several (an AggregateError's own message is empty)", () => {
    const one = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    expect(startFailureLine(one)).toBe('inkstone: failed to start: connect ECONNREFUSED 127.0.0.1:5432 (ECONNREFUSED)');
    const both = Object.assign(new AggregateError([new Error('connect ECONNREFUSED ::1:5432'), new Error('connect ECONNREFUSED 127.0.0.1:5432')], ''), { code: 'ECONNREFUSED' });
    expect(startFailureLine(both)).toBe('inkstone: failed to start: connect ECONNREFUSED ::1:5432; connect ECONNREFUSED 127.0.0.1:5432 (ECONNREFUSED)');
    const noDatabase = Object.assign(new Error('database "nope" does not exist'), { code: '3D000' });
    expect(startFailureLine(noDatabase)).toBe('inkstone: failed to start: database "nope" does not exist (3D000)');
  });

  it('gives anything else its stack', () => {
    const err = new TypeError('boom');
    expect(startFailureLine(err)).toBe(`inkstone: failed to start: ${err.stack}`);
    expect(startFailureLine('a string')).toBe('inkstone: failed to start: a string');
  });
});
