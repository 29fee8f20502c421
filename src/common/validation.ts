import { ValidationError, ValidationPipe } from '@nestjs/common';
import { registerDecorator, ValidationOptions } from 'class-validator';
import { isValidTimeZone } from './time-zone';
import { isCnyString } from './money';
import { ApiError, FieldProblem } from './errors';

/** Flattens class-validator's tree into one problem per bad field, named by its path. */
export function flattenValidationErrors(errors: ValidationError[], parent = ''): FieldProblem[] {
  const out: FieldProblem[] = [];
  for (const e of errors) {
    const field = parent ? (/^\d+$/.test(e.property) ? `${parent}[${e.property}]` : `${parent}.${e.property}`) : e.property;
    if (e.constraints) {
      // One message per field: the most specific constraint is last in class-validator's order.
      const messages = Object.values(e.constraints);
      out.push({ field, message: messages[messages.length - 1] });
    }
    if (e.children?.length) out.push(...flattenValidationErrors(e.children, field));
  }
  return out;
}

export function createValidationPipe(): ValidationPipe {
  return new ValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    transformOptions: { enableImplicitConversion: false },
    validationError: { target: false, value: false },
    exceptionFactory: (errors) => ApiError.validation(flattenValidationErrors(errors)),
  });
}

/** A money amount: a decimal string in CNY such as "5000.00" or "0.012940" (never a number). */
export function IsCnyAmount(options?: ValidationOptions) {
  return (object: object, propertyName: string) =>
    registerDecorator({
      name: 'isCnyAmount',
      target: object.constructor,
      propertyName,
      options: { message: `${propertyName} must be a decimal string in CNY such as "5000.00"`, ...options },
      validator: { validate: (v: unknown) => isCnyString(v) },
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
