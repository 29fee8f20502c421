import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';
import { bigintNanos } from '../db/transformers';

@Entity({ name: 'tenants' })
export class TenantEntity {
  @PrimaryColumn({ type: 'uuid' })
  id: string;

  @Column({ type: 'text' })
  name: string;

  @Column({ type: 'text' })
  timezone: string;

  @Column({ name: 'monthly_cap_nanos', type: 'bigint', transformer: bigintNanos })
  monthlyCapNanos: bigint;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
