import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { rowsOf } from '../db/tenant-scope';

/** An upload at a provider still to be deleted (with its batch's answers), as the sweep claims it. */
export interface TrackedUpload {
  provider: string;
  /** the file name it was sent with */
  name: string;
  /** the provider's id for it; null when its answer never came (the process killed, the connection cut) */
  fileId: string | null;
  batchId: string | null;
  uploadedAt: number;
  tries: number;
}

/**
 * The uploads Inkstone has made to providers' Batch APIs and not yet deleted (`provider_uploads`).
 * Not tenant data: a batch carries many tenants' calls, and no essay text is kept here, only the
 * provider's ids. Each row is due when its batch should have been read and deleted by the
 * process that sent it; the sweep (BatchCollector.sweepUploads) claims the rows past that.
 */
@Injectable()
export class ProviderUploadsRepository {
  constructor(private readonly ds: DataSource) {}

  /** Writes an upload down before it is sent, by the file name it is sent with, due `dueInMs` from now (when its batch would be given up). */
  async track(provider: string, name: string, dueInMs: number): Promise<void> {
    await this.ds.query(
      `INSERT INTO provider_uploads (provider, name, due_at) VALUES ($1, $2, now() + make_interval(secs => $3::double precision / 1000))
       ON CONFLICT (provider, name) DO NOTHING`,
      [provider, name, dueInMs],
    );
  }

  /** The provider's id for the upload sent with that name. */
  async uploaded(provider: string, name: string, fileId: string): Promise<void> {
    await this.ds.query(`UPDATE provider_uploads SET file_id = $3 WHERE provider = $1 AND name = $2`, [provider, name, fileId]);
  }

  /** An upload whose file is not at the provider (never stored there, or deleted since): struck off by its name. */
  async forgetName(provider: string, name: string): Promise<void> {
    await this.ds.query(`DELETE FROM provider_uploads WHERE provider = $1 AND name = $2`, [provider, name]);
  }

  /** The batch the provider made from the upload. */
  async nameBatch(provider: string, fileId: string, batchId: string): Promise<void> {
    await this.ds.query(`UPDATE provider_uploads SET batch_id = $3 WHERE provider = $1 AND file_id = $2`, [provider, fileId, batchId]);
  }

  /** Due in `ms` from now (the sweep looks at it then), with the batch found for it when given. */
  async dueIn(provider: string, name: string, ms: number, batchId?: string): Promise<void> {
    await this.ds.query(
      `UPDATE provider_uploads SET due_at = now() + make_interval(secs => $3::double precision / 1000), batch_id = coalesce($4, batch_id)
        WHERE provider = $1 AND name = $2`,
      [provider, name, ms, batchId ?? null],
    );
  }

  /** The upload and its batch's files are deleted at the provider: struck off (by the provider's id for it). */
  async forget(provider: string, fileId: string): Promise<void> {
    await this.ds.query(`DELETE FROM provider_uploads WHERE provider = $1 AND file_id = $2`, [provider, fileId]);
  }

  /** How many uploads are written down, and of those how many the sweep has tried three times or more (GatewayMetrics). */
  async counts(): Promise<{ written: number; failing: number }> {
    const [row] = (await this.ds.query(`SELECT count(*)::int AS written, count(*) FILTER (WHERE tries >= 3)::int AS failing FROM provider_uploads`)) as Array<{ written: number; failing: number }>;
    return row ?? { written: 0, failing: 0 };
  }

  /**
   * Up to `limit` uploads past their time, oldest first, each held (due again then, one more try
   * counted) for `holdMs`, doubled with each try before up to six hours: instances sweeping at once
   * take different rows, a sweep that dies leaves its rows to the next, and an upload that cannot
   * be deleted (a provider refusing) is not asked about every minute for ever.
   */
  async claimDue(limit: number, holdMs: number): Promise<TrackedUpload[]> {
    const res: unknown = await this.ds.query(
      `UPDATE provider_uploads u
          SET due_at = now() + make_interval(secs => least($2::double precision * power(2, least(u.tries, 16)), 21600000) / 1000), tries = u.tries + 1
         FROM (SELECT provider, name FROM provider_uploads WHERE due_at <= now() ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) d
        WHERE u.provider = d.provider AND u.name = d.name
        RETURNING u.provider, u.name, u.file_id, u.batch_id, (extract(epoch FROM u.uploaded_at) * 1000)::bigint AS uploaded_at, u.tries`,
      [limit, holdMs],
    );
    return rowsOf<{ provider: string; name: string; file_id: string | null; batch_id: string | null; uploaded_at: string; tries: number }>(res).map((r) => ({
      provider: r.provider,
      name: r.name,
      fileId: r.file_id,
      batchId: r.batch_id,
      uploadedAt: Number(r.uploaded_at),
      tries: r.tries,
    }));
  }
}
