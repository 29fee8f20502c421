import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsIn, IsISO8601, IsNumber, IsObject, IsOptional, IsString, Length, Max, Min, ValidateNested } from 'class-validator';
import { HasText } from '../../common/validation';
import { ExpectedLengthDto } from './rubric.dto';

export const ESCALATIONS = ['off', 'flag', 'deep'] as const;
export type Escalation = (typeof ESCALATIONS)[number];

/** How an assignment's standard grades are checked (SPEC §9); each field optional. */
export class AssignmentQualityDto {
  @ApiPropertyOptional({ enum: ESCALATIONS, description: 'a low-confidence standard grade: left alone (off, the default), marked needs_review (flag), or graded again on the deep tier within the budget (deep: an admin key only, 403 for a teacher)' })
  @IsOptional()
  @IsIn(ESCALATIONS)
  escalate?: Escalation;

  @ApiPropertyOptional({ type: Number, description: "the total at which an essay passes; a grade within one step of it is low-confidence (null: none)", nullable: true, example: 36 })
  @IsOptional()
  @IsNumber({ maxDecimalPlaces: 2 })
  @Min(0)
  @Max(100_000)
  passMark?: number | null;

  @ApiPropertyOptional({ type: ExpectedLengthDto, nullable: true, description: "the length the task asks for (characters for Chinese, words for English); default the rubric's" })
  @IsOptional()
  @IsObject()
  @ValidateNested()
  @Type(() => ExpectedLengthDto)
  expectedLength?: ExpectedLengthDto | null;

  @ApiPropertyOptional({
    type: String,
    format: 'date-time',
    nullable: true,
    example: '2026-12-03T08:00:00+08:00',
    description:
      "when the class set must be graded by (ISO 8601, with its offset: a time without one is refused). Its essays are then graded where it costs least and still in time: now, through the provider's Batch API, or in a cheaper off-peak window; each grade says what that saved. Null or absent: graded at once, as always. Changed later, it reaches the essays still queued (those waiting for a cheaper window are planned again at once)",
  })
  @IsOptional()
  @IsISO8601({ strict: true })
  dueBy?: string | null;
}

export class CreateAssignmentDto extends AssignmentQualityDto {
  @ApiProperty({ example: '九年级上学期 第三单元作文' })
  @IsString()
  @Length(1, 200)
  @HasText()
  title: string;

  @ApiProperty({ example: '以“那一刻，我长大了”为题，写一篇不少于600字的记叙文。', description: 'the essay prompt (作文题目)' })
  @IsString()
  @Length(1, 4000)
  @HasText()
  prompt: string;

  @ApiProperty({ example: 'zh-gaokao-60' })
  @IsString()
  @Length(1, 63)
  rubric: string;

  @ApiPropertyOptional({ enum: ['zh', 'en'], description: "defaults to the rubric's language; another one is 400 (a rubric for either language takes either)" })
  @IsOptional()
  @IsIn(['zh', 'en'])
  language?: 'zh' | 'en';
}
