import type { Dialect } from '../catalog';
import { dashscope } from './dashscope';
import { deepseek } from './deepseek';
import type { DialectAdapter } from './dialect';
import { openai } from './openai';
import { zhipu } from './zhipu';

export const ADAPTERS: Record<Dialect, DialectAdapter> = { deepseek, zhipu, dashscope, openai };
export type { DialectAdapter } from './dialect';
