import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional, IsString, Length } from 'class-validator';

export class CreateAssignmentDto {
  @ApiProperty({ example: '九年级上学期 第三单元作文' })
  @IsString()
  @Length(1, 200)
  title: string;

  @ApiProperty({ example: '以“那一刻，我长大了”为题，写一篇不少于600字的记叙文。', description: 'the essay prompt (作文题目)' })
  @IsString()
  @Length(1, 4000)
  prompt: string;

  @ApiProperty({ example: 'zh-gaokao-60' })
  @IsString()
  @Length(1, 63)
  rubric: string;

  @ApiPropertyOptional({ enum: ['zh', 'en'], description: "defaults to the rubric's language" })
  @IsOptional()
  @IsIn(['zh', 'en'])
  language?: 'zh' | 'en';
}
