import { ApiError } from './errors';
import { decodeCursor, encodeCursor, keysetPage, pageLimit } from './pagination';

describe('pagination', () => {
  it('reads a page size: the default when absent, a 400 naming limit when out of range, or one more problem among the route\'s', () => {
    expect(pageLimit(undefined, 200)).toBe(200);
    expect(pageLimit(undefined, 100, 20)).toBe(20);
    expect(pageLimit('7', 100, 20)).toBe(7);
    expect(pageLimit('007', 100, 20)).toBe(7);
    expect(pageLimit('0000000100', 100, 20)).toBe(100);
    for (const bad of ['0', '101', '2.5', 'x', ['5', '6'], '0x5', '1e1', '2.0', ' 7', '7 ', '+7', '', '-1', '99999999999999999999']) {
      const err = (() => {
        try {
          pageLimit(bad, 100, 20);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(ApiError);
      expect((err as ApiError).details).toEqual([{ field: 'limit', message: 'limit must be an integer from 1 to 100' }]);
    }
    const problems = [{ field: 'status', message: 'status must be one of …' }];
    expect(pageLimit('0', 100, 20, problems)).toBe(20);
    expect(problems.map((p) => p.field)).toEqual(['status', 'limit']);
  });

  it('keeps a page of limit rows and the cursor of the last one only when there is more', () => {
    const rows = [1, 2, 3].map((i) => ({ id: `00000000-0000-4000-8000-00000000000${i}`, cursor_at: `2026-12-01 08:00:0${i}.123456+00` }));
    expect(keysetPage(rows.slice(0, 2), 2)).toEqual({ rows: rows.slice(0, 2), nextCursor: null });
    const page = keysetPage(rows, 2);
    expect(page.rows).toEqual(rows.slice(0, 2));
    expect(decodeCursor(page.nextCursor)).toEqual({ at: rows[1].cursor_at, id: rows[1].id });
    expect(page.nextCursor).toBe(encodeCursor({ at: rows[1].cursor_at, id: rows[1].id }));
  });
});
