import { Module } from '@nestjs/common';
import { JobQueue } from './job-queue';

/** The durable job queue, below grading and billing, which both use it. */
@Module({
  providers: [JobQueue],
  exports: [JobQueue],
})
export class JobsModule {}
