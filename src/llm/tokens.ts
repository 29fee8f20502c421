import type { TokenizerProfile } from './catalog';
import type { ChatMessage } from './types';

/**
 * Upper bounds of the tokens a provider can bill for a prompt, used to reserve budget before a
 * call. They are proofs, not guesses: every model in the catalog tokenizes with byte-level BPE
 * (tiktoken's o200k/cl100k for OpenAI; Qwen, DeepSeek and GLM ship byte-level BPE vocabularies
 * too), which never makes a token of less than one byte of UTF-8, so a text of n bytes is at most
 * n tokens, whatever it holds — random symbols, base64, emoji, rare Han characters. The chat
 * template adds a fixed number of tokens per message and per request (the family's perMessage and
 * perRequest in the catalog). A provider that reports more than this bound is an incident
 * (GatewayService, BudgetService). The price is a wide margin on ordinary text (about 3× the real
 * count for Chinese, 4× for English: bench/calibrate-tokens.ts): the reservation is released as soon
 * as the call is settled at its real cost.
 */

/** The UTF-8 length of a string, counted without encoding it (a lone surrogate encodes as U+FFFD, 3 bytes). */
export function utf8Bytes(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4; // a surrogate pair: one astral code point
      i++;
    } else n += 3;
  }
  return n;
}

/** At most this many tokens for the text alone. */
export function estimateTextTokens(text: string, _p?: TokenizerProfile): number {
  return utf8Bytes(text);
}

/** Upper bound of the prompt tokens a chat request can be billed for. */
export function estimatePromptTokens(messages: ChatMessage[], p: TokenizerProfile): number {
  let total = p.perRequest;
  for (const m of messages) total += p.perMessage + utf8Bytes(m.content);
  return total;
}

/** Does the text fit `maxTokens` whatever the tokenizer makes of it? Used to decide a head-and-tail cut. */
export function fitsTokens(text: string, maxTokens: number, p?: TokenizerProfile): boolean {
  return estimateTextTokens(text, p) <= maxTokens;
}
