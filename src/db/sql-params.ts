/**
 * Numbered parameters for a statement assembled from parts: `next(value)` adds a value and answers
 * its placeholder ("$28"), so no part has to know how many parameters came before it.
 * `next.values()` is the whole parameter list, `initial` first.
 */
export interface SqlParams {
  (value: unknown): string;
  values(): unknown[];
}

export function sqlParams(firstPlaceholder: number, initial: unknown[] = []): SqlParams {
  const added: unknown[] = [];
  const next = ((value: unknown) => {
    added.push(value);
    return `$${firstPlaceholder + added.length - 1}`;
  }) as SqlParams;
  next.values = () => [...initial, ...added];
  return next;
}
