import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { ArrayMaxSize, IsArray, IsIn, IsNumber, IsObject, IsOptional, IsString, IsUUID, Length, Matches, ValidateIf, ValidateNested } from 'class-validator';
import { HasText, IsCnyAmount } from '../../common/validation';

/**
 * The student: the school's id for them or their name as a class list writes it (阿依古丽·买买提,
 * Li Wei (2)): 1-100 letters (with their marks), digits, spaces inside, or ._:@-/#'·・()（）[].
 * Personal data like the essay: stored with it, erased with it, never logged.
 */
const STUDENT_REF = /^(?=\S)[\p{L}\p{M}\p{N}._:@\-/#'·・()（）[\] ]{1,100}(?<=\S)$/u;
const IsStudentRef = () =>
  Matches(STUDENT_REF, { message: "studentRef must be 1-100 letters, digits, spaces (not at either end) or ._:@-/#'·・()（）[]" });

/** Essay text limits are checked by the service (blank → 400, too long → 413), not here. */
export class SubmitEssayDto {
  @ApiProperty({ description: 'the essay, as written (up to 20,000 characters)' })
  @IsString()
  text: string;

  @ApiPropertyOptional({ enum: ['zh', 'en'], description: "when omitted: the assignment's, else the named rubric's (one for either language: the text's), else the text's; one the rubric is not written for is 400" })
  @IsOptional()
  @IsIn(['zh', 'en'])
  language?: 'zh' | 'en';

  @ApiPropertyOptional({ example: 'zh-gaokao-60', description: "a rubric key; with an assignment, its rubric (another is 400) or left out; default by language" })
  @IsOptional()
  @IsString()
  @Length(1, 63)
  rubric?: string;

  @ApiPropertyOptional()
  @IsOptional()
  @IsUUID()
  assignmentId?: string;

  @ApiPropertyOptional()
  @IsOptional()
  @IsString()
  @Length(1, 200)
  @HasText()
  title?: string;

  @ApiPropertyOptional({ description: "the school's own student id (not a name)" })
  @IsOptional()
  @IsStudentRef()
  studentRef?: string;

  @ApiPropertyOptional({ enum: ['standard', 'deep'], default: 'standard' })
  @IsOptional()
  @IsIn(['standard', 'deep'])
  tier?: 'standard' | 'deep';
}

export class BatchEssayDto {
  @ApiProperty()
  @IsString()
  text: string;

  @ApiPropertyOptional()
  @IsOptional()
  @IsStudentRef()
  studentRef?: string;

  @ApiPropertyOptional()
  @IsOptional()
  @IsString()
  @Length(1, 200)
  @HasText()
  title?: string;
}

export class SubmitBatchDto {
  @ApiPropertyOptional()
  @IsOptional()
  @IsUUID()
  assignmentId?: string;

  @ApiPropertyOptional({ description: "a rubric key for every essay; with an assignment, its rubric (another is 400) or left out" })
  @IsOptional()
  @IsString()
  @Length(1, 63)
  rubric?: string;

  @ApiPropertyOptional({ enum: ['zh', 'en'], description: 'one the rubric is not written for is 400' })
  @IsOptional()
  @IsIn(['zh', 'en'])
  language?: 'zh' | 'en';

  @ApiProperty({ type: [BatchEssayDto], description: 'up to 200 essays' })
  @IsArray()
  @IsObject({ each: true })
  @ValidateNested({ each: true })
  @Type(() => BatchEssayDto)
  essays: BatchEssayDto[];
}

/** A field that may be left out, but is never null (@IsOptional lets null through unvalidated). */
const Omittable = () => ValidateIf((_, v: unknown) => v !== undefined);

export class DimensionOverrideDto {
  @ApiProperty()
  @IsString()
  @Length(1, 64)
  key: string;

  @ApiPropertyOptional()
  @Omittable()
  @IsNumber()
  score?: number;

  @ApiPropertyOptional()
  @Omittable()
  @IsString()
  @Length(0, 4000)
  comment?: string;
}

export class OverrideGradeDto {
  @ApiPropertyOptional({ description: 'a total set by the teacher (otherwise computed from the dimensions); given with dimension scores, it must be their total by the rubric\'s rule' })
  @Omittable()
  @IsNumber()
  score?: number;

  @ApiPropertyOptional({ type: [DimensionOverrideDto], description: "at most one entry per rubric dimension (a rubric has at most 12)" })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(12)
  @IsObject({ each: true })
  @ValidateNested({ each: true })
  @Type(() => DimensionOverrideDto)
  dimensions?: DimensionOverrideDto[];

  @ApiPropertyOptional({ description: "the teacher's comment (replaces the summary)" })
  @Omittable()
  @IsString()
  @Length(0, 4000)
  comment?: string;
}

/** POST /v1/essays/:id/deep-review: optional; with no body the review runs as before (through the Batch API, within a day). */
export class OrderDeepReviewDto {
  @ApiPropertyOptional({
    type: String,
    example: 'tomorrow_morning',
    description:
      "when the deep review is needed by: an ISO 8601 date-time with its offset, or \"tomorrow_morning\" (08:00 tomorrow in the tenant's time zone; ordered before 04:00, 08:00 the same day). It then runs where it costs least and still in time (real time now, the provider's Batch API when its whole turnaround fits, or a cheaper off-peak window). Absent: through the Batch API, within its turnaround, as before",
  })
  @IsOptional()
  @IsString()
  @Length(1, 64)
  dueBy?: string;

  @ApiPropertyOptional({
    type: String,
    example: '9.90',
    description:
      "the price the buyer was shown (GET /v1/billing/offer), a CNY decimal string: if the school's price is another now, the order is refused with 409 PRICE_CHANGED and the current price, and nothing is ordered. Absent: the school's price at the moment of ordering",
  })
  @IsOptional()
  @IsCnyAmount()
  price?: string;
}

/** POST /v1/essays/erase: every essay of one student. */
export class EraseStudentDto {
  @ApiProperty({ description: "the school's own student id, as the essays were submitted with it" })
  @IsStudentRef()
  studentRef: string;
}
