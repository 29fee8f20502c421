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
  it('refuses by name what the gateway would otherwise drop (tools, log-probabilities, penalties), and takes their neutral values', () => {
    const base = { model: 'inkstone-standard', messages: [{ role: 'user', content: 'weather?' }] };
    const tool = { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } };
    expect(problems({ ...base, tools: [tool], tool_choice: 'required' })).toEqual(['tools', 'tool_choice']);
    expect(problems({ ...base, functions: [tool.function], function_call: { name: 'get_weather' } })).toEqual(['functions', 'function_call']);
    expect(problems({ ...base, logprobs: true, top_logprobs: 2 })).toEqual(['logprobs', 'top_logprobs']);
    expect(problems({ ...base, top_logprobs: 2 })).toEqual(['top_logprobs']);
    expect(problems({ ...base, presence_penalty: 0.5, frequency_penalty: -1, logit_bias: { '50256': -100 } })).toEqual(['presence_penalty', 'frequency_penalty', 'logit_bias']);
    // What clients send by default is no request for any of it.
    expect(problems({ ...base, tools: [], tool_choice: 'auto', logprobs: false, top_logprobs: 0, presence_penalty: 0, frequency_penalty: 0, logit_bias: {}, parallel_tool_calls: true })).toEqual([]);
  });

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
