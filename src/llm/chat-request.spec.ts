import { ApiError } from '../common/errors';
import { normalizeChatContent, parseChatRequest } from './chat-request';

function problems(body: unknown): string[] {
  try {
    parseChatRequest(body);
  } catch (err) {
    return ((err as ApiError).details as Array<{ field: string }>).map((d) => d.field);
  }
  return [];
}

describe('parseChatRequest', () => {
  it('reads tier aliases, catalog models and OpenAI parameters', () => {
    const r = parseChatRequest({
      model: 'inkstone-deep',
      messages: [{ role: 'developer', content: [{ type: 'text', text: 'Be brief.' }] }, { role: 'user', content: 'hi' }],
      max_completion_tokens: 50,
      temperature: 0,
      stop: 'END',
      stream: true,
      stream_options: { include_usage: true },
      response_format: { type: 'json_object' },
      user: 'ignored',
    });
    expect(r).toMatchObject({ target: { tier: 'deep' }, maxTokens: 50, temperature: 0, stop: ['END'], stream: true, includeUsage: true, jsonMode: true });
    expect(r.messages).toEqual([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hi' }]);
    expect(parseChatRequest({ model: 'deepseek-flash', messages: [{ role: 'user', content: 'x' }] }).target).toEqual({ model: 'deepseek-flash' });
  });

  it('names every bad field', () => {
    expect(problems({ model: 5, messages: [{ role: 'robot', content: 'x' }, { role: 'user', content: 7 }], temperature: 9, n: 3, stream: 'yes' }).sort()).toEqual(
      ['messages[0].role', 'messages[1].content', 'model', 'n', 'stream', 'temperature'].sort(),
    );
    expect(problems({ model: 'inkstone-standard', messages: [] })).toEqual(['messages']);
    expect(problems([1, 2])).toEqual(['body']);
  });

  it('normalizes chat content without touching indentation', () => {
    expect(normalizeChatContent('a\u200B  \r\n    indented\t\r\n')).toBe('a\n    indented\n');
  });

  it('drops spaces and tabs only where a line ends, whatever their number', () => {
    expect(normalizeChatContent('keep  inner \t spaces  \nand\u2028 ')).toBe('keep  inner \t spaces\nand\u2028');
    expect(normalizeChatContent(' '.repeat(80_000) + 'x')).toBe(' '.repeat(80_000) + 'x');
    expect(normalizeChatContent('x' + ' \t'.repeat(40_000))).toBe('x');
    expect(normalizeChatContent('no trailing')).toBe('no trailing');
  });
});
