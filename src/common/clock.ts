import { Injectable } from '@nestjs/common';

/** The current time, injectable so tests can price a call on either side of a price window. */
@Injectable()
export class Clock {
  now(): Date {
    return new Date();
  }
}
