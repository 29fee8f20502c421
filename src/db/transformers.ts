import { ValueTransformer } from 'typeorm';

/** BIGINT columns holding nano-yuan: pg hands them over as strings; keep them exact as bigint. */
export const bigintNanos: ValueTransformer = {
  to: (value: bigint | null | undefined) => (value === null || value === undefined ? value : value.toString()),
  from: (value: string | null) => (value === null ? null : BigInt(value)),
};

/** BIGINT counters that stay well inside Number's safe range (token counts, latencies). */
export const bigintNumber: ValueTransformer = {
  to: (value: number | null | undefined) => value,
  from: (value: string | null) => {
    if (value === null) return null;
    const n = Number(value);
    if (!Number.isSafeInteger(n)) throw new RangeError(`bigint column value ${value} exceeds the safe integer range`);
    return n;
  },
};
