import { ApiFailure, problems } from './api/client';
import { fieldLabel } from './errors';

const validation = (...details: Array<{ field: string; message: string }>) =>
  new ApiFailure(400, 'VALIDATION_FAILED', `Invalid request: ${details.map((d) => `${d.field}: ${d.message}`).join('; ')}`, details);

describe('an API error in the console’s language', () => {
  it('names each invalid field by its label, not by the API’s path, in the locale', () => {
    const err = validation({ field: 'alertWebhookUrl', message: 'alertWebhookUrl must use https://' }, { field: 'dimensions[0].score', message: 'must not be greater than 20' });
    expect(problems(err, 'zh')).toBe('提醒 Webhook 地址：须以 https:// 开头；第 1 项维度分数：不能大于 20');
    expect(problems(err, 'en')).toBe('Alert webhook URL: must use https://; dimension 1 score: must not be greater than 20');
    expect(problems(err, 'zh')).not.toMatch(/alertWebhookUrl|dimensions\[/);
  });

  it('reads the request-wide problem ("body") as its message, and an unknown field by its name', () => {
    expect(problems(validation({ field: 'body', message: 'give a score, dimensions or a comment' }), 'zh')).toBe('give a score, dimensions or a comment');
    expect(problems(validation({ field: 'someNewField', message: 'must be a string' }), 'zh')).toBe('someNewField：须为文本');
    // The validation's phrasings in Chinese, after the field's name; one it does not know stays as written.
    expect(problems(validation({ field: 'title', message: 'title must be shorter than or equal to 200 characters' }), 'zh')).toBe('标题：最多 200 个字符');
    expect(problems(validation({ field: 'name', message: 'name must not be blank' }), 'zh')).toMatch(/：不能为空白$/);
    expect(problems(validation({ field: 'paymentMode', message: 'paymentMode must be one of the following values: invoice, webhook' }), 'zh')).toMatch(/：须为以下之一：invoice, webhook$/);
    expect(problems(validation({ field: 'studentRef', message: 'studentRef must be 1-100 letters, digits or ._:@-/' }), 'zh')).toMatch(/：must be 1-100 letters, digits or \._:@-\/$/);
    expect(problems(validation({ field: 'title', message: 'title must be shorter than or equal to 200 characters' }), 'en')).toBe('Title: must be shorter than or equal to 200 characters');
  });

  it('labels the fields the console’s forms send', () => {
    for (const field of ['alertThresholds', 'deepReviewPrice', 'webhookSecret', 'paymentMode', 'monthlyCap', 'name', 'title', 'prompt', 'text', 'score', 'comment', 'studentRef', 'essayRetentionDays', 'shadowRate']) {
      expect({ field, zh: fieldLabel('zh', field) }).not.toEqual({ field, zh: field });
      expect(fieldLabel('zh', field)).not.toMatch(/[a-z][A-Z]/);
    }
    expect(fieldLabel('en', 'dimensions[2].key')).toBe('dimension 3');
    expect(fieldLabel('zh', 'essays[4].text')).toBe('第 5 篇作文正文');
    expect(fieldLabel('zh', 'things[0].score')).toBe('things[0].score');
  });

  it('puts the common codes in words, keeping the service’s message where it is specific', () => {
    expect(problems(new ApiFailure(401, 'UNAUTHENTICATED', 'Invalid API key'), 'zh')).toBe('密钥无效或已吊销。');
    expect(problems(new ApiFailure(401, 'UNAUTHENTICATED', 'Invalid API key'), 'en')).toBe('This key is not valid or was revoked.');
    expect(problems(new ApiFailure(503, 'DATABASE_BUSY', 'the database did not answer in time'), 'zh')).toBe('数据库未能及时响应，没有保存任何内容，请重试。');
    expect(problems(new ApiFailure(409, 'CONFLICT', 'the essay is being graded'), 'zh')).toBe('当前状态下无法执行此操作。（the essay is being graded）');
    expect(problems(new ApiFailure(422, 'NOT_ENOUGH_LABELS', 'needs 20 overridden essays, has 3'), 'en')).toBe(
      'Not enough essays corrected by a teacher yet: a calibration needs at least 20 on this assignment. (needs 20 overridden essays, has 3)',
    );
    expect(problems(new ApiFailure(500, 'INTERNAL', 'boom at line 3', undefined, 'req-42'), 'zh')).toBe('服务内部出错。（请求编号 req-42）');
    for (const code of ['RATE_LIMITED', 'BUDGET_EXHAUSTED', 'NO_PROVIDER_AVAILABLE', 'PAYLOAD_TOO_LARGE', 'NOT_FOUND', 'FORBIDDEN']) {
      expect(problems(new ApiFailure(400, code, 'x'), 'zh')).toMatch(/^[^a-z]+（x）$|^[^a-z]+$/);
    }
  });

  it('shows a code newer than the console by the service’s message, and a failed fetch in words', () => {
    expect(problems(new ApiFailure(418, 'TEAPOT', 'I am a teapot'), 'zh')).toBe('I am a teapot');
    expect(problems(new TypeError('Failed to fetch'), 'zh')).toBe('无法连接到服务，请检查网络后重试。');
    expect(problems(new Error('plain'), 'zh')).toBe('plain');
  });
});
