import { ApiFailure, problems, setErrorTimeZone } from './api/client';
import { fieldLabel } from './errors';
import { dateTime } from './format';

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
    expect(problems(validation({ field: 'body', message: 'give a score, dimensions or a comment' }), 'en')).toBe('give a score, dimensions or a comment');
    expect(problems(validation({ field: 'body', message: 'the body must be an event object' }), 'zh')).toBe('the body must be an event object');
    expect(problems(validation({ field: 'someNewField', message: 'must be a string' }), 'zh')).toBe('someNewField：须为文本');
    // The validation's phrasings in Chinese, after the field's name; one it does not know stays as written.
    expect(problems(validation({ field: 'title', message: 'title must be shorter than or equal to 200 characters' }), 'zh')).toBe('标题：最多 200 个字符');
    expect(problems(validation({ field: 'name', message: 'name must not be blank' }), 'zh')).toMatch(/：不能为空白$/);
    expect(problems(validation({ field: 'paymentMode', message: 'paymentMode must be one of the following values: invoice, webhook' }), 'zh')).toMatch(/：须为以下之一：invoice, webhook$/);
    expect(problems(validation({ field: 'stop', message: 'stop must be a string or up to 4 strings' }), 'zh')).toMatch(/：must be a string or up to 4 strings$/);
    expect(problems(validation({ field: 'title', message: 'title must be shorter than or equal to 200 characters' }), 'en')).toBe('Title: must be shorter than or equal to 200 characters');
  });

  it('tells the service’s own checks in Chinese: an override off the rubric’s steps, settings, money, the request as a whole', () => {
    expect(problems(validation({ field: 'dimensions[0].score', message: 'score must be 0–20 in steps of 1' }, { field: 'score', message: 'score must be 0–9 in steps of 0.5' }), 'zh')).toBe(
      '第 1 项维度分数：须为 0–20 之间的分数，步长 1；分数：须为 0–9 之间的分数，步长 0.5',
    );
    expect(problems(validation({ field: 'dimensions[0].score', message: 'score must be 0–20 in steps of 1' }), 'en')).toBe('dimension 1 score: must be 0–20 in steps of 1');
    expect(problems(validation({ field: 'body', message: 'give a score, dimensions or a comment' }), 'zh')).toBe('请填写总分、维度分数或评语');
    expect(problems(validation({ field: 'studentRef', message: "studentRef must be 1-100 letters, digits, spaces (not at either end) or ._:@-/#'·・()（）[]" }), 'zh')).toBe(
      "学生：须为 1–100 个字母、数字、中间的空格或 ._:@-/#'·・()（）[]",
    );
    expect(problems(validation({ field: 'alertThresholds', message: 'each value in alertThresholds must not be greater than 1' }), 'zh')).toBe('提醒阈值：每一项不能大于 1');
    expect(problems(validation({ field: 'monthlyCap', message: 'monthlyCap must be a decimal string in CNY such as "5000.00"' }), 'zh')).toMatch(/：须为人民币金额，例如 5000\.00$/);
    expect(problems(validation({ field: 'monthlyCap', message: 'monthlyCap must have at most 9 decimals (a nano-yuan)' }), 'zh')).toMatch(/：最多 9 位小数$/);
    expect(problems(validation({ field: 'shadowRate', message: 'shadowRate must be a number from 0 to 0.2' }), 'zh')).toMatch(/：须为 0 到 0\.2 之间的数字$/);
    expect(problems(validation({ field: 'essayRetentionDays', message: 'essayRetentionDays must be an integer from 1 to 3650' }), 'zh')).toMatch(/：须为 1 到 3650 之间的整数$/);
    expect(problems(validation({ field: 'webhookSecret', message: 'webhook payment mode needs a webhookSecret' }), 'zh')).toMatch(/：选择支付服务商（Webhook）模式时须填写 Webhook 密钥$/);
    expect(problems(validation({ field: 'alertWebhookSecret', message: 'alertWebhookSecret is needed with an alertWebhookUrl (every event is signed with it)' }), 'zh')).toMatch(
      /：填写告警 Webhook 地址时须同时填写签名密钥（每个事件都会签名）$/,
    );
    expect(problems(validation({ field: 'deepReviewPrice', message: 'deepReviewPrice must be above zero and in whole fen (at most 2 decimals) in webhook payment mode' }), 'zh')).toMatch(
      /：支付服务商（Webhook）模式下须大于零并精确到分（最多两位小数）$/,
    );
    expect(problems(validation({ field: 'dimensions[1].key', message: 'dimension "content" is given twice' }), 'zh')).toBe('第 2 项维度：维度“content”重复填写');
    expect(problems(validation({ field: 'dueBy', message: 'dueBy must be in the future' }), 'zh')).toBe('截止时间：须晚于现在');
    expect(problems(validation({ field: 'dueBy', message: 'dueBy must be within 60 days' }), 'zh')).toBe('截止时间：须在 60 天之内');
    expect(problems(validation({ field: 'passMark', message: "passMark must be 0–60 (the rubric's maximum)" }), 'zh')).toBe('及格分：须为 0–60（评分标准的满分）');
    expect(problems(validation({ field: 'dueBy', message: 'dueBy must be in the future' }), 'en')).toBe('Due by: must be in the future');
    for (const zh of [
      problems(validation({ field: 'essays[0].text', message: 'text is empty' }), 'zh'),
      problems(validation({ field: 'from', message: 'from must be a day, YYYY-MM-DD' }), 'zh'),
      problems(validation({ field: 'alertWebhookUrl', message: 'alertWebhookUrl must point to a public address: 10.0.0.1 is private' }), 'zh'),
    ]) {
      expect(zh).not.toMatch(/\b(must|is empty|give)\b/);
    }
  });

  it("says when an erased essay was erased, in the school's time zone and the page's language", () => {
    setErrorTimeZone('Asia/Shanghai');
    try {
      const erased = new ApiFailure(404, 'NOT_FOUND', 'The essay was erased at 2026-12-05T07:44:17.392Z', { erasedAt: '2026-12-05T07:44:17.392Z' });
      expect(problems(erased, 'en')).toBe(`This essay was erased on ${dateTime('2026-12-05T07:44:17.392Z', 'Asia/Shanghai', 'en-GB')}.`);
      expect(problems(erased, 'en')).toContain('15:44');
      expect(problems(erased, 'zh')).toBe(`这篇作文已于 ${dateTime('2026-12-05T07:44:17.392Z', 'Asia/Shanghai', 'zh-CN')} 删除。`);
      // any other 404 as before
      expect(problems(new ApiFailure(404, 'NOT_FOUND', 'Essay not found'), 'en')).toContain('Not found');
    } finally {
      setErrorTimeZone('UTC');
    }
  });

  it('labels the fields the console’s forms send', () => {
    for (const field of ['alertThresholds', 'deepReviewPrice', 'webhookSecret', 'paymentMode', 'monthlyCap', 'name', 'title', 'prompt', 'text', 'score', 'comment', 'studentRef', 'essayRetentionDays', 'shadowRate', 'dueBy', 'passMark']) {
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
