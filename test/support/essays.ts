/**
 * Student essays for tests and benchmarks: a deterministic generator (seeded) that writes Chinese
 * 作文 and English essays of realistic length from topic sentence banks, so tests get varied,
 * unrelated essays on the same topic, and benchmarks get a month of traffic without fixtures.
 */

export type Lang = 'zh' | 'en';

/** A small, fast, seeded PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ZH_OPENINGS = [
  '人们常说，成长就像一棵树，需要阳光，也需要风雨。',
  '在我的记忆里，有一件事情像一颗星星，一直在心中闪烁。',
  '时间过得真快，转眼间我已经是一名初中生了。',
  '每个人的心中都有一盏灯，它照亮我们前进的道路。',
  '生活中并不缺少美，而是缺少发现美的眼睛。',
  '一滴水可以折射出太阳的光辉，一件小事也可以体现一个人的品格。',
  '那年夏天，蝉鸣声声，阳光透过树叶洒在地上，斑斑点点。',
  '“不经历风雨，怎么见彩虹？”这句歌词我从小就会唱，可直到那一天我才真正明白它的意思。',
];

/**
 * Sentences are built from templates filled with words drawn from large banks, so that two essays
 * share few runs of five characters: unrelated essays on one topic score well below 0.1 in 5-gram
 * Jaccard similarity, as real ones do.
 */
const ZH_WORDS: Record<string, string[]> = {
  n: ('阳光 雨伞 书包 黑板 窗台 月季 老槐树 自行车 作业本 钢琴 厨房 操场 河堤 稻田 山路 车站 灯光 晚霞 星空 落叶 雪花 炊烟 风筝 信封 照片 围巾 毛衣 钥匙 台灯 日记 课本 粉笔 球鞋 奖状 茶杯 碗筷 菜园 石桥 小巷 屋檐 池塘 柳枝 麦田 果园 葡萄架 藤椅 木门 铁轨 站台 码头 渔船 灯塔 沙滩 贝壳 蒲公英 向日葵 桂花 梅花 竹林 松树 喜鹊 燕子 蜻蜓 萤火虫 小狗 花猫 金鱼 蚂蚁 蜜蜂 蝴蝶 闹钟 收音机 电视 手机 电脑 相机 地图 字典 毛笔 砚台 宣纸 围棋 象棋 篮球 跑道 讲台 课桌 走廊 楼梯 阳台 院子 篱笆 炉火 月饼 粽子 饺子 汤圆 春联 灯笼 鞭炮').split(' '),
  v: ('擦拭 整理 修补 打扫 浇灌 采摘 收拾 练习 朗读 抄写 描绘 拍摄 寻找 等待 守候 陪伴 鼓励 安慰 提醒 叮嘱 搀扶 背起 递给 捧着 握紧 放下 拾起 种下 挂起 点亮 熄灭 推开 关上 翻开 合上 折叠 缝补 编织 搬运 装满 倒掉 清洗 晾晒 烘烤 品尝 分享 赠送 珍藏 遗忘 回忆 思念 眺望 凝视 聆听 哼唱 奔跑 攀登 跨过 穿过 绕过 跟随 迎接 告别 呼唤 感谢 原谅 承认 坚持 放弃 尝试 挑战 战胜 克服 完成 创造 发现 探索 观察 记录').split(' '),
  a: ('温暖 明亮 安静 热闹 清澈 湛蓝 金黄 火红 雪白 翠绿 淡紫 粗糙 光滑 沉重 轻盈 陈旧 崭新 狭窄 宽阔 弯曲 笔直 潮湿 干燥 寒冷 炎热 芬芳 苦涩 甜美 酸涩 柔软 坚硬 模糊 清晰 遥远 熟悉 陌生 孤单 快乐 悲伤 焦急 平静 慌张 紧张 自豪 惭愧 感激 委屈 倔强 执着 朴素 勤劳 善良 憨厚 慈祥 严厉 幽默 耐心').split(' '),
  d: ('轻轻地 慢慢地 悄悄地 默默地 静静地 紧紧地 认真地 仔细地 耐心地 用力地 小心地 匆匆地 缓缓地 深深地 久久地 不停地 一遍遍地 高高地 远远地 偷偷地').split(' '),
  t: ('那天清晨 去年冬天 一个周末 考试前夕 暑假里 傍晚时分 上个学期 运动会那天 春节前夕 下雨的午后 开学第一天 中秋节晚上 期末考试后 寒假里 国庆长假 毕业那年 清明时节 端午节 深夜 黎明前').split(' '),
  p: ('我 妈妈 爸爸 爷爷 奶奶 外婆 外公 同桌 班长 王老师 李阿姨 表哥 姐姐 弟弟 邻居 门卫 校长 小明 小红 陌生人').split(' '),
  f: ('心头一热 鼻子一酸 眼眶湿润 恍然大悟 百感交集 心潮澎湃 若有所思 如释重负 忐忑不安 热泪盈眶 喜出望外 无地自容').split(' '),
};

const ZH_TEMPLATES = [
  '{t}，{p}{d}{v}着{a}的{n}。',
  '{p}把{n}{v}好，又{d}{v}{n}。',
  '{a}的{n}和{a}的{n}，让{p}{f}。',
  '看着{p}{v}{n}的样子，我{f}。',
  '{n}旁边的{n}显得格外{a}，{n}也{a}起来。',
  '我{d}{v}着那{a}的{n}，想起{p}{v}{n}的情景。',
  '从那以后，我学会了{v}{n}，也懂得了{v}和{v}。',
  '{t}，{a}的{n}{d}{v}{n}，{p}{f}。',
];
const ZH_CLOSINGS = [
  '这件事虽然已经过去很久了，但它一直激励着我不断前进。',
  '我相信，只要我们心中有爱，世界就会变得更加美好。',
  '成长的路上有欢笑也有泪水，正是这些经历让我变得更加坚强。',
  '让我们珍惜现在的时光，努力学习，做一个对社会有用的人。',
  '这就是我心中最难忘的一件事，它像一首歌，永远回荡在我的心间。',
  '风雨过后，总会有彩虹。我会带着这份勇气，继续走好脚下的路。',
];

const ZH_TITLES = ['成长的滋味', '那一次，我真高兴', '难忘的一件事', '我的家乡', '书香伴我成长', '坚持的力量', '身边的温暖', '科技与生活'];

const EN_OPENINGS = [
  'In recent years, more and more people have started to debate whether technology makes our lives better or worse.',
  'Some people believe that students should be required to study a foreign language, while others disagree.',
  'It is often said that the best way to learn is by making mistakes.',
  'Many cities around the world are facing serious problems with traffic and pollution.',
  'Whether young people should work part-time while studying is a question that divides parents and teachers.',
  'There is no doubt that the internet has changed the way we communicate with each other.',
];

const EN_WORDS: Record<string, string[]> = {
  n: ('library bicycle notebook piano kitchen playground river harbour station lantern window garden hallway ladder blanket umbrella market bridge village orchard meadow lighthouse tunnel factory hospital museum stadium classroom laboratory festival journey lesson argument experiment invention climate economy neighbourhood community generation tradition habit routine schedule deadline budget salary career hobby friendship teamwork patience curiosity courage honesty ambition pressure deadline screen keyboard message network signal battery engine vehicle pavement highway railway timetable ticket passenger driver cyclist pedestrian audience volunteer coach tutor principal parent grandparent toddler teenager citizen tourist farmer engineer doctor scientist musician painter author reporter').split(' '),
  v: ('encourages improves damages replaces supports reduces increases protects threatens shapes limits widens inspires distracts rewards punishes connects separates organises delays accelerates simplifies complicates measures funds builds repairs ignores questions celebrates challenges transforms weakens strengthens balances').split(' '),
  a: ('modern traditional expensive affordable crowded quiet efficient wasteful reliable fragile ambitious cautious curious generous practical theoretical local global rural urban digital physical mental social financial academic creative repetitive flexible rigid healthy harmful noisy peaceful colourful ordinary remarkable temporary permanent gradual sudden').split(' '),
  d: ('gradually rarely frequently seriously quickly steadily surprisingly obviously undoubtedly occasionally increasingly hardly clearly partly largely mostly').split(' '),
  c: ('However Furthermore Moreover Nevertheless Meanwhile Consequently Admittedly Besides Similarly Therefore Instead Otherwise Likewise Naturally').split(' '),
  p: ('my cousin|a classmate|my neighbour|my grandmother|a local farmer|our coach|my older sister|a young engineer|the school principal|a retired doctor').split('|'),
};

const EN_TEMPLATES = [
  '{c}, {a} {n} {d} {v} {a} {n}.',
  '{p} {v} {n} {d}.',
  '{a} {n} {v} {n}; {a} {n} {v} {n}.',
  '{c}, {n} {v} {n} and {n}.',
  'Every {n} {d} {v} {a} {n}.',
  '{p} noticed {a} {n} near {a} {n}.',
  '{a} {n}, {a} {n} and {a} {n} {v} {n}.',
  'Why {v} {n} {a} {n}?',
  '{c}, {p} {v} {n}.',
]

function fill(r: () => number, template: string, words: Record<string, string[]>): string {
  return template.replace(/\{(\w+)\}/g, (_, k: string) => pick(r, words[k]));
}
const EN_CLOSINGS = [
  'In conclusion, although there are some disadvantages, I firmly believe that the benefits outweigh the drawbacks.',
  'To sum up, both sides have valid points, but a balanced approach is the most sensible solution.',
  'In short, we should not be afraid of change, but we must manage it wisely.',
  'Overall, I am convinced that with careful planning these problems can be solved.',
];

const EN_TITLES = ['Technology and Education', 'Learning a Foreign Language', 'Cities of the Future', 'Part-time Jobs for Students', 'Learning from Mistakes'];

function pick<T>(r: () => number, list: readonly T[]): T {
  return list[Math.floor(r() * list.length)];
}

/** Sentences drawn without repetition (while the bank lasts). */
function sample<T>(r: () => number, list: readonly T[], n: number): T[] {
  const pool = [...list];
  const out: T[] = [];
  while (out.length < n && pool.length) out.push(pool.splice(Math.floor(r() * pool.length), 1)[0]);
  return out;
}

export interface GeneratedEssay {
  lang: Lang;
  title: string;
  text: string;
}

/**
 * A Chinese essay of about `targetChars` characters (gaokao essays run 800+), or an English one of
 * about `targetWords` words (IELTS task 2: 250-400), in paragraphs.
 */
export function generateEssay(seed: number, lang: Lang, opts: { targetChars?: number; targetWords?: number } = {}): GeneratedEssay {
  const r = rng(seed);
  if (lang === 'zh') {
    const target = opts.targetChars ?? 600 + Math.floor(r() * 400);
    const paragraphs: string[] = [pick(r, ZH_OPENINGS)];
    let length = paragraphs[0].length;
    let para = '';
    while (length < target - 40) {
      const sentence = fill(r, pick(r, ZH_TEMPLATES), ZH_WORDS);
      para += sentence;
      length += sentence.length;
      if (para.length > 90 + r() * 80) {
        paragraphs.push(para);
        para = '';
      }
    }
    if (para) paragraphs.push(para);
    paragraphs.push(pick(r, ZH_CLOSINGS));
    return { lang, title: pick(r, ZH_TITLES), text: paragraphs.map((p) => `\u3000\u3000${p}`).join('\n') };
  }
  const target = opts.targetWords ?? 260 + Math.floor(r() * 120);
  const paragraphs: string[] = [pick(r, EN_OPENINGS)];
  let words = paragraphs[0].split(/\s+/).length;
  let para: string[] = [];
  while (words < target - 30) {
    const sentence = fill(r, pick(r, EN_TEMPLATES), EN_WORDS);
    para.push(sentence);
    words += sentence.split(/\s+/).length;
    if (para.length >= 3 + Math.floor(r() * 2)) {
      paragraphs.push(para.join(' '));
      para = [];
    }
  }
  if (para.length) paragraphs.push(para.join(' '));
  paragraphs.push(pick(r, EN_CLOSINGS));
  return { lang, title: pick(r, EN_TITLES), text: paragraphs.join('\n\n') };
}

/** A copy with a few words changed: what a student hands in after copying a classmate. */
export function nearCopy(text: string, seed: number, edits = 3): string {
  const r = rng(seed);
  let out = text;
  const swapsZh: Array<[string, string]> = [
    ['我', '咱'],
    ['非常', '十分'],
    ['终于', '最终'],
    ['美好', '美丽'],
    ['看到', '望见'],
    ['心里', '心中'],
  ];
  const swapsEn: Array<[string, string]> = [
    ['believe', 'think'],
    ['important', 'significant'],
    ['However', 'But'],
    ['people', 'individuals'],
    ['students', 'pupils'],
    ['often', 'frequently'],
  ];
  const swaps = /[\u4e00-\u9fff]/.test(text) ? swapsZh : swapsEn;
  let done = 0;
  for (const [a, b] of sample(r, swaps, swaps.length)) {
    if (done >= edits) break;
    const i = out.indexOf(a);
    if (i >= 0) {
      out = out.slice(0, i) + b + out.slice(i + a.length);
      done++;
    }
  }
  return out;
}
