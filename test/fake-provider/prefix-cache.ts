/**
 * The providers' automatic prefix cache: which leading tokens of a prompt were seen before by the
 * same (dialect, model, API key), in 64-token blocks, rounded to each dialect's unit and minimum.
 * Decides the `cached_tokens` / `prompt_cache_hit_tokens` of every completion's usage.
 */
import type { Dialect } from './presets';

/**
 * Prefix-cache granularity: cached tokens are a multiple of `unit`, and 0 below `min`. DashScope's
 * implicit cache starts at 1,024 tokens; DeepSeek states no unit size any more (64 is kept).
 */
export const PREFIX_CACHE_RULES: Record<Dialect, { unit: number; min: number }> = {
  deepseek: { unit: 64, min: 64 },
  dashscope: { unit: 64, min: 1024 },
  zhipu: { unit: 64, min: 64 },
  openai: { unit: 128, min: 1024 },
};

const CACHE_BLOCK = 64; // the greatest common divisor of the dialects' units
const PROMPTS_PER_CACHE = 2000;
const MAX_CACHES = 1000;

/**
 * Remembers the last {@link PROMPTS_PER_CACHE} prompts of one (dialect, model, key) as a trie of
 * 64-token blocks and tells how many leading full blocks a new prompt shares with any of them.
 * Each trie node is keyed by its parent's id and its block's tokens (exact, no hashing) and counts
 * the remembered prompts that pass through it, so evicting the oldest prompt frees its nodes.
 */
class PrefixCache {
  private readonly nodes = new Map<string, { id: number; refs: number }>();
  private readonly prompts: string[][] = [];
  private head = 0; // index of the oldest prompt in `prompts` (a ring once full)
  private nextId = 1;

  /** Records the prompt and returns the tokens of its longest full-block prefix seen before. */
  lookupAndAdd(seq: readonly number[]): number {
    const blocks = Math.floor(seq.length / CACHE_BLOCK);
    const path: string[] = [];
    let parent = 0;
    let matched = 0;
    let matching = true;
    for (let b = 0; b < blocks; b++) {
      const key = `${parent}:${blockKey(seq, b * CACHE_BLOCK)}`;
      let node = matching ? this.nodes.get(key) : undefined;
      if (node) {
        matched++;
        node.refs++;
      } else {
        matching = false; // no node below a missing one can exist
        node = { id: this.nextId++, refs: 1 };
        this.nodes.set(key, node);
      }
      path.push(key);
      parent = node.id;
    }
    this.remember(path);
    return matched * CACHE_BLOCK;
  }

  private remember(path: string[]): void {
    if (this.prompts.length < PROMPTS_PER_CACHE) {
      this.prompts.push(path);
      return;
    }
    for (const key of this.prompts[this.head]) {
      const node = this.nodes.get(key);
      if (node && --node.refs <= 0) this.nodes.delete(key);
    }
    this.prompts[this.head] = path;
    this.head = (this.head + 1) % PROMPTS_PER_CACHE;
  }
}

/** A block of 64 token ids (each < 2^32) as a 128-character string. */
function blockKey(seq: readonly number[], start: number): string {
  const codes = new Array<number>(CACHE_BLOCK * 2);
  for (let i = 0; i < CACHE_BLOCK; i++) {
    const t = seq[start + i];
    codes[2 * i] = t >>> 16;
    codes[2 * i + 1] = t & 0xffff;
  }
  return String.fromCharCode(...codes);
}

/**
 * The prefix caches of every (dialect, model, API key) seen, the last {@link MAX_CACHES} used kept
 * (least recently used dropped first).
 */
export class PrefixCaches {
  private readonly caches = new Map<string, PrefixCache>();

  /**
   * Records the prompt sequence in its cache and returns its cached tokens as the dialect reports
   * them: the shared prefix rounded down to the dialect's unit, 0 below its minimum.
   */
  cachedTokens(dialect: Dialect, model: string, auth: string, seq: readonly number[]): number {
    const key = `${dialect}\u0000${model}\u0000${auth}`;
    let cache = this.caches.get(key);
    if (cache) {
      this.caches.delete(key); // keep the map in least-recently-used order
    } else {
      cache = new PrefixCache();
      if (this.caches.size >= MAX_CACHES) {
        const oldest = this.caches.keys().next();
        if (!oldest.done) this.caches.delete(oldest.value);
      }
    }
    this.caches.set(key, cache);
    const { unit, min } = PREFIX_CACHE_RULES[dialect];
    let cached = Math.floor(cache.lookupAndAdd(seq) / unit) * unit;
    if (cached < min) cached = 0;
    return cached;
  }

  clear(): void {
    this.caches.clear();
  }
}
