import { derivedUuid, UUID } from './ids';

describe('derivedUuid', () => {
  it('gives the same UUID for the same purpose and id, another for another of either', () => {
    const id = '40002aa4-8d43-402c-9d57-de87692c6b3a';
    const a = derivedUuid('lease-fallback', id);
    expect(a).toMatch(UUID);
    expect(a[14]).toBe('5'); // written as a version-5 UUID
    expect(derivedUuid('lease-fallback', id)).toBe(a);
    expect(derivedUuid('other', id)).not.toBe(a);
    expect(derivedUuid('lease-fallback', 'da0b3907-8a2f-4001-92f2-68878a151719')).not.toBe(a);
    expect(a).not.toBe(id);
  });
});
