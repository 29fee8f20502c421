import { ArgumentMetadata, ValidationError, ValidationPipe } from '@nestjs/common';
import { registerDecorator, ValidationArguments, ValidationOptions, ValidatorOptions } from 'class-validator';
import { stripControlChars, stripControlStrings } from './control-chars';
import { isValidTimeZone } from './time-zone';
import { CNY_DECIMALS, cnyProblem, MAX_CNY } from './money';
import { ApiError, FieldProblem, PROBLEMS_LISTED } from './errors';
import { UUID } from './ids';
import { isBlank } from './invisible';

/**
 * Flattens class-validator's tree into one problem per bad field, named by its path: the first
 * `max` of them, and how many there are in all.
 */
export function flattenValidationErrors(errors: ValidationError[], max = PROBLEMS_LISTED): { problems: FieldProblem[]; total: number } {
  const problems: FieldProblem[] = [];
  let total = 0;
  const walk = (list: ValidationError[], parent: string) => {
    for (const e of list) {
      const field = parent ? (/^\d+$/.test(e.property) ? `${parent}[${e.property}]` : `${parent}.${e.property}`) : e.property;
      if (e.constraints) {
        total++;
        // One message per field: the most specific constraint is last in class-validator's order.
        const messages = Object.values(e.constraints);
        if (problems.length < max) problems.push({ field, message: messages[messages.length - 1] });
      }
      if (e.children?.length) walk(e.children, field);
    }
  };
  walk(errors, '');
  return { problems, total };
}

/**
 * class-validator's pipe, plus: every string taken has its control characters removed before it
 * is checked (src/common/control-chars.ts) — a query or path parameter here, a DTO's fields once
 * class-transformer has built it (so @Verbatim() fields, secrets, are known and kept). A path
 * parameter that is a UUID goes on in lower case, as the database gives ids back: an id in
 * capitals found its row, but a comparison in memory missed it (a key revoked by /v1/api-keys/<ID>
 * stayed in every instance's auth cache).
 */
export class CleaningValidationPipe extends ValidationPipe {
  override transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    // A query parameter given twice arrives as an array: refused by name (it went on as an array,
    // uncleaned, to code that takes a string; PostgreSQL refused one with a NUL in it: a 500).
    if (Array.isArray(value) && (metadata.type === 'query' || metadata.type === 'param') && metadata.data) {
      throw ApiError.validation([{ field: metadata.data, message: `${metadata.data} must be given once` }]);
    }
    let clean = typeof value === 'string' && (metadata.type === 'query' || metadata.type === 'param') ? stripControlChars(value) : value;
    // (A UUID in any case: PostgreSQL reads one so; written in capitals, it is the same row. A path
    // parameter only: a query's values include the school's own, such as a studentRef, kept as sent.)
    if (metadata.type === 'param' && typeof clean === 'string' && UUID.test(clean)) clean = clean.toLowerCase();
    return super.transform(clean, metadata);
  }

  protected override validate(object: object, validatorOptions?: ValidatorOptions): Promise<ValidationError[]> | ValidationError[] {
    stripControlStrings(object);
    return super.validate(object, validatorOptions);
  }
}

export function createValidationPipe(): ValidationPipe {
  return new CleaningValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    transformOptions: { enableImplicitConversion: false },
    validationError: { target: false, value: false },
    exceptionFactory: (errors) => {
      const { problems, total } = flattenValidationErrors(errors);
      return ApiError.validation(problems, total);
    },
  });
}

/**
 * A money amount: a decimal string in CNY such as "5000.00" or "0.012940" (never a number), no
 * larger than a BIGINT count of nano-yuan holds (MAX_CNY), so it is refused here and not by
 * PostgreSQL.
 */
export function IsCnyAmount(options?: ValidationOptions) {
  return (object: object, propertyName: string) =>
    registerDecorator({
      name: 'isCnyAmount',
      target: object.constructor,
      propertyName,
      options,
      validator: {
        validate: (v: unknown) => cnyProblem(v) === null,
        defaultMessage: (args?: ValidationArguments) => {
          const problem = cnyProblem(args?.value);
          if (problem === 'range') return `${propertyName} must be at most ${MAX_CNY} CNY`;
          if (problem === 'precision') return `${propertyName} must have at most ${CNY_DECIMALS} decimals (a nano-yuan)`;
          return `${propertyName} must be a decimal string in CNY such as "5000.00"`;
        },
      },
    });
}

export function IsTimeZone(options?: ValidationOptions) {
  return (object: object, propertyName: string) =>
    registerDecorator({
      name: 'isTimeZone',
      target: object.constructor,
      propertyName,
      options: { message: `${propertyName} must be an IANA time zone such as "Asia/Shanghai"`, ...options },
      validator: { validate: (v: unknown) => typeof v === 'string' && isValidTimeZone(v) },
    });
}

/**
 * A name, title or prompt that says something: not empty and not only spaces or invisible characters
 * (a list of "   " keys helps nobody; a title of zero-width spaces shows as nothing).
 */
export function HasText(options?: ValidationOptions) {
  return (object: object, propertyName: string) =>
    registerDecorator({
      name: 'hasText',
      target: object.constructor,
      propertyName,
      options: { message: `${propertyName} must not be blank`, ...options },
      validator: { validate: (v: unknown) => typeof v !== 'string' || !isBlank(v) },
    });
}
