/**
 * Finds text in an essay that tries to steer the grader: requests for a score, orders to ignore
 * instructions, text dressed as a system or assistant message, chat-template tokens. The essay is
 * still graded (it is fenced and declared data in the prompt); a hit flags it for the teacher.
 */
interface Signal {
  name: string;
  pattern: RegExp;
}

const SIGNALS: Signal[] = [
  // Chinese
  { name: 'zh_ignore_instructions', pattern: /(忽略|无视|忘记|忘掉|不要理会|不用管)[^。！？\n]{0,8}(要求|指令|指示|提示词|规则|设定|评分标准)/ },
  { name: 'zh_score_request', pattern: /(请|务必|必须|一定要|麻烦|直接)(你)?(给|为|帮)?(我|这篇|本篇|此篇|该篇)?(的)?(作文|文章)?(打|评|判|给)(个|一个)?(满分|高分|最高分|一百分|100分|60分|六十分|优秀|一等)/ },
  { name: 'zh_score_request', pattern: /(给|为)(这篇|本篇|此篇|该篇)(作文|文章)?(打|评)(个|一个)?(满分|高分|最高分)/ },
  { name: 'zh_full_marks', pattern: /(本文|这篇作文|此文|本篇作文).{0,10}(应该|应当|必须)?(得|获得|评为)(满分|最高分)/ },
  { name: 'zh_role_override', pattern: /(你现在是|从现在(开始|起)你(是|扮演)|请扮演|假装你是|你的新(身份|任务)是)/ },
  { name: 'zh_system_message', pattern: /(系统|系統)(提示|消息|指令|通知)\s*[:：]/ },
  { name: 'zh_grader_address', pattern: /(阅卷|批改|评分)(老师|人员|模型|AI|系统)\s*[,，:：].{0,20}(请|务必|必须)/ },
  // English
  { name: 'en_ignore_instructions', pattern: /\b(ignore|disregard|forget|override)\b[^.\n]{0,30}\b(previous|above|prior|earlier|all|your|the)\b[^.\n]{0,20}\b(instructions?|prompts?|rules?|guidelines?|rubric|directions?)\b/i },
  { name: 'en_score_request', pattern: /\b(give|award|assign|grade|score|rate|mark)\b[^.\n]{0,30}\b(full marks|perfect score|maximum score|highest score|top marks|band 9|a perfect|100 ?(points|%|\/100)|10 ?\/ ?10|an? a\+?)\b/i },
  { name: 'en_role_override', pattern: /\b(you are now|from now on,? you|act as|pretend (to be|you are)|your new (role|task|instructions?))\b/i },
  { name: 'en_system_message', pattern: /(^|[\n。！？.!?]\s*)(system|assistant|developer)\s*(message|prompt)?\s*:/i },
  { name: 'en_grader_address', pattern: /\b(dear|attention|note to the) (grader|examiner|marker|ai|model|assistant)\b/i },
  // Chat templates and fences
  { name: 'chat_template_token', pattern: /<\|(im_start|im_end|system|user|assistant|endoftext)\|>|\[\/?INST\]|<<\/?SYS>>/i },
  { name: 'fence_escape', pattern: /<\/?\s*essay\b[^>]*>/i },
];

export interface InjectionReport {
  suspected: boolean;
  signals: string[];
}

export function detectInjection(text: string): InjectionReport {
  const normalized = text.normalize('NFKC');
  const signals = [...new Set(SIGNALS.filter((s) => s.pattern.test(normalized)).map((s) => s.name))];
  return { suspected: signals.length > 0, signals };
}
