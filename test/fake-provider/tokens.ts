/**
 * Token counting with the real o200k_base tokenizer (js-tiktoken), cached per text and per regex
 * piece so benchmarks are not limited by it, and the prompt as one token sequence (the chat
 * template's tokens around each message) that the prefix cache works on.
 */
import { getEncoding, type Tiktoken } from 'js-tiktoken';

/** Tokens added per message (role and delimiters) and once per prompt (the reply primer). */
export const TOKENS_PER_MESSAGE = 4;
export const TOKENS_PER_PROMPT = 3;

let encoder: Tiktoken | undefined;
const tokenCache = new Map<string, number[]>();
const TOKEN_CACHE_MAX_TOKENS = 2_000_000; // about 16 MB of token ids
let tokenCacheSize = 0;

/**
 * The o200k_base tokens of a text; special-token strings (e.g. "<|endoftext|>") count as plain text
 * (for any other text this is exactly `encode(text)`). Results are kept in a least-recently-used
 * cache because prompts repeat their instructions.
 */
export function encodeTokens(text: string): readonly number[] {
  const hit = tokenCache.get(text);
  if (hit) {
    tokenCache.delete(text);
    tokenCache.set(text, hit);
    return hit;
  }
  encoder ??= getEncoding('o200k_base');
  const tokens = encodeByPieces(encoder, text);
  tokenCache.set(text, tokens);
  tokenCacheSize += tokens.length;
  while (tokenCacheSize > TOKEN_CACHE_MAX_TOKENS) {
    const oldest = tokenCache.entries().next();
    if (oldest.done) break;
    tokenCache.delete(oldest.value[0]);
    tokenCacheSize -= oldest.value[1].length;
  }
  return tokens;
}

/**
 * Byte-pair encoding is the expensive part, and it works on the pieces the encoding's regex cuts
 * the text into, each on its own; the same piece always gives the same tokens. Remembering pieces
 * (words, phrases between punctuation) makes new essays cheap to count, so the fake provider is
 * not what limits a benchmark. Same tokens as encoding the whole text at once.
 */
const pieceCache = new Map<string, number[]>();
const PIECE_CACHE_MAX = 400_000;

function encodeByPieces(enc: Tiktoken, text: string): number[] {
  const pattern = (enc as unknown as { patStr: string }).patStr;
  const out: number[] = [];
  for (const m of text.matchAll(new RegExp(pattern, 'ug'))) {
    const piece = m[0];
    let tokens = pieceCache.get(piece);
    if (!tokens) {
      tokens = enc.encode(piece, [], []);
      if (pieceCache.size >= PIECE_CACHE_MAX) pieceCache.clear();
      pieceCache.set(piece, tokens);
    }
    for (const t of tokens) out.push(t);
  }
  return out;
}

/** Number of o200k_base tokens in a text. */
export function countTokens(text: string): number {
  return encodeTokens(text).length;
}

/** prompt_tokens as the fake provider reports them: Σ (tokens(content) + 4) + 3. */
export function countPromptTokens(messages: ReadonlyArray<{ content: string }>): number {
  let n = TOKENS_PER_PROMPT;
  for (const m of messages) n += countTokens(m.content) + TOKENS_PER_MESSAGE;
  return n;
}

// Token ids outside the o200k vocabulary that stand for the chat template around each message, so
// that the prompt's token sequence is exactly prompt_tokens long.
const T_START = 0x100000;
const T_SEP = 0x100001;
const T_END = 0x100002;
const T_ROLE_BASE = 0x100010;

function roleToken(role: string): number {
  let h = 0;
  for (let i = 0; i < role.length; i++) h = (h * 31 + role.charCodeAt(i)) & 0xffff;
  return T_ROLE_BASE + h;
}

/** The prompt as one token sequence: per message [START, role, SEP, …content, END], then [START, assistant, SEP]. */
export function promptSequence(messages: ReadonlyArray<{ role: string; tokens: readonly number[] }>): number[] {
  const seq: number[] = [];
  for (const m of messages) {
    seq.push(T_START, roleToken(m.role), T_SEP);
    for (const t of m.tokens) seq.push(t);
    seq.push(T_END);
  }
  seq.push(T_START, roleToken('assistant'), T_SEP);
  return seq;
}
