/**
 * An API error in the console's language: the common codes in words (the service's own message,
 * English, kept beside them when it says something specific), and a VALIDATION_FAILED answer as
 * each field by its label ("第 1 项维度分数：must not be greater than 20"), not the API's path.
 */
import { dateTime } from './format';
import { hasMessage, intlLocale, translate, type Locale } from './i18n';

/** What the service answered: `{ error: { code, message, requestId, details } }` and the status. */
export interface FailureLike {
  status: number;
  code: string;
  message: string;
  details?: unknown;
  requestId?: string;
}

/** Codes whose message says nothing the words do not (or says it with internals): the words alone. */
const GENERIC = new Set(['UNAUTHENTICATED', 'FORBIDDEN', 'CSRF_TOKEN_INVALID', 'DATABASE_BUSY', 'INTERNAL', 'SERVICE_UNAVAILABLE']);

function message(locale: Locale, key: string): string | undefined {
  return hasMessage(key) ? translate(locale, key) : undefined;
}

/**
 * An API field path by its label: `alertWebhookUrl` → "提醒 Webhook 地址", `dimensions[0].score` →
 * "第 1 项维度分数" / "dimension 1 score"; a field the console has no label for keeps its name.
 */
export function fieldLabel(locale: Locale, field: string): string {
  const item = /^(\w+)\[(\d+)\](?:\.(\w+))?$/.exec(field);
  if (item) {
    const [, list, index, sub] = item;
    const itemKey = `fieldItem_${list}`;
    if (!hasMessage(itemKey)) return field;
    const named = translate(locale, itemKey, { n: Number(index) + 1 });
    // a dimension's key names the dimension itself
    if (!sub || sub === 'key') return named;
    const subLabel = message(locale, `fieldSub_${sub}`) ?? message(locale, `field_${sub}`) ?? sub;
    return translate(locale, 'fieldItemSub', { item: named, sub: subLabel });
  }
  return message(locale, `field_${field}`) ?? field;
}

/** The service's message without the field name it starts with ("title must be …" → "must be …"). */
function withoutField(field: string, text: string): string {
  const last = field.replace(/^.*[.\]]/, '');
  for (const name of [field, last]) {
    if (name && text.startsWith(`${name} `)) return text.slice(name.length + 1);
  }
  return text;
}

/**
 * The validation's own phrasings (class-validator's and the service's), after the field name, in
 * Chinese; a message none of them matches stays as the service wrote it.
 */
const ZH_PROBLEMS: Array<[RegExp, (m: RegExpExecArray) => string]> = [
  [/^must not be greater than (-?[\d.]+)$/, (m) => `不能大于 ${m[1]}`],
  [/^must not be less than (-?[\d.]+)$/, (m) => `不能小于 ${m[1]}`],
  [/^must be longer than or equal to (\d+) characters?$/, (m) => `至少 ${m[1]} 个字符`],
  [/^must be shorter than or equal to (\d+) characters?$/, (m) => `最多 ${m[1]} 个字符`],
  [/^must be longer than or equal to (\d+) and shorter than or equal to (\d+) characters$/, (m) => `须为 ${m[1]} 到 ${m[2]} 个字符`],
  [/^must not be blank$/, () => '不能为空白'],
  [/^should not be empty$/, () => '不能为空'],
  [/^must be a string$/, () => '须为文本'],
  [/^must be an integer number$/, () => '须为整数'],
  [/^must be a number conforming to the specified constraints$/, () => '须为数字'],
  [/^must be a boolean value$/, () => '须为是或否'],
  [/^must be an array$/, () => '须为列表'],
  [/^must contain no more than (\d+) elements$/, (m) => `最多 ${m[1]} 项`],
  [/^must contain at least (\d+) elements?$/, (m) => `至少 ${m[1]} 项`],
  [/^must be one of the following values: (.+)$/, (m) => `须为以下之一：${m[1]}`],
  [/^must be a UUID$/, () => '须为有效的编号'],
  [/^must be a valid ISO 8601 date string$/, () => '须为有效的日期时间'],
  [/^must use https:\/\/$/, () => '须以 https:// 开头'],
  // the service's own checks (src/…: overrides, settings, money, dates)
  [/^must be (-?[\d.]+)–(-?[\d.]+) in steps of ([\d.]+)$/, (m) => `须为 ${m[1]}–${m[2]} 之间的分数，步长 ${m[3]}`],
  [/^must be an integer from (-?[\d.]+) to (-?[\d.]+)$/, (m) => `须为 ${m[1]} 到 ${m[2]} 之间的整数`],
  [/^must be a number from (-?[\d.]+) to (-?[\d.]+)$/, (m) => `须为 ${m[1]} 到 ${m[2]} 之间的数字`],
  [/^must be a decimal string in CNY such as "([\d.]+)"$/, (m) => `须为人民币金额，例如 ${m[1]}`],
  [/^must be at most ([\d.]+) CNY$/, (m) => `不能超过 ${m[1]} 元`],
  [/^must have at most (\d+) decimals \(a nano-yuan\)$/, (m) => `最多 ${m[1]} 位小数`],
  [/^must be 1-100 letters, digits, spaces \(not at either end\) or (.+)$/, (m) => `须为 1–100 个字母、数字、中间的空格或 ${m[1]}`],
  [/^must not contain control characters$/, () => '不能包含控制字符'],
  [/^must be an IANA time zone such as "(.+)"$/, (m) => `须为时区名称，例如 ${m[1]}`],
  [/^must be a day, YYYY-MM-DD$/, () => '须为日期，格式 YYYY-MM-DD'],
  [/^must be YYYY-MM$/, () => '须为月份，格式 YYYY-MM'],
  [/^must be an ISO date such as (.+)$/, (m) => `须为日期，例如 ${m[1]}`],
  [/^must be after from$/, () => '须晚于开始日期'],
  [/^must be a positive integer$/, () => '须为正整数'],
  [/^(?:is empty|must not be empty)$/, () => '不能为空'],
  [/^must point to a public address: (.+)$/, (m) => `须指向公网地址（${m[1]}）`],
  [/^dimension "(.+)" is given twice$/, (m) => `维度“${m[1]}”重复填写`],
  [/^no dimension "(.+)" in rubric (.+)$/, (m) => `评分标准 ${m[2]} 中没有维度“${m[1]}”`],
  [/^webhook payment mode needs a webhookSecret$/, () => '选择支付服务商（Webhook）模式时须填写 Webhook 密钥'],
  [/^is needed with an alertWebhookUrl \(every event is signed with it\)$/, () => '填写告警 Webhook 地址时须同时填写签名密钥（每个事件都会签名）'],
  [/^must be above zero and in whole fen \(at most 2 decimals\) in webhook payment mode$/, () => '支付服务商（Webhook）模式下须大于零并精确到分（最多两位小数）'],
  [/^give a score, dimensions or a comment$/, () => '请填写总分、维度分数或评语'],
  [/^must be a JSON object$/, () => '须为 JSON 对象'],
  [/^must be in the future$/, () => '须晚于现在'],
  [/^must be within (\d+) days$/, (m) => `须在 ${m[1]} 天之内`],
  [/^must be (-?[\d.]+)–(-?[\d.]+) \(the rubric's maximum\)$/, (m) => `须为 ${m[1]}–${m[2]}（评分标准的满分）`],
];

/** A field's problem in the locale (Chinese for the phrasings above). */
export function problemText(locale: Locale, text: string): string {
  if (locale !== 'zh') return text;
  // class-validator on a list: "each value in alertThresholds must not be greater than 1"
  const each = /^each value in \w+ (.+)$/.exec(text);
  if (each) {
    const inner = problemText(locale, each[1]);
    return inner === each[1] ? text : `每一项${inner}`;
  }
  for (const [pattern, zh] of ZH_PROBLEMS) {
    const m = pattern.exec(text);
    if (m) return zh(m);
  }
  return text;
}

/** The error in words, in the locale; a date in it in `timeZone` (the school's). */
export function describeFailure(locale: Locale, f: FailureLike, timeZone = 'UTC'): string {
  // An erased essay: when, in the school's time and the page's language (the service's message has it in UTC).
  const erasedAt = f.code === 'NOT_FOUND' && f.details && typeof f.details === 'object' ? (f.details as { erasedAt?: unknown }).erasedAt : undefined;
  if (typeof erasedAt === 'string') return translate(locale, 'errErased', { when: dateTime(erasedAt, timeZone, intlLocale(locale)) });
  if (f.code === 'VALIDATION_FAILED' && Array.isArray(f.details) && f.details.length) {
    return (f.details as Array<{ field?: unknown; message?: unknown }>)
      .map((d) => {
        const text = typeof d.message === 'string' ? d.message : '';
        const field = typeof d.field === 'string' ? d.field : '';
        // "body" is the request as a whole: its message is the problem
        if (!field || field === 'body') return problemText(locale, text);
        return translate(locale, 'fieldProblem', { field: fieldLabel(locale, field), message: problemText(locale, withoutField(field, text)) });
      })
      .join(translate(locale, 'listSeparator'));
  }
  const words = message(locale, `err_${f.code}`);
  if (!words) return f.message;
  if (f.code === 'INTERNAL' && f.requestId) return translate(locale, 'errorDetail', { message: words, detail: translate(locale, 'errorRequestId', { id: f.requestId }) });
  if (GENERIC.has(f.code) || !f.message || f.message === words) return words;
  return translate(locale, 'errorDetail', { message: words, detail: f.message });
}

/** Any error (an API failure, a network failure, something else) in words. */
export function describeError(locale: Locale, err: unknown, isFailure: (e: unknown) => e is FailureLike, timeZone = 'UTC'): string {
  if (isFailure(err)) return describeFailure(locale, err, timeZone);
  // fetch rejects with a TypeError when the service cannot be reached
  if (err instanceof TypeError && /fetch|network/i.test(err.message)) return translate(locale, 'errNetwork');
  return err instanceof Error ? err.message : String(err);
}
